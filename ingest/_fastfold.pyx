# cython: language_level=3, boundscheck=False, wraparound=False
"""The compiled trusted fold: :class:`trustlog.ingest.replay.TrustedFold` with the
record reading in C.

It reads segments of records in C (frame, CRC-32C or the RFC 9162 leaf hash, then a v1
record's record, envelope and ``ImageSigned`` layers, or a v2 record's fields with the
payload re-derived (``_record_v2.pxi``), without building msgspec objects) and
applies ``ImageSigned`` records on the fast path, making exactly the state changes that
``TrustedFold.apply``'s fast path makes. Every other record — any other kind, a layout
the C reader does not recognise, an ``ImageSigned`` off the fast path — is decoded by
msgspec and handed to a Python :class:`TrustedFold` over the same state, which accepts it
through :meth:`TrustState.apply` or raises exactly as the pure-Python fold does.

The pure-Python ``TrustedFold`` is the reference twin: ``tests/test_compiled_fold.py``
holds the two (and ``TrustState.apply``) together. The fast path only ever *accepts*
what the Python fold would accept with the same effect; whenever it is unsure it falls
back, so a reject always comes from the Python code, with its reason.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memset

import msgspec

from trustlog.core.bounds import MAX_SIGNATURES_PER_ENVELOPE
from trustlog.core.errors import EncodingError, LogError
from trustlog.core.names import MAX_TAG_LEN
from trustlog.core.state import RejectedEventError, TagEntry

cdef extern from "_fastfold.h":
    ctypedef struct tl_sv:
        const char *s
        uint32_t n
    ctypedef struct tl_rec:
        int64_t log_time
        int has_source
        tl_sv topic
        int64_t partition, src_offset
        const unsigned char *payload
        uint32_t payload_len
        uint32_t nsigs
        tl_sv keyid[128]
        const unsigned char *sig[128]
        uint32_t sig_len[128]
        tl_sv repo, role, tag, digest
        int64_t version, issued_at, size, expires
    int TL_MAX_SIGS
    void tl_crc_init()
    uint32_t tl_crc32c(uint32_t crc, const unsigned char *p, size_t n) nogil
    void tl_leaf_hash(const unsigned char *p, size_t n, unsigned char *out) nogil
    int tl_parse_image_signed(const unsigned char *body, size_t length, tl_rec *r) nogil
    int tl_is_tag(tl_sv t, uint32_t max_len) nogil
    int tl_is_digest(tl_sv d) nogil

include "_record_v2.pxi"

tl_crc_init()
if MAX_SIGNATURES_PER_ENVELOPE != TL_MAX_SIGS:
    raise ImportError(f"trustlog.ingest._fastfold was built for at most {TL_MAX_SIGS} signatures per envelope, "
                      f"core.bounds says {MAX_SIGNATURES_PER_ENVELOPE}: rebuild it (pip install -e .)")

# fold_segment's status codes (the caller turns them into LogCorruptionError / leaf errors)
cdef enum:
    DONE_C = 0
    SHORT_C = 1
    PAST_END_C = 2
    CRC_MISMATCH_C = 3
    LEAF_MISMATCH_C = 4
DONE = DONE_C
SHORT = SHORT_C            # the segment ends before `stop`
PAST_END = PAST_END_C      # a frame's length runs past the end of the segment
CRC_MISMATCH = CRC_MISMATCH_C
LEAF_MISMATCH = LEAF_MISMATCH_C

# The compiled compact tag store's C calls (core/_tagstore_c.pyx, the same struct): the fast
# path checks a tag's version and writes an ImageSigned into a store without a TagEntry.
ctypedef struct tl_store_api:
    int abi
    int (*tag_version)(PyObject *store, const char *name, Py_ssize_t n, int64_t *out) noexcept
    int (*put)(PyObject *store, const char *name, Py_ssize_t n, const char *digest, Py_ssize_t digest_n,
               int64_t size, int64_t expires, int64_t issued_at, int64_t version, PyObject *role,
               const char *role_u8, Py_ssize_t role_n, int32_t grant_id, int64_t log_time, int64_t offset,
               PyObject *keyid, const char *sig, Py_ssize_t sig_n, const char *payload, Py_ssize_t payload_n) except -1

ctypedef void (*tl_store_prefetch)(PyObject *store, const char *name, Py_ssize_t n, int stage) noexcept

cdef const tl_store_api *_STORE = NULL
cdef tl_store_prefetch _PREFETCH = NULL   # the store's hints for the records read ahead (a capsule of its own)
_CTagStore = _TagVersions = None
try:
    from trustlog.core import _tagstore_c
except ImportError:     # not built: repositories hold dicts (core.tagstore_backend)
    pass
else:
    _STORE = <const tl_store_api *>PyCapsule_GetPointer(_tagstore_c._C_API, b"trustlog.core._tagstore_c._C_API")
    if _STORE.abi != 2:
        _STORE = NULL
    else:
        _CTagStore, _TagVersions = _tagstore_c.CTagStore, _tagstore_c.TagVersions
        if hasattr(_tagstore_c, "_C_PREFETCH"):
            _PREFETCH = <tl_store_prefetch>PyCapsule_GetPointer(_tagstore_c._C_PREFETCH,
                                                                b"trustlog.core._tagstore_c._C_PREFETCH")

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define TL_PREFETCH(p) __builtin_prefetch((const void *)(p))
    #define TL_PREFETCH_W(p) __builtin_prefetch((const void *)(p), 1)
    #else
    #define TL_PREFETCH(p) ((void)(p))
    #define TL_PREFETCH_W(p) ((void)(p))
    #endif
    """
    void TL_PREFETCH(const void *p) noexcept nogil
    void TL_PREFETCH_W(const void *p) noexcept nogil

cdef enum:
    HINT_STAGES = 6     # _peek, then _hint stages 1..5 (each loads what the next one reads) ...
    HINT_GAP = 2        # ... HINT_GAP records apart (time for a line to arrive from memory)
    AHEAD = HINT_STAGES * HINT_GAP  # records read ahead of the one applied
    RING = 16           # ring slots of fold_segment's read-ahead (> AHEAD)
    DATA_AHEAD = 1024   # bytes past a record's end its reader prefetches from (the records after next)
    YIELD_EVERY_MASK = 255   # fold_segment lets go of the GIL once every 256 records it applies

cdef extern from "Python.h":
    Py_ssize_t _Py_HashBytes(const void *src, Py_ssize_t n) noexcept   # SipHash, keyed per process

cdef extern from "<stdlib.h>" nogil:
    void *aligned_alloc(size_t alignment, size_t size)


