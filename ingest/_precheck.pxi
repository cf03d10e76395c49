# Included by _fastfold.pyx: the compiled twin of the signature loop of
# trustlog.ingest.precheck.plan (which signatures of a decoded batch to verify ahead of
# the fold, and the cache key of each). precheck.plan calls it when the compiled fold is
# in use; tests/test_precheck_compiled.py holds the two to the same output on
# hypothesis-drawn batches. The cache key is BLAKE2b-128 computed by PyNaCl's libsodium
# (the verifier's own C code, shared at compile time: ingest does not import verifier).

import os
from posix.dlfcn cimport dlopen, dlsym, RTLD_NOW, RTLD_GLOBAL
from libc.stdint cimport uint8_t

include "../verifier/_blake2b_core.pxi"

from trustlog.core.sigcache import cache_key as _py_cache_key


cdef inline bytes _ck(long alg, bytes public, bytes message, bytes signature):
    cdef uint8_t out[16]
    if not 0 <= alg <= 255 or not cache_key16(
            <uint8_t>alg, <const uint8_t *>PyBytes_AS_STRING(public), <size_t>PyBytes_GET_SIZE(public),
            <const uint8_t *>PyBytes_AS_STRING(message), <size_t>PyBytes_GET_SIZE(message),
            <const uint8_t *>PyBytes_AS_STRING(signature), <size_t>PyBytes_GET_SIZE(signature), out):
        raise ValueError("cannot hash this signature's cache key")
    return PyBytes_FromStringAndSize(<char *>out, 16)


def plan_signatures(repos, decoded, dict introduced, cached, list sig_cks, Py_ssize_t max_signatures,
                    dict alg_by_keytype):
    """precheck.plan's loop over ``decoded`` ((envelope, event) pairs) after the
    introduced keys are known: returns ``(cks, items)`` and appends one entry per pair
    to ``sig_cks`` (unless None), exactly as that loop does (see its docstring)."""
    cdef list items = [], cks = [], these
    cdef set seen = set()
    cdef dict keyids
    cdef tuple first
    empty: dict = {}
    for env, event in decoded:
        sigs = env.signatures
        if event is None or len(sigs) > max_signatures:
            if sig_cks is not None:
                sig_cks.append(None)
            continue
        repo = repos.get(event.repo)
        known = repo.keys if repo is not None else empty
        keyids = {}
        these = []
        if sig_cks is not None:
            sig_cks.append(these)
        payload = env.payload
        for s in sigs:
            these.append(None)
            kid = s.keyid
            sig = s.sig
            f = keyids.get(kid)
            if f is not None:
                first = <tuple>f
                if first[0] == sig:
                    these[len(these) - 1] = first[1]
                continue
            keyids[kid] = (sig, None)
            key = known.get(kid) or introduced.get(kid)
            if key is None:
                continue
            alg = alg_by_keytype.get(key.keytype)
            if alg is None:
                continue
            public = key.public
            if type(public) is not bytes or type(payload) is not bytes or type(sig) is not bytes:
                # not what decoding makes: the Python loop's cache_key decides (and raises)
                ck = _py_cache_key(alg, public, payload, sig)
            else:
                ck = _ck(alg, public, payload, sig)
            these[len(these) - 1] = ck
            keyids[kid] = (sig, ck)
            if ck in seen or ck in cached:
                continue
            seen.add(ck)
            cks.append(ck)
            items.append((alg, public, payload, sig))
    return cks, items
