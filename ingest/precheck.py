"""Which signatures to verify ahead of the fold, in one backend call, at a bounded cost.

The fold asks a signature oracle about one signature at a time; checking them in one
batch first, on every core, is what makes ingest fast. The batch must never cost more
than the fold itself could, or an event the fold will reject buys an attacker CPU:

* keys an event *introduces* (``RepoCreated``, ``RootRotated``, ``RoleKeysSet``) become
  candidates only when the event's key lists pass the fold's own checks (at most
  ``MAX_KEYS_PER_ROLE`` keys each, every key of a known type, valid and in its one
  accepted encoding, which bounds RSA to 4096 bits with a 64-bit exponent);
* an envelope with more than ``MAX_SIGNATURES_PER_ENVELOPE`` signatures, which the fold
  refuses, gets no signature work at all;
* only the first signature under each key id of an envelope is pre-checked (a key
  counts once; the fold verifies any repeat itself and stops at the first that fails),
  and each distinct (key, message, signature) once.

So the pre-check of one event costs at most one verification per distinct valid key it
names (at most ``MAX_SIGNATURES_PER_ENVELOPE``), each at most one RSA-4096 operation
with a 64-bit exponent. What counts is still decided by the fold; this only decides
what is pre-computed into the validity cache.
"""
from __future__ import annotations

from collections.abc import Container, Mapping, Sequence

from trustlog.core.bounds import MAX_SIGNATURES_PER_ENVELOPE
from trustlog.core.errors import KeyMaterialError
from trustlog.core.events import Envelope, Event, RepoCreated, RoleKeysSet, RootRotated
from trustlog.core.keys import ALG_BY_KEYTYPE, PublicKey, validate_public_key
from trustlog.core.state import MAX_KEYS_PER_ROLE, RepoState, TrustState
from trustlog.core.sigcache import cache_key

from . import fold_backend

Item = tuple[int, bytes, bytes, bytes]
_INTRODUCING = (RepoCreated, RootRotated, RoleKeysSet)   # the event types _key_lists reads


def _key_lists(event: Event | None) -> tuple[list[PublicKey], ...]:
    if isinstance(event, RepoCreated):
        return (event.root_keys, event.targets_keys)
    if isinstance(event, RootRotated):
        return (event.root_keys,)
    if isinstance(event, RoleKeysSet):
        return (event.keys,)
    return ()


def introduced_keys(event: Event | None) -> list[PublicKey]:
    """The keys ``event`` would add to its repository if the fold accepts them; none
    at all when any of its key lists would make the fold refuse it."""
    out: list[PublicKey] = []
    for keys in _key_lists(event):
        if not keys or len(keys) > MAX_KEYS_PER_ROLE:
            return []
        for k in keys:
            try:
                if validate_public_key(k) != k:
                    return []
            except KeyMaterialError:
                return []
        out += keys
    return out


def plan(
    state: TrustState,
    decoded: Sequence[tuple[Envelope, Event | None]],
    introduced: dict[str, PublicKey],
    cached: Container[bytes],
    sig_cks: list[list[bytes | None] | None] | None = None,
) -> tuple[list[bytes], list[Item]]:
    """Cache keys and ``(alg, key, message, signature)`` items to verify for ``decoded``.

    ``introduced`` (key id -> key) is updated with the valid keys the events introduce;
    ``cached`` answers ``ck in cached`` for validity already known. ``sig_cks``, if
    given, gets one entry per event: None when it gets no signature work, else the
    cache key of each of its signatures in order (None for a signature not pre-checked).
    A key id names one key, so a cache key stays right whatever the state becomes."""
    for _, event in decoded:
        if isinstance(event, _INTRODUCING):
            for k in introduced_keys(event):
                introduced[k.keyid] = k
    # in C when the compiled fold is in use (ingest/_precheck.pxi, its twin below)
    signatures = plan_signatures if fold_backend.compiled is None else fold_backend.compiled.plan_signatures
    return signatures(state.repos, decoded, introduced, cached, sig_cks, MAX_SIGNATURES_PER_ENVELOPE,
                      ALG_BY_KEYTYPE)


def plan_signatures(
    repos: Mapping[str, RepoState],
    decoded: Sequence[tuple[Envelope, Event | None]],
    introduced: dict[str, PublicKey],
    cached: Container[bytes],
    sig_cks: list[list[bytes | None] | None] | None,
    max_signatures: int,
    alg_by_keytype: Mapping[str, int],
) -> tuple[list[bytes], list[Item]]:
    """:func:`plan` once the introduced keys are known: the loop over the signatures
    (the pure-Python twin of the compiled ``_fastfold.plan_signatures``)."""
    items: list[Item] = []
    cks: list[bytes] = []
    seen: set[bytes] = set()
    for env, event in decoded:
        if event is None or len(env.signatures) > max_signatures:
            if sig_cks is not None:
                sig_cks.append(None)
            continue
        repo = repos.get(event.repo)
        known = repo.keys if repo is not None else {}
        keyids: dict[str, tuple[bytes, bytes | None]] = {}   # key id -> (its first signature, cache key)
        these: list[bytes | None] = []
        if sig_cks is not None:
            sig_cks.append(these)
        for s in env.signatures:
            these.append(None)
            first = keyids.get(s.keyid)
            if first is not None:
                if first[0] == s.sig:
                    these[-1] = first[1]  # the very same signature again: the same check
                continue  # a key signs once; the fold checks any other repeat itself, and stops at a bad one
            keyids[s.keyid] = (s.sig, None)
            key = known.get(s.keyid) or introduced.get(s.keyid)
            if key is None or key.keytype not in alg_by_keytype:
                continue  # unknown keys and key types are the fold's to reject
            alg = alg_by_keytype[key.keytype]  # = key.alg
            ck = cache_key(alg, key.public, env.payload, s.sig)
            these[-1] = ck
            keyids[s.keyid] = (s.sig, ck)
            if ck in seen or ck in cached:
                continue
            seen.add(ck)
            cks.append(ck)
            items.append((alg, key.public, env.payload, s.sig))
    return cks, items
