# cython: language_level=3
"""The checks a log's open makes of its derived files, in C: no Python per entry.

Two walks that opening a log does over files of up to millions of entries:

* :func:`index_entries`: a sealed segment's sparse index (``segment_log._load_index``):
  trailer, checksum, and every entry strictly after the one before it;
* :func:`walk_postings`: the repository index's ``postings.dat`` (``logindex._check_postings``):
  every block's bounds, entry CRC and back link, and the last block of each name.

Each has a pure-Python twin beside its caller (``segment_log._index_entries_py``,
``logindex._walk_postings_py``) that gives the same answer on every input, valid or
damaged (``tests/test_logscan.py``); the twin is used when this module is not built or
``TRUSTLOG_PUREPYTHON=1``. Both answer only "provably right" or where it is wrong: what
to do about it (rebuild, refuse) stays with the caller.
"""
from array import array

import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy
from posix.dlfcn cimport RTLD_GLOBAL, RTLD_NOW, dlopen, dlsym


cdef extern from "_fastfold.h":
    void tl_crc_init()
    uint32_t tl_crc32c(uint32_t crc, const unsigned char *p, size_t n) nogil

tl_crc_init()

# segment_log: entries ">IQ" (relative offset, byte position), trailer ">4sQQI"
DEF ENTRY = 12
DEF TRAILER = 24
# logindex: block header ">IIQI" (name id, count, previous block, CRC of the entries),
# entries ">QQII"
DEF BLOCK = 20
DEF PENTRY = 24

WALK_OK = 0          # every block holds and the chains end where ``heads`` says
WALK_SHORT = 1       # the data ends inside a block header (at ``pos``)
WALK_MALFORMED = 2   # a block names no name, runs past the end, or links to the wrong block
WALK_CRC = 3         # a block's entries fail its CRC
WALK_HEADS = 4       # ``heads`` is not the last block of each name


cdef inline uint32_t be32(const unsigned char *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint64_t be64(const unsigned char *p) noexcept nogil:
    return (<uint64_t>be32(p) << 32) | be32(p + 4)


def index_entries(bytes data, unsigned long long seg_size, unsigned long long expected_count, bytes magic):
    """The entries of a segment index file ``data`` as ``(rel, pos)`` arrays
    (``array('I')``, ``array('Q')``) if it provably describes a segment of ``seg_size``
    bytes and ``expected_count`` records; else None. ``magic``: the 4-byte file magic."""
    cdef const unsigned char *d = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t n, i
    cdef const unsigned char *t
    cdef uint32_t r, pr = 0
    cdef uint64_t p, pp = 0
    if len(magic) != 4:
        raise ValueError("magic must be 4 bytes")
    if size < TRAILER + ENTRY or (size - TRAILER) % ENTRY:
        return None
    n = (size - TRAILER) // ENTRY
    t = d + size - TRAILER
    if memcmp(t, PyBytes_AS_STRING(magic), 4) != 0 or be32(t + 20) != tl_crc32c(0, d, size - 4):
        return None
    if be64(t + 4) != seg_size or be64(t + 12) != expected_count:
        return None
    if be32(d) != 0 or be64(d + 4) != 0:
        return None
    for i in range(1, n):
        r = be32(d + ENTRY * i)
        p = be64(d + ENTRY * i + 4)
        if r <= pr or p <= pp:
            return None
        pr, pp = r, p
    if pr >= expected_count or pp >= seg_size:
        return None
    rel = array("I", bytes(4 * n))
    pos = array("Q", bytes(8 * n))
    cdef uint32_t[::1] rv = rel
    cdef uint64_t[::1] pv = pos
    for i in range(n):
        rv[i] = be32(d + ENTRY * i)
        pv[i] = be64(d + ENTRY * i + 4)
    return rel, pos


def walk_postings(bytes data, heads):
    """Walk every block of the postings ``data``: ``(WALK_*, pos)``, ``pos`` the byte
    where the walk stopped (0 for ``WALK_OK`` and ``WALK_HEADS``). ``heads``: the last
    block of each name id, as ``heads.dat`` holds them (``array('Q')``)."""
    cdef const unsigned char *d = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    cdef const uint64_t[::1] hv = heads
    cdef Py_ssize_t nheads = hv.shape[0]
    cdef Py_ssize_t pos = 0, i
    cdef uint32_t nid, count
    cdef uint64_t prev, end
    cdef uint64_t[::1] last
    last_arr = array("Q", b"\xff" * (8 * nheads))
    last = last_arr
    while pos < size:
        if size - pos < BLOCK:
            return WALK_SHORT, pos
        nid = be32(d + pos)
        count = be32(d + pos + 4)
        prev = be64(d + pos + 8)
        end = <uint64_t>pos + BLOCK + <uint64_t>count * PENTRY
        if nid >= nheads or end > <uint64_t>size or prev != last[nid]:
            return WALK_MALFORMED, pos
        if tl_crc32c(0, d + pos + BLOCK, <size_t>(end - pos - BLOCK)) != be32(d + pos + 16):
            return WALK_CRC, pos
        last[nid] = pos
        pos = <Py_ssize_t>end
    for i in range(nheads):
        if hv[i] != last[i]:
            return WALK_HEADS, 0
    return WALK_OK, 0


cdef extern from "<string.h>" nogil:
    void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen)