# The repository views of a CompiledFold, by name: an open-addressing table (linear
# probing) in C rather than a dict of bytes, so that a record's lookup needs no bytes
# object and its slot can be prefetched records ahead (_peek). The hash is CPython's own
# keyed SipHash of the bytes (what a dict of bytes would use): names come from the log.
# A slot is one cache line: a name of up to RT_INLINE bytes is held in it (one memory
# access finds and compares it), a longer one in a copy of its own the slot points to.
DEF RT_INLINE = 40

ctypedef struct tl_rslot:
    uint64_t h          # the name's hash with its low bit set (0: an empty slot)
    PyObject *view      # owned: the _Repo, or None (not on the fast path); NULL: forgotten
    Py_ssize_t n        # the name's length
    char buf[RT_INLINE] # the name (n <= RT_INLINE), or a pointer to an owned copy of it

DEF RT_MIN = 1024       # slots of a new table (a power of two; it doubles at half full)


cdef inline const char *_rt_name(const tl_rslot *sl) noexcept:
    if sl.n <= RT_INLINE:
        return &sl.buf[0]
    return (<char **>sl.buf)[0]


cdef inline uint64_t _rt_hash(const char *s, Py_ssize_t n) noexcept:
    return (<uint64_t>_Py_HashBytes(s, n)) | 1


cdef str _TARGETS = "targets"
cdef long long INT64_MAX = 0x7fffffffffffffff


cdef inline bint _fits(repo):
    """The repository's version and last log time fit the C fields of a ``_Repo``
    (always, for a log within core.bounds; else it stays off the fast path)."""
    v, t = repo.version, repo.last_log_time
    return type(v) is int and type(t) is int and 0 <= v < INT64_MAX and 0 <= t <= INT64_MAX
cdef const unsigned char *_EMPTY = <const unsigned char *>""


def replay_error(where, offset, e):
    """The error for a record of a trusted log that does not replay (as TrustedFold's)."""
    return LogError(f"{where}: record {offset} cannot be replayed ({e}); the log was altered — "
                    "run `trustlog log verify`")


cdef inline object _utf8(tl_sv v):
    """The str, or None when the bytes are not UTF-8 (msgspec would refuse them too;
    the Python decoder then says why)."""
    try:
        return PyUnicode_DecodeUTF8(v.s, v.n, NULL)
    except UnicodeDecodeError:
        return None


def crc32c(data, unsigned int crc=0):
    """``crc32c.crc32c(data, crc)`` (for the tests)."""
    cdef const unsigned char[::1] mv = data
    if mv.shape[0] == 0:
        return crc
    return tl_crc32c(crc, &mv[0], mv.shape[0])


def leaf_hash(data):
    """``core.merkle.leaf_hash`` (for the tests)."""
    cdef const unsigned char[::1] mv = data
    cdef unsigned char out[32]
    tl_leaf_hash(&mv[0] if mv.shape[0] else _EMPTY, mv.shape[0], out)
    return PyBytes_FromStringAndSize(<char *>out, 32)


DEF MAX_SIMPLE_PATTERNS = 16


def _simple_patterns(paths):
    """``[(literal, is_prefix)]`` for a delegation's tag patterns when each is an ASCII
    literal, optionally followed by one ``*`` and nothing else (``build-*``, ``v1.0``):
    for an ASCII tag, ``fnmatch.fnmatchcase(tag, p)`` is then ``tag == literal`` or
    ``tag.startswith(literal)`` (``*`` matches any run, ``\\`` and ``]`` are literals in
    fnmatch). None if any pattern has ``?``, ``[``, another ``*``, a character beyond
    ASCII, or there are more than MAX_SIMPLE_PATTERNS: fnmatch decides those.
    ``tests/test_compiled_fold.py`` holds the two to each other."""
    if len(paths) > MAX_SIMPLE_PATTERNS:
        return None
    out = []
    for p in paths:
        if type(p) is not str or not p.isascii():
            return None
        prefix = p.endswith("*")
        lit = p[:-1] if prefix else p
        if "*" in lit or "?" in lit or "[" in lit:
            return None
        out.append((lit.encode("ascii"), prefix))
    return out


cdef class _Grant:
    """An active role of a repository as the fast path reads it (valid until the next
    change the Python fold makes). Its key ids are also kept as one C buffer, so that
    matching a signature's key id touches no Python object."""
    cdef object gid, role, paths
    cdef dict may_sign     # tag -> may this role sign it (its patterns do not change while cached)
    cdef bytes _pbuf       # its patterns, when each is simple (_simple_patterns), one after the other
    cdef int _npats        # how many (-1: some pattern is not simple: may_sign and fnmatch decide)
    cdef Py_ssize_t _pstart[MAX_SIMPLE_PATTERNS + 1]
    cdef bint _pprefix[MAX_SIMPLE_PATTERNS]   # pattern i is its literal followed by one '*'
    cdef tuple keyids
    cdef bytes role_b
    cdef Py_ssize_t role_b_len
    cdef long long threshold
    cdef bint is_targets
    cdef bytes _kbuf           # the key ids' UTF-8 bytes, one after the other
    cdef Py_ssize_t _nkeys     # (before _kstart: the fields the fast path reads share the first lines)
    cdef Py_ssize_t _kstart[65]  # where each starts in _kbuf (the end of the last at [n])

    def __init__(self, role, gid, grant):
        self.role = role
        self.role_b = role.encode()
        self.role_b_len = len(self.role_b)
        self.gid = gid
        self.keyids = tuple(grant.keyids)
        self.paths = grant.paths
        self.may_sign = {}
        self.threshold = grant.threshold
        self.is_targets = role == _TARGETS
        encoded = [k.encode() for k in self.keyids]
        # a role holds at most core.state.MAX_KEYS_PER_ROLE (64) keys; beyond, no fast path
        self._nkeys = len(encoded) if len(encoded) <= 64 else 0
        self._kbuf = b"".join(encoded[:self._nkeys])
        cdef Py_ssize_t i, at = 0
        for i in range(self._nkeys):
            self._kstart[i] = at
            at += len(encoded[i])
        self._kstart[self._nkeys] = at
        self._npats = -1
        if not self.is_targets:
            simple = _simple_patterns(self.paths)
            if simple is not None:
                self._npats = len(simple)
                self._pbuf = b"".join(lit for lit, _ in simple)
                at = 0
                for i in range(self._npats):
                    self._pstart[i] = at
                    self._pprefix[i] = simple[i][1]
                    at += len(simple[i][0])
                self._pstart[self._npats] = at

    cdef int may_sign_simple(self, tl_sv tag) noexcept:
        """1 if the role's patterns allow ``tag`` (an ASCII tag), 0 if not; -1: some
        pattern is not simple, so ``may_sign`` and fnmatch must decide."""
        cdef int i
        cdef Py_ssize_t start, n
        cdef const char *pb
        if self._npats < 0:
            return -1
        pb = PyBytes_AS_STRING(self._pbuf)
        for i in range(self._npats):
            start = self._pstart[i]
            n = self._pstart[i + 1] - start
            if (tag.n == n or (self._pprefix[i] and tag.n > n)) and memcmp(pb + start, tag.s, n) == 0:
                return 1
        return 0

    cdef object keyid_of(self, tl_sv v):
        """The role's key id (its own str object) spelled ``v``, or None."""
        cdef Py_ssize_t i, start
        cdef const char *kb = PyBytes_AS_STRING(self._kbuf)
        for i in range(self._nkeys):
            start = self._kstart[i]
            if self._kstart[i + 1] - start == v.n and memcmp(kb + start, v.s, v.n) == 0:
                return self.keyids[i]
        return None


class _PathsOnly:
    """A grant with only patterns (what simple_may_sign builds a _Grant from)."""
    keyids = ()
    threshold = 1

    def __init__(self, paths) -> None:
        self.paths = tuple(paths)


def simple_may_sign(paths, str tag):
    """What the fast path (``_Grant.may_sign_simple``) decides for ``tag`` under a
    delegation's ``paths`` without fnmatch: True or False, or None when fnmatch must
    decide (for the differential test)."""
    if not tag.isascii():
        return None
    cdef _Grant g = _Grant("targets/test", 0, _PathsOnly(paths))
    b = tag.encode("ascii")
    cdef tl_sv v
    v.s = PyBytes_AS_STRING(b)
    v.n = <uint32_t>PyBytes_GET_SIZE(b)
    rc = g.may_sign_simple(v)
    return None if rc < 0 else rc == 1


cdef class _Repo:
    """A repository as the fast path reads it: its dicts and active roles, and its
    ``version`` / ``last_log_time`` as the fast path moves them (written back to the
    ``RepoState`` by ``CompiledFold._flush``, not per event: two attribute writes and
    a cache miss on the ``RepoState`` saved per event)."""
    cdef object repo, tags, versions
    cdef bint tags_is_dict, versions_is_dict, store     # store: a compact tag store holding its versions too
    cdef object deleted_tags, compromised   # dicts (a core.shared_maps.SharedMap until the repository writes)
    cdef list grants
    cdef long long version, last_log_time   # the RepoState's, as the fast path left them
    cdef bint dirty                         # ... not yet written back (in CompiledFold._dirty)
    cdef bint has_compromised               # compromised was not empty (it changes only off the fast path)
    cdef bint has_deleted                   # deleted_tags may not be empty (the fast path only empties it)

    def __init__(self, repo):
        self.repo = repo
        self.version = repo.version
        self.last_log_time = repo.last_log_time
        self.dirty = False
        self.has_compromised = bool(repo.compromised)
        self.has_deleted = bool(repo.deleted_tags)
        self.tags = repo.tags
        self.tags_is_dict = type(repo.tags) is dict
        self.versions = repo.versions
        self.versions_is_dict = type(repo.versions) is dict
        self.store = (_STORE != NULL and type(repo.tags) is _CTagStore and type(repo.versions) is _TagVersions
                      and repo.versions.store is repo.tags)
        self.deleted_tags = repo.deleted_tags
        self.compromised = repo.compromised
        self.grants = [_Grant(role, gid, repo.grants[gid]) for role, gid in repo.roles.items()]