# an ed25519 PublicKey as the events encode it (msgpack map: keytype, public as bin 32)
_ED25519_KEY = b"\xa7keytype\xa7ed25519\xa6public\xc4\x20"


def ed25519_keys(bytes data):
    """The 32-byte strings that follow an encoded ed25519 ``PublicKey`` anywhere in
    ``data`` (a segment: events are stored verbatim inside their records), each once, in
    order of first appearance. The whole search runs without the GIL (a fold holds it
    meanwhile: a search that took it back per hit would wait on the fold each time).
    Only a hint of which point checks a fold of ``data`` will make
    (``replay._warm_key_checks``)."""
    cdef const unsigned char *d = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef size_t size = <size_t>PyBytes_GET_SIZE(data)
    cdef const unsigned char *pat = <const unsigned char *>PyBytes_AS_STRING(_ED25519_KEY)
    cdef size_t plen = <size_t>PyBytes_GET_SIZE(_ED25519_KEY)
    cdef size_t pos = 0, cap = 0, n = 0, i
    cdef size_t *found = NULL
    cdef size_t *grown
    cdef const unsigned char *hit
    cdef bint short = False
    with nogil:
        while size - pos >= plen + 32:
            hit = <const unsigned char *>memmem(d + pos, size - pos, pat, plen)
            if hit == NULL or <size_t>(hit - d) + plen + 32 > size:
                break
            if n == cap:
                cap = cap * 2 if cap else 256
                grown = <size_t *>realloc(found, cap * sizeof(size_t))
                if grown == NULL:
                    short = True
                    break
                found = grown
            found[n] = <size_t>(hit - d) + plen
            n += 1
            pos = found[n - 1] + 32
    try:
        if short:
            raise MemoryError()
        out = {}
        for i in range(n):
            out[data[found[i]:found[i] + 32]] = None
        return list(out)
    finally:
        free(found)


ctypedef int (*point_check_fn)(const unsigned char *p) noexcept nogil
cdef point_check_fn _is_valid_point = NULL


def _load_point_check():
    """libsodium's ``crypto_core_ed25519_is_valid_point`` from the library PyNaCl
    bundles: the very function ``core.keys`` calls through PyNaCl's binding."""
    global _is_valid_point
    import nacl.bindings  # noqa: F401 - PyNaCl initialises libsodium on import
    import nacl._sodium

    path = os.fsencode(nacl._sodium.__file__)
    cdef void *handle = dlopen(path, RTLD_NOW | RTLD_GLOBAL)
    if handle == NULL:
        raise ImportError(f"cannot dlopen PyNaCl's libsodium at {path!r}")
    _is_valid_point = <point_check_fn>dlsym(handle, b"crypto_core_ed25519_is_valid_point")
    if _is_valid_point == NULL:
        raise ImportError(f"{path!r} does not export crypto_core_ed25519_is_valid_point")


_load_point_check()


def ed25519_points_ok(list publics):
    """For each 32-byte string of ``publics``, libsodium's full point check (canonical,
    on the curve, in the prime-order subgroup, not of small order): ``b"\\x01"`` where it
    passes, ``b"\\x00"`` where not, one byte each. All of them without the GIL, so a
    helper thread makes them beside a fold in one go (``replay._warm_key_checks``)."""
    cdef Py_ssize_t n = len(publics), i
    cdef unsigned char *keys = <unsigned char *>malloc(32 * n if n else 1)
    if keys == NULL:
        raise MemoryError()
    out = bytearray(n)
    cdef unsigned char *verdicts = out
    try:
        for i in range(n):
            p = publics[i]
            if type(p) is not bytes or PyBytes_GET_SIZE(p) != 32:
                raise ValueError(f"key {i} is not 32 bytes")
            memcpy(keys + 32 * i, PyBytes_AS_STRING(p), 32)
        with nogil:
            for i in range(n):
                verdicts[i] = 1 if _is_valid_point(keys + 32 * i) == 1 else 0
    finally:
        free(keys)
    return bytes(out)