cdef class CompiledFold:
    """The compiled twin of :class:`TrustedFold` over ``py_fold.state``; ``py_fold`` (a
    ``TrustedFold`` over the same state) takes every record off the fast path."""

    cdef readonly object state
    cdef readonly object py_fold
    cdef dict _materials
    cdef dict _patterns
    cdef object _material_fn
    cdef object _decode
    cdef public long long offset          # the record being folded (for error messages)
    cdef public long long last_log_time   # log time of the last record folded (-1: none)
    cdef public long long fast            # records applied on the fast path
    cdef public long long slow            # records handed to the Python fold
    cdef tl_rslot *_rt     # repository name -> _Repo, or None (not on the fast path): see tl_rslot
    cdef size_t _rt_mask   # slots - 1 (0 while _rt is NULL)
    cdef size_t _rt_used   # slots holding a name
    cdef list _dirty       # the _Repos whose version / last_log_time _flush must write back
    cdef long long _next_version
    cdef tl_rec *rec                      # the record being applied (one of _ring)
    # fold_segment runs AHEAD records ahead of the one it applies, parsing each and
    # prefetching what applying it will touch (see _hint); slot k of the ring holds record
    # number k mod RING of the segment: parsed, and its repository view if one was cached
    cdef tl_rec _ring[RING]
    cdef Py_ssize_t _rpos[RING]           # where its frame starts
    cdef uint32_t _rlen[RING]             # its body's length
    cdef long long _roff[RING]            # its offset
    cdef int _rrc[RING]                   # _parse's answer (0: the fast layout)
    cdef PyObject *_rview[RING]           # its repository's cached _Repo (borrowed), or NULL
    cdef uint64_t _rh[RING]               # its repository name's _rt_hash (0: not parsed on the fast layout)
    cdef unsigned long long _repoch[RING] # self._epoch when _rview was taken
    cdef unsigned long long _epoch        # moves whenever a cached view may be released

    def __init__(self, py_fold, decode):
        """``decode``: body -> (LogRecord, Envelope, Event), as ``replay.decode_trusted``."""
        self.state = py_fold.state
        self.py_fold = py_fold
        self._materials = py_fold._materials
        self._patterns = py_fold._patterns
        self._material_fn = py_fold._material
        self._decode = decode
        self._dirty = []
        self._epoch = 0
        self.rec = &self._ring[0]
        self._next_version = -1
        self.offset = 0
        self.last_log_time = -1
        self.fast = 0
        self.slow = 0

    def apply(self, env, ev, log_time, offset):
        """A decoded record: as ``TrustedFold.apply``."""
        self._invalidate()
        self.py_fold.apply(env, ev, log_time, offset)

    def flush(self):
        """Write back what the fast path holds in C (each repository's ``version`` and
        ``last_log_time``, ``state.version``). Every call but ``fold_segment(...,
        defer_flush=True)`` does it before it returns; a run of such calls ends with this."""
        self._flush()

    # -- the fast path --------------------------------------------------------------

    cdef _Repo _repo(self, dict repos, tl_sv name):
        """The cached view of a repository (None: no such repository, or not on the
        fast path). Built from the state on first use after :meth:`_invalidate`."""
        cdef PyObject *p
        cdef uint64_t h = _rt_hash(name.s, name.n)
        cdef tl_rslot *sl = self._rt_find(name.s, name.n, h)
        if sl != NULL and sl.h != 0 and sl.view != NULL:
            return <_Repo>sl.view
        s = _utf8(name)
        c = None
        if s is not None:
            p = PyDict_GetItem(repos, s)
            if p is not NULL and (<object>p).tuf is None and _fits(<object>p):
                c = _Repo(<object>p)
        self._rt_put(name.s, name.n, h, c)
        return c

    cdef tl_rslot *_rt_find(self, const char *s, Py_ssize_t n, uint64_t h) noexcept:
        """The slot of name ``s`` in _rt, or the empty slot where it would go (NULL:
        no table yet)."""
        cdef size_t i
        cdef tl_rslot *sl
        if self._rt == NULL:
            return NULL
        i = h & self._rt_mask
        while True:
            sl = &self._rt[i]
            if sl.h == 0 or (sl.h == h and sl.n == n and memcmp(_rt_name(sl), s, n) == 0):
                return sl
            i = (i + 1) & self._rt_mask

    cdef int _rt_put(self, const char *s, Py_ssize_t n, uint64_t h, object view) except -1:
        cdef tl_rslot *sl
        cdef PyObject *old
        cdef char *copy
        if self._rt == NULL or 2 * (self._rt_used + 1) > self._rt_mask + 1:
            self._rt_grow()
        sl = self._rt_find(s, n, h)
        if sl.h == 0:
            if n <= RT_INLINE:
                memcpy(sl.buf, s, n)
            else:
                copy = <char *>malloc(n)
                if copy == NULL:
                    raise MemoryError()
                memcpy(copy, s, n)
                (<char **>sl.buf)[0] = copy
            sl.h, sl.n, sl.view = h, n, NULL
            self._rt_used += 1
        Py_INCREF(view)
        old = sl.view
        sl.view = <PyObject *>view
        Py_XDECREF(old)
        return 0

    cdef int _rt_grow(self) except -1:
        cdef size_t slots = (self._rt_mask + 1) * 2 if self._rt != NULL else RT_MIN
        cdef tl_rslot *t = <tl_rslot *>aligned_alloc(64, slots * sizeof(tl_rslot))
        cdef tl_rslot *old = self._rt
        cdef size_t i, j, n = self._rt_mask + 1 if old != NULL else 0
        if t == NULL:
            raise MemoryError()
        memset(t, 0, slots * sizeof(tl_rslot))
        for i in range(n):
            if old[i].h != 0:
                j = old[i].h & (slots - 1)
                while t[j].h != 0:
                    j = (j + 1) & (slots - 1)
                t[j] = old[i]
        self._rt, self._rt_mask = t, slots - 1
        free(old)
        return 0

    cdef void _rt_clear(self) noexcept:
        """Release every view and name, and the table (the next put starts a small one)."""
        cdef size_t i, slots = self._rt_mask + 1
        cdef tl_rslot *t = self._rt
        if t == NULL:
            return
        self._rt, self._rt_mask, self._rt_used = NULL, 0, 0   # detached before any view is freed
        for i in range(slots):
            if t[i].h != 0:
                if t[i].n > RT_INLINE:
                    free((<char **>t[i].buf)[0])
                Py_XDECREF(t[i].view)
        free(t)

    def __dealloc__(self):
        self._rt_clear()

    cdef int _invalidate(self) except -1:
        """Forget every cached repository view (after writing back what they hold): at
        the start of every call that may follow a change the fast path did not make."""
        self._flush()
        if self._rt_used:
            self._rt_clear()
            self._epoch += 1
        return 0

    cdef int _forget(self, str name) except -1:
        """Forget the cached view of repository ``name`` (after writing back what the
        views hold): the Python fold changed it. An event changes only its own
        repository (``TrustState.apply`` and every handler write ``repos[event.repo]``
        alone), so the other views stay right."""
        cdef tl_rslot *sl
        cdef PyObject *old
        self._flush()
        b = name.encode("utf-8", "surrogatepass")
        sl = self._rt_find(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), _rt_hash(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)))
        if sl != NULL and sl.h != 0:
            old, sl.view = sl.view, NULL      # the name keeps its slot (probing needs no tombstones)
            Py_XDECREF(old)
        self._epoch += 1
        return 0

    cdef int _fast(self, dict repos, long long offset, PyObject *view) except -1:
        """Apply ``self.rec`` (a parsed ImageSigned) if it is on the fast path: 1 if
        applied, 0 if the Python fold must decide. The same conditions and the same
        changes as ``TrustedFold.apply``'s fast path. ``view``: its repository's cached
        view, found ahead (valid: no view was released since), or NULL."""
        cdef tl_rec *r = self.rec
        cdef PyObject *p
        cdef _Repo c
        cdef _Grant g = None
        cdef long long log_time = r.log_time
        cdef int64_t cur_version = 0
        cdef int rc
        cdef Py_ssize_t i
        if not tl_is_tag(r.tag, MAX_TAG_LEN) or not tl_is_digest(r.digest):
            return 0
        if r.expires <= r.issued_at or r.size < 0 or r.nsigs == 0 or r.version <= 0:
            return 0
        c = <_Repo>view if view is not NULL else self._repo(repos, r.repo)
        if c is None or c.version >= INT64_MAX:   # (its next version would not fit the C field)
            return 0
        for i in range(len(c.grants)):
            g = <_Grant>c.grants[i]
            if g.role_b_len == r.role.n and memcmp(<const char *>g.role_b, r.role.s, r.role.n) == 0:
                break
            g = None
        if g is None:
            return 0
        tag = None      # the tag's str, made only where a dict needs it
        if c.store:
            rc = _STORE.tag_version(<PyObject *>c.tags, r.tag.s, r.tag.n, &cur_version)
            if rc == 1 and not r.version > cur_version:
                return 0
            if rc == 2:
                tag = PyUnicode_DecodeASCII(r.tag.s, r.tag.n, NULL)
                cur = c.versions.get(tag)
                if cur is not None and not r.version > cur:
                    return 0
        else:
            tag = PyUnicode_DecodeASCII(r.tag.s, r.tag.n, NULL)
            if c.versions_is_dict:
                p = PyDict_GetItem(c.versions, tag)
                if p is not NULL and not r.version > <object>p:
                    return 0
            else:
                cur = c.versions.get(tag)
                if cur is not None and not r.version > cur:
                    return 0
        signatures = None
        one = r.nsigs == 1 and g.threshold == 1
        if one:
            kid = g.keyid_of(r.keyid[0])
            if kid is None:
                return 0
            if c.has_compromised:
                since = c.compromised.get(self._material(c.repo, kid))
                if since is not None and since <= log_time:
                    return 0
        else:
            signatures = self._counted(c, g, log_time)
            if signatures is None:
                return 0
        if not g.is_targets:
            rc = g.may_sign_simple(r.tag)    # no str, no dict for the usual patterns
            if rc == 0:
                return 0
            if rc < 0:
                if tag is None:
                    tag = PyUnicode_DecodeASCII(r.tag.s, r.tag.n, NULL)
                p = PyDict_GetItem(g.may_sign, tag)
                if p is NULL:
                    ok = self._may_sign(g.paths, tag)
                    PyDict_SetItem(g.may_sign, tag, ok)
                else:
                    ok = <object>p
                if not ok:
                    return 0
        # a compact store takes the parsed fields (it re-derives the payload and compares it
        # with the record's); else, or when it cannot, the TagEntry as TrustedFold makes it
        if not (one and c.store and 0 <= g.gid <= 0x7fffffff and _STORE.put(
                <PyObject *>c.tags, r.tag.s, r.tag.n, r.digest.s, r.digest.n, r.size, r.expires, r.issued_at,
                r.version, <PyObject *>g.role, <const char *>g.role_b, g.role_b_len, <int32_t>g.gid, log_time,
                offset, <PyObject *>kid,
                <const char *>r.sig[0], r.sig_len[0], <const char *>r.payload, r.payload_len)):
            if tag is None:
                tag = PyUnicode_DecodeASCII(r.tag.s, r.tag.n, NULL)
            if signatures is None:
                signatures = ((kid, PyBytes_FromStringAndSize(<const char *>r.sig[0], r.sig_len[0])),)
            version = r.version
            digest = PyUnicode_DecodeASCII(r.digest.s, r.digest.n, NULL)
            payload = PyBytes_FromStringAndSize(<const char *>r.payload, r.payload_len)
            entry = TagEntry(tag, digest, r.size, r.expires, g.role, g.gid, log_time, offset, version, payload,
                             signatures)
            if c.tags_is_dict:
                PyDict_SetItem(c.tags, tag, entry)
            else:
                c.tags[tag] = entry
            if c.versions_is_dict:
                PyDict_SetItem(c.versions, tag, version)
            else:
                c.versions[tag] = version
        if c.has_deleted:
            if tag is None:
                tag = PyUnicode_DecodeASCII(r.tag.s, r.tag.n, NULL)
            c.deleted_tags.pop(tag, None)
            c.has_deleted = bool(c.deleted_tags)
        # repo.version = max(repo.version + 1, version); repo.last_log_time = log_time: held
        # in the view and written back by _flush, as state.version (offset + 1) is
        if c.version + 1 > r.version:
            c.version = c.version + 1
        else:
            c.version = r.version
        c.last_log_time = log_time
        if not c.dirty:
            c.dirty = True
            self._dirty.append(c)
        self._next_version = offset + 1
        return 1

    cdef int _flush(self) except -1:
        cdef _Repo c
        if self._dirty:
            dirty, self._dirty = self._dirty, []
            for c in dirty:
                c.dirty = False
                c.repo.version = c.version
                c.repo.last_log_time = c.last_log_time
        if self._next_version >= 0:
            self.state.version = self._next_version
            self._next_version = -1
        return 0

    cdef object _material(self, repo, kid):
        cdef PyObject *p = PyDict_GetItem(self._materials, kid)
        if p is not NULL:
            return <object>p
        return self._material_fn(repo, kid)

    cdef bint _may_sign(self, paths, tag) except -1:
        k = (paths, tag)
        cdef PyObject *p = PyDict_GetItem(self._patterns, k)
        if p is not NULL:
            return <bint><object>p
        return self.py_fold._may_sign(paths, tag)

    cdef object _counted(self, _Repo c, _Grant g, long long log_time):
        """``TrustedFold._counted`` over the parsed signatures: None if the threshold
        is not met (the Python fold then decides)."""
        cdef tl_rec *r = self.rec
        cdef uint32_t i
        kids = []
        for i in range(r.nsigs):
            kids.append(g.keyid_of(r.keyid[i]))  # None: not one of the role's keys
        counted = self.py_fold.counted_keyids(c.repo, kids, g.threshold, log_time)
        if counted is None:
            return None
        out = []
        for i in range(r.nsigs):
            if kids[i] is not None and kids[i] in counted:
                out.append((kids[i], PyBytes_FromStringAndSize(<const char *>r.sig[i], r.sig_len[i])))
        return tuple(out)

    # -- records ----------------------------------------------------------------------

    cdef int _parse(self, const unsigned char *body, size_t n, tl_rec *r) noexcept:
        """The record-dispatch point: 0 if ``body`` is in a layout the fast path reads
        (parsed into ``r``), else nonzero (the Python decoder takes it)."""
        return tl_parse_record(body, n, r)

    cdef int _one(self, dict repos, const unsigned char *body, size_t n, long long offset, dict positions,
                  int parsed, PyObject *view) except -1:
        """Apply one record; ``parsed``: ``_parse``'s answer for it into ``self.rec``,
        or -1 to parse it here; ``view`` as for ``_fast``."""
        self.offset = offset
        if parsed < 0:
            parsed = self._parse(body, n, self.rec)
        if parsed == 0 and self._fast(repos, offset, view):
            self.fast += 1
            self.last_log_time = self.rec.log_time
            if positions is not None and self.rec.has_source:
                topic = _utf8(self.rec.topic)
                if topic is None:  # not reached: a non-UTF-8 topic is refused by the decoder below
                    raise ValueError("topic is not UTF-8")
                positions[(topic, self.rec.partition)] = self.rec.src_offset
            return 0
        self.slow += 1
        self._flush()
        rec, env, ev = self._decode(PyBytes_FromStringAndSize(<const char *>body, n))
        try:
            self.py_fold.apply(env, ev, rec.log_time, offset)
        finally:
            name = getattr(ev, "repo", None)
            if type(name) is str:
                self._forget(name)
            else:   # not reached: every event names its repository as a str
                self._invalidate()
        self.last_log_time = rec.log_time
        if positions is not None and rec.source is not None:
            positions[(rec.source.topic, rec.source.partition)] = rec.source.offset
        return 0

    def fold_bodies(self, long long first, bodies, where="log", positions=None):
        """Fold consecutive record bodies (bytes or memoryviews), the first at offset
        ``first``; as ``TrustedFold.fold_bodies`` (a record that cannot be replayed
        raises ``LogError``)."""
        cdef const unsigned char[::1] mv
        cdef dict repos = self.state.repos
        cdef long long off = first
        cdef const unsigned char *p
        self._invalidate()
        try:
            for body in bodies:
                mv = body
                p = &mv[0] if mv.shape[0] else _EMPTY
                self.rec = &self._ring[0]
                self._one(repos, p, mv.shape[0], off, positions, -1, NULL)
                off += 1
        except (msgspec.ValidationError, msgspec.DecodeError, EncodingError, RejectedEventError) as e:
            raise replay_error(where, self.offset, e) from e
        finally:
            self._flush()

    def fold_segment(self, bytes data, long long base, long long start, long long stop, bint crc,
                     leaves=None, positions=None, where="log", *, bint keep_views=False, bint defer_flush=False):
        """Fold the records ``[start, stop)`` of one segment (``data``, whose first
        record is at offset ``base``), checking each CRC (``crc``) and/or each body
        against its packed leaf hash (``leaves``: 32 bytes per record from ``start``).

        Returns ``(status, pos, offset)``: ``DONE``, or where and why it stopped
        (``SHORT``, ``PAST_END``, ``CRC_MISMATCH``, ``LEAF_MISMATCH``); the caller
        raises. A record that cannot be replayed raises ``LogError`` here.

        For a run of calls over consecutive segments that nothing else touches the
        state between (``replay.fold_segments``): ``keep_views`` keeps the repository
        views the previous call built (else they are rebuilt from the state, as they
        must be after any outside change), and ``defer_flush`` leaves the write-back of
        the repositories' versions to the next call or :meth:`flush` when this one
        ends with ``DONE`` (a run ends with ``flush()``; any other end writes back)."""
        cdef const unsigned char *d = <const unsigned char *>PyBytes_AS_STRING(data)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
        cdef const unsigned char *lv = NULL
        cdef Py_ssize_t pos = 0, b1
        cdef long long off = base
        cdef uint32_t length, want
        cdef unsigned char h[32]
        cdef dict repos = self.state.repos
        cdef bint done = False
        cdef int status = DONE_C
        cdef long long head = 0, tail = 0, j      # records read ahead / applied (ring numbers)
        cdef Py_ssize_t k, x
        cdef int st
        cdef bint reading = True
        if not keep_views:
            self._invalidate()
        if leaves is not None:
            if PyBytes_GET_SIZE(leaves) < 32 * (stop - start):
                raise ValueError("fewer leaf hashes than records")
            lv = <const unsigned char *>PyBytes_AS_STRING(leaves)
        try:
            while True:
                # read (frame, checks, parse) up to AHEAD records ahead of the one applied next
                while reading and head - tail <= AHEAD:
                    if off >= stop:
                        reading = False
                        break
                    if pos + 8 > size:
                        status, reading = SHORT_C, False
                        break
                    length = (<uint32_t>d[pos] << 24) | (<uint32_t>d[pos + 1] << 16) | (<uint32_t>d[pos + 2] << 8) | d[pos + 3]
                    want = (<uint32_t>d[pos + 4] << 24) | (<uint32_t>d[pos + 5] << 16) | (<uint32_t>d[pos + 6] << 8) | d[pos + 7]
                    b1 = pos + 8 + <Py_ssize_t>length
                    if b1 > size:
                        status, reading = PAST_END_C, False
                        break
                    if off >= start:
                        if crc and tl_crc32c(tl_crc32c(0, d + pos, 4), d + pos + 8, length) != want:
                            status, reading = CRC_MISMATCH_C, False
                            break
                        if lv is not NULL:
                            tl_leaf_hash(d + pos + 8, length, h)
                            if memcmp(h, lv + 32 * (off - start), 32) != 0:
                                status, reading = LEAF_MISMATCH_C, False
                                break
                        k = head % RING
                        self._rpos[k], self._rlen[k], self._roff[k] = pos, length, off
                        self._rrc[k] = self._parse(d + pos + 8, length, &self._ring[k])
                        self._rview[k] = NULL
                        self._rh[k] = 0
                        if self._rrc[k] == 0:
                            self._peek(k)
                        # the records read before this one, each a stage further
                        for st in range(1, HINT_STAGES):
                            j = head - st * HINT_GAP
                            if j < tail:
                                break
                            self._hint(j % RING, st)
                        head += 1
                        if b1 + DATA_AHEAD + 512 <= size:
                            for x in range(0, 512, 64):
                                TL_PREFETCH(d + b1 + DATA_AHEAD + x)
                    pos = b1
                    off += 1
                if tail == head:
                    break
                k = tail % RING
                tail += 1
                if (tail & YIELD_EVERY_MASK) == 0:
                    # let the helper threads (the next segment's read and checks, the key
                    # checks) take the GIL for the moment they need it: the fast path runs
                    # no bytecode, so CPython would never ask this thread to let go
                    with nogil:
                        pass
                self.rec = &self._ring[k]
                self._one(repos, d + self._rpos[k] + 8, self._rlen[k], self._roff[k], positions, self._rrc[k],
                          self._rview[k] if self._repoch[k] == self._epoch else NULL)
            done = status == DONE_C
        except (msgspec.ValidationError, msgspec.DecodeError, EncodingError, RejectedEventError) as e:
            raise replay_error(where, self.offset, e) from e
        finally:
            self.rec = &self._ring[0]
            if not (done and defer_flush):
                self._flush()
        return status, pos, off

    cdef void _peek(self, Py_ssize_t k) noexcept:
        """Hint stage 0 for ring slot ``k``: its repository name's hash, and the table
        slot it starts probing from (stage 1 looks the view up there)."""
        cdef tl_rec *r = &self._ring[k]
        cdef uint64_t h = _rt_hash(r.repo.s, r.repo.n)
        self._rh[k] = h
        if self._rt != NULL:
            TL_PREFETCH(&self._rt[h & self._rt_mask])

    cdef void _hint(self, Py_ssize_t k, int stage) noexcept:
        """Hint stage ``stage`` (1..HINT_STAGES-1) for ring slot ``k``: each loads what
        the next one reads (the view, by its table slot; then its store and grants, then
        the store's slot, row and name); only a hint, never a change (a view released
        since is skipped)."""
        cdef PyObject *p
        cdef _Repo c
        cdef _Grant g
        cdef tl_rec *r = &self._ring[k]
        cdef tl_rslot *sl
        cdef Py_ssize_t i, ng
        if stage == 1:
            # its repository's view, if one is cached (kept with the epoch, for applying
            # it), and the first lines of that object
            if self._rh[k] == 0:
                return
            sl = self._rt_find(r.repo.s, r.repo.n, self._rh[k])
            if sl == NULL or sl.h == 0 or sl.view == NULL or sl.view == <PyObject *>None:
                return
            p = sl.view
            self._rview[k] = p
            self._repoch[k] = self._epoch
            TL_PREFETCH(p)
            TL_PREFETCH(<char *>p + 64)
            TL_PREFETCH(<char *>p + 128)
            return
        p = self._rview[k]
        if p is NULL or self._repoch[k] != self._epoch:
            return
        c = <_Repo>p
        if stage == 2:
            TL_PREFETCH(<PyObject *>c.grants)
            if c.store:
                TL_PREFETCH(<PyObject *>c.tags)
                TL_PREFETCH(<char *>(<PyObject *>c.tags) + 64)
                TL_PREFETCH(<char *>(<PyObject *>c.tags) + 128)
                TL_PREFETCH(<char *>(<PyObject *>c.tags) + 192)
        elif stage == 3:
            ng = PyList_GET_SIZE(c.grants)
            for i in range(ng if ng < 4 else 4):
                p = PyList_GET_ITEM(c.grants, i)
                TL_PREFETCH(p)
                TL_PREFETCH(<char *>p + 64)
                TL_PREFETCH(<char *>p + 128)
            if c.store and _PREFETCH is not NULL:
                _PREFETCH(<PyObject *>c.tags, r.tag.s, r.tag.n, 0)
        elif stage == 4:
            ng = PyList_GET_SIZE(c.grants)
            for i in range(ng if ng < 4 else 4):
                g = <_Grant>PyList_GET_ITEM(c.grants, i)
                TL_PREFETCH(<PyObject *>g.role_b)
                TL_PREFETCH(<PyObject *>g._kbuf)
                TL_PREFETCH(<char *>(<PyObject *>g._kbuf) + 64)
                TL_PREFETCH(<PyObject *>g.keyids)
                if not g.is_targets:
                    TL_PREFETCH(<PyObject *>g.may_sign)
            if c.store and _PREFETCH is not NULL:
                _PREFETCH(<PyObject *>c.tags, r.tag.s, r.tag.n, 1)
        else:
            ng = PyList_GET_SIZE(c.grants)
            for i in range(ng if ng < 4 else 4):
                g = <_Grant>PyList_GET_ITEM(c.grants, i)
                if g._nkeys > 0:    # the key id str keyid_of returns (and counts a reference on)
                    TL_PREFETCH_W(PyTuple_GET_ITEM(g.keyids, 0))
            if c.store and _PREFETCH is not NULL:
                _PREFETCH(<PyObject *>c.tags, r.tag.s, r.tag.n, 2)


cdef int _check_frames(const unsigned char *d, Py_ssize_t size, long long base, long long start, long long stop,
                       bint crc, const unsigned char *lv, Py_ssize_t *pos_out, long long *off_out) noexcept nogil:
    """fold_segment's walk and checks without the fold (its status; where it stopped)."""
    cdef Py_ssize_t pos = 0, b1
    cdef long long off = base
    cdef uint32_t length, want
    cdef unsigned char h[32]
    cdef int status = DONE_C
    while off < stop:
        if pos + 8 > size:
            status = SHORT_C
            break
        length = (<uint32_t>d[pos] << 24) | (<uint32_t>d[pos + 1] << 16) | (<uint32_t>d[pos + 2] << 8) | d[pos + 3]
        want = (<uint32_t>d[pos + 4] << 24) | (<uint32_t>d[pos + 5] << 16) | (<uint32_t>d[pos + 6] << 8) | d[pos + 7]
        b1 = pos + 8 + <Py_ssize_t>length
        if b1 > size:
            status = PAST_END_C
            break
        if off >= start:
            if crc and tl_crc32c(tl_crc32c(0, d + pos, 4), d + pos + 8, length) != want:
                status = CRC_MISMATCH_C
                break
            if lv != NULL:
                tl_leaf_hash(d + pos + 8, length, h)
                if memcmp(h, lv + 32 * (off - start), 32) != 0:
                    status = LEAF_MISMATCH_C
                    break
        pos = b1
        off += 1
    pos_out[0] = pos
    off_out[0] = off
    return status


def check_frames(bytes data, long long base, long long start, long long stop, bint crc, leaves=None):
    """The checks :meth:`CompiledFold.fold_segment` makes of records ``[start, stop)``
    (frames, each CRC if ``crc``, each body against ``leaves``), without folding and
    with the GIL released: a helper thread runs them on the next segment while the
    fold works on this one, which is then folded unchecked if they all passed (and
    with the checks, to stop where they fail, if not). Returns ``(status, pos,
    offset)`` as ``fold_segment`` would stop."""
    cdef const unsigned char *d = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data), pos = 0
    cdef const unsigned char *lv = NULL
    cdef long long off = base
    cdef int status
    if leaves is not None:
        if type(leaves) is not bytes:
            raise TypeError(f"leaves are packed in bytes, not {type(leaves).__name__}")
        if PyBytes_GET_SIZE(leaves) < 32 * (stop - start):
            raise ValueError("fewer leaf hashes than records")
        lv = <const unsigned char *>PyBytes_AS_STRING(leaves)
    with nogil:
        status = _check_frames(d, size, base, start, stop, crc, lv, &pos, &off)
    return status, pos, off


# -- segment frames (SegmentLog's open) ------------------------------------------------

FRAME_OK = 0
FRAME_SHORT_HEADER = 1   # the segment ends inside a record header (torn)
FRAME_PAST_END = 2       # a record's length runs past the end (torn)
FRAME_TOO_LONG = 3       # a length over max_record_bytes
FRAME_CRC = 4            # CRC mismatch


def scan_frames(bytes data, Py_ssize_t end, long long max_record_bytes, Py_ssize_t interval, index_rel, index_pos):
    """``segment_log._iter_frames`` over ``data[:end]`` with ``_Segment.note_record``:
    every frame's CRC checked, an index entry appended to ``index_rel``/``index_pos``
    for the first record and for each one ``interval`` bytes past the last indexed.

    Returns ``(count, pos, problem, length)``: the whole records read, the byte position
    where reading stopped, ``FRAME_OK`` or why it stopped there (``length`` the frame's
    stated length), for the caller to raise or cut exactly as the Python reader does."""
    cdef const unsigned char *d = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t pos = 0, body_end, last_indexed = -1
    cdef long long count = 0
    cdef uint32_t length, want
    if end > PyBytes_GET_SIZE(data):
        raise ValueError("end is past the data")
    if len(index_pos):
        raise ValueError("scan_frames builds the index from the first record")
    while pos < end:
        if end - pos < 8:
            return count, pos, FRAME_SHORT_HEADER, 0
        length = (<uint32_t>d[pos] << 24) | (<uint32_t>d[pos + 1] << 16) | (<uint32_t>d[pos + 2] << 8) | d[pos + 3]
        want = (<uint32_t>d[pos + 4] << 24) | (<uint32_t>d[pos + 5] << 16) | (<uint32_t>d[pos + 6] << 8) | d[pos + 7]
        body_end = pos + 8 + <Py_ssize_t>length
        if body_end > end:
            return count, pos, FRAME_PAST_END, length
        if length > max_record_bytes:
            return count, pos, FRAME_TOO_LONG, length
        if tl_crc32c(tl_crc32c(0, d + pos, 4), d + pos + 8, length) != want:
            return count, pos, FRAME_CRC, length
        if last_indexed < 0 or pos - last_indexed >= interval:
            index_rel.append(count)
            index_pos.append(pos)
            last_indexed = pos
        count += 1
        pos = body_end
    return count, pos, FRAME_OK, 0


# -- the ingest append: a batch's frames, leaf hashes and tree nodes in one call -----------

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.string cimport memcpy

cdef extern from "<openssl/sha.h>":
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX *c) nogil
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t n) nogil
    int SHA256_Final(unsigned char *md, SHA256_CTX *c) nogil


cdef inline void _be32(unsigned char *p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


def frame_records(list bodies, Py_ssize_t start, bytearray pending, bytearray leaves, long long size,
                  long long count, long long segment_bytes, long long interval, index_rel, index_pos):
    """``segment_log._frame_records_py`` in C: frame ``bodies[start:]`` (length, CRC-32C,
    body) onto ``pending``, the RFC 9162 leaf hash of each body onto ``leaves`` (unless
    None), an index entry (``_Segment.note_record``) for the first record of the segment
    and each one ``interval`` bytes past the last indexed, while the segment of ``size``
    bytes and ``count`` records is under ``segment_bytes``. Returns (the next body's
    index, size, count); the caller rolls the segment and calls again."""
    cdef Py_ssize_t n = PyList_GET_SIZE(bodies), i = start, j, k, out_at, leaf_at
    cdef long long pos = size, cnt = count, last = index_pos[len(index_pos) - 1] if len(index_pos) else -1
    cdef long long need = 0
    cdef object body
    cdef Py_ssize_t blen
    cdef unsigned char *out
    cdef unsigned char *lv
    cdef const unsigned char *b
    cdef uint32_t crc
    if start < 0 or start > n:
        raise ValueError("start is outside bodies")
    # how many fit (a record goes into the segment while it is under segment_bytes), and
    # their index entries; bodies are bytes (checked), sizes checked by the caller
    j = i
    while j < n and not (cnt and pos >= segment_bytes):
        body = <object>PyList_GET_ITEM(bodies, j)
        if type(body) is not bytes:
            raise TypeError(f"record bodies are bytes, not {type(body).__name__}")
        blen = PyBytes_GET_SIZE(body)
        if blen > 0xFFFFFFFF:
            raise ValueError("a record body over 4 GiB")
        if last < 0 or pos - last >= interval:
            index_rel.append(cnt)
            index_pos.append(pos)
            last = pos
        need += 8 + blen
        pos += 8 + blen
        cnt += 1
        j += 1
    out_at = PyByteArray_GET_SIZE(pending)
    PyByteArray_Resize(pending, out_at + need)
    out = <unsigned char *>PyByteArray_AS_STRING(pending) + out_at
    lv = NULL
    if leaves is not None:
        leaf_at = PyByteArray_GET_SIZE(leaves)
        PyByteArray_Resize(leaves, leaf_at + 32 * (j - i))
        lv = <unsigned char *>PyByteArray_AS_STRING(leaves) + leaf_at
    for k in range(i, j):
        body = <object>PyList_GET_ITEM(bodies, k)
        b = <const unsigned char *>PyBytes_AS_STRING(body)
        blen = PyBytes_GET_SIZE(body)
        _be32(out, <uint32_t>blen)
        crc = tl_crc32c(tl_crc32c(0, out, 4), b, blen)
        _be32(out + 4, crc)
        memcpy(out + 8, b, blen)
        out += 8 + blen
        if lv != NULL:
            tl_leaf_hash(b, blen, lv)
            lv += 32
    return j, pos, cnt


cdef inline void _node_hash(const unsigned char *left, const unsigned char *right, unsigned char *out) noexcept nogil:
    cdef unsigned char one = 1
    cdef SHA256_CTX ctx
    SHA256_Init(&ctx)
    SHA256_Update(&ctx, &one, 1)
    SHA256_Update(&ctx, left, 32)
    SHA256_Update(&ctx, right, 32)
    SHA256_Final(out, &ctx)


def compact_append(list peaks, long long size, leaves, list nodes):
    """``CompactRange.append`` of every 32-byte hash packed in ``leaves``, in C: ``peaks``
    (the range's peaks, largest first) is updated in place; each perfect subtree a leaf
    completes is appended, as ``on_node(level, hash)`` would see it, to ``nodes[level]``
    (a bytearray; the list is extended as needed). Returns the new size."""
    cdef const unsigned char[::1] mv = leaves
    cdef Py_ssize_t n = mv.shape[0] // 32, k
    cdef long long s
    cdef int level
    cdef unsigned char h[32]
    cdef unsigned char t[32]
    cdef bytes left
    cdef bytearray out
    cdef object py_size = size
    if mv.shape[0] % 32:
        raise ValueError(f"packed leaf hashes must be a multiple of 32 bytes, got {mv.shape[0]}")
    if size < 0 or len(peaks) != py_size.bit_count():
        raise ValueError(f"a tree of {size} leaves has {py_size.bit_count() if size >= 0 else 0} peaks, "
                         f"got {len(peaks)}")
    for k in range(n):
        memcpy(h, &mv[32 * k], 32)
        s = size
        level = 0
        while s & 1:
            left = peaks.pop()
            if PyBytes_GET_SIZE(left) != 32:
                raise ValueError("a peak is not a 32-byte hash")
            _node_hash(<const unsigned char *>PyBytes_AS_STRING(left), h, t)
            memcpy(h, t, 32)
            s >>= 1
            level += 1
            while len(nodes) <= level:
                nodes.append(bytearray())
            out = nodes[level]
            out += PyBytes_FromStringAndSize(<const char *>h, 32)
        peaks.append(PyBytes_FromStringAndSize(<const char *>h, 32))
        size += 1
    return size


include "_ingestfold.pxi"
include "_precheck.pxi"
