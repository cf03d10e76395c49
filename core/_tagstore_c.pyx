# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled compact tag store: ``dict[str, TagEntry]`` with no Python object per tag.

:class:`CTagStore` has the mapping interface of ``RepoState.tags`` (and of its pure-Python
twin, :class:`trustlog.core.tagstore.TagStore`), but holds the signed tags of one
repository as C data:

* tag names, UTF-8, in one byte arena, found through an open-addressing hash table of
  row numbers (linear probing; a deleted slot is a tombstone until the table is rebuilt);
* one C row per tag (``tl_row``, 88 bytes): the digest as its 32 raw bytes, expiry and
  log time as int64 (the compiled chain evaluation reads them in place), size / offset /
  version / issued_at as uint32 (a row where one of them is outside ``[0, 2**32)`` is
  *wide*: the four are int64 in a side array, ``tl_wide``, so every int64 the fold
  accepts is still held in a row), the grant id, the role as an index into a per-store
  string table, and where its name and signatures are;
* signatures in a second arena as ``(u16 index of the key id in the string table, u32
  length, bytes)``;
* **no payload**: an ImageSigned payload is exactly the canonical MessagePack of
  ``{kind, repo, version, issued_at, role, tag, digest, size, expires}`` (core.events,
  core.encoding), so it is re-derived from the row and the store's repository name when
  an entry is made. On insert the store derives it and compares it byte for byte with
  the entry's payload; an entry it cannot derive or hold exactly (another repository, a
  payload of another shape, odd field types or ranges, a non-canonical digest, a ``tag``
  field other than its key) is kept verbatim in a side table, so the store behaves
  exactly like a dict for every value.

Rows stay in insertion order (a deleted row is a tombstone until more than half the rows
are), so iteration follows a dict's. A :class:`TagEntry` is made on access: a copy, equal
to the one stored. The store also holds the version of each tag scope
(``core.events.version_scope``): :class:`TagVersions` is ``RepoState.versions`` over it
(a tag's scope is its row's version column; a value the rows do not say, such as a
deleted tag's last version, is kept in a small side dict).

:meth:`CTagStore.export_columns` and :meth:`CTagStore.from_columns` write and read a
snapshot's section of the store (core.tagstore.SnapColumns, the same bytes as the
pure-Python ``columns_of`` / ``entries_from_columns``) in one pass over the rows, the
arenas copied whole and every field of an imported section checked.

``generation`` counts mutations: a reader of the C rows (the compiled chain evaluation)
recompiles when it moves. While :func:`reading` is held (a reader with the GIL released)
every mutation raises RuntimeError, so no reader ever sees freed rows.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_New
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset

from array import array
from collections.abc import ItemsView, KeysView, Mapping, MutableMapping, ValuesView

from trustlog.core.errors import EncodingError
from trustlog.core.events import role_scope
from trustlog.core.shared_maps import NO_ENTRIES, SharedMap, shared
from trustlog.core.state import TagEntry
from trustlog.core.tagstore import _verbatim_canonical as _py_verbatim_canonical

ctypedef struct tl_row:
    int64_t log_time
    int64_t expires
    uint8_t digest[32]
    int32_t grant_id
    int32_t role          # >= 0: index into the string table; ROW_VERBATIM; ROW_DEAD
    uint32_t name_off     # the tag's UTF-8 name in the name arena
    uint32_t name_len     # its length (NAME_MASK) and the flags ROWF_COLON, ROWF_WIDE
    uint32_t sig_off      # (u16 key index, u32 length, bytes)* in the signature arena
    uint32_t sig_len
    uint32_t size         # the narrow columns (ROWF_WIDE: ``size`` is the index of the
    uint32_t offset       # row's tl_wide, which holds all four as int64, and the
    uint32_t version      # other three are 0)
    uint32_t issued_at

# The four narrow columns of a row as int64: in the row itself, or for a wide row in the
# store's side array (an entry of a released wide row is dead until compact()).
ctypedef struct tl_wide:
    int64_t size
    int64_t offset
    int64_t version
    int64_t issued_at


DEF ROW_VERBATIM = -1
DEF ROW_DEAD = -2
cdef extern from *:
    """
    #define TL_ROWF_COLON ((uint32_t)0x40000000u)
    #define TL_ROWF_WIDE ((uint32_t)0x80000000u)
    #define TL_NAME_MASK ((uint32_t)0x3fffffffu)
    #define TL_U32_MAX ((int64_t)0xffffffffLL)
    """
    const uint32_t ROWF_COLON "TL_ROWF_COLON"   # (in name_len) the name has a ':': not a tag scope of the versions
    const uint32_t ROWF_WIDE "TL_ROWF_WIDE"     # (in name_len) the narrow columns are in the side array
    const uint32_t NAME_MASK "TL_NAME_MASK"     # (in name_len) the name's length: names are under 1 GiB
    const int64_t U32_MAX "TL_U32_MAX"
DEF SLOT_EMPTY = -1
DEF SLOT_DUMMY = -2
DEF MAX_TABLE = 65536
DEF SIG_HDR = 6
DEF COMPACT_MIN = 65536

# The row struct as a reader of c_view() must declare it (verifier/_structs.pxi StoreRowC):
# its name, its size and the offsets of the fields the reader uses.
ROW_LAYOUT = ("tl_row/2", sizeof(tl_row), <Py_ssize_t>&(<tl_row *>0).log_time, <Py_ssize_t>&(<tl_row *>0).expires,
              <Py_ssize_t>&(<tl_row *>0).grant_id, <Py_ssize_t>&(<tl_row *>0).role,
              <Py_ssize_t>&(<tl_row *>0).sig_off, <Py_ssize_t>&(<tl_row *>0).sig_len)

# The C calls of the compiled replay fold (ingest/_fastfold.pyx declares the same struct and
# takes it from the capsule _C_API): a tag's version and an ImageSigned written straight
# into a store from the parsed record, with no TagEntry, payload or signature object.
ctypedef struct tl_store_api:
    int abi
    int (*tag_version)(PyObject *store, const char *name, Py_ssize_t n, int64_t *out) noexcept
    int (*put)(PyObject *store, const char *name, Py_ssize_t n, const char *digest, Py_ssize_t digest_n,
               int64_t size, int64_t expires, int64_t issued_at, int64_t version, PyObject *role,
               const char *role_u8, Py_ssize_t role_n, int32_t grant_id, int64_t log_time, int64_t offset,
               PyObject *keyid, const char *sig, Py_ssize_t sig_n, const char *payload, Py_ssize_t payload_n) except -1

cdef object _ABSENT = object()     # a tag scope with no version (in the side dict of versions)
cdef int _readers = 0               # readers of C rows in progress (mutations refused)
cdef unsigned long long _mutations = 0   # changes of any store (see mutations())
cdef int64_t I64_MIN = -0x7fffffffffffffff - 1   # (spelled so: -2**63 is not a C literal)
cdef int64_t I64_MAX = 0x7fffffffffffffff
_MISSING = object()

cdef const char *_HEX = b"0123456789abcdef"


class reading:
    """``with reading():`` while C rows of any store are read without the GIL: every
    store refuses to mutate meanwhile (RuntimeError)."""

    def __enter__(self):
        global _readers
        _readers += 1
        return self

    def __exit__(self, *exc):
        global _readers
        _readers -= 1
        return False


def readers():
    """How many readers hold :class:`reading` now."""
    return _readers


def mutations():
    """How many times any compact store of this process has changed: a reader that saw
    every store as it compiled it, and sees this unchanged, knows none moved since."""
    return _mutations


cdef inline int _check_writable() except -1:
    if _readers:
        raise RuntimeError("a compact tag store cannot change while the compiled chain evaluation reads it")
    return 0


cdef inline uint32_t _hash(const char *s, Py_ssize_t n) noexcept nogil:
    cdef uint32_t h = 2166136261u
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <uint8_t>s[i]) * 16777619u
    return h ^ (h >> 15)


cdef bytes _utf8(object s):
    if type(s) is not str:
        raise TypeError(f"a tag store's keys are str, not {type(s).__name__}")
    try:
        return (<str>s).encode("utf-8")
    except UnicodeEncodeError:
        return (<str>s).encode("utf-8", "surrogatepass")   # lone surrogates: still one byte string per str


cdef bint _strict_utf8(str s) except -1:
    """Whether ``s`` encodes as UTF-8 (no lone surrogates); it then caches its UTF-8 (none
    to cache for an ASCII str, whose own bytes are), which the store reads in place."""
    cdef Py_ssize_t n
    try:
        PyUnicode_AsUTF8AndSize(s, &n)
    except UnicodeEncodeError:
        return False
    return True


cdef inline object _decode_name(const char *s, Py_ssize_t n):
    return PyUnicode_DecodeUTF8(s, n, "surrogatepass")


# -- canonical MessagePack, as msgspec writes it (core.encoding) ------------------------

cdef inline uint8_t *_wstr(uint8_t *p, const char *s, Py_ssize_t n) noexcept nogil:
    if n < 32:
        p[0] = 0xa0 | <uint8_t>n
        p += 1
    elif n < 256:
        p[0] = 0xd9
        p[1] = <uint8_t>n
        p += 2
    elif n < 65536:
        p[0] = 0xda
        p[1] = <uint8_t>(n >> 8)
        p[2] = <uint8_t>n
        p += 3
    else:
        p[0] = 0xdb
        p[1] = <uint8_t>(n >> 24)
        p[2] = <uint8_t>(n >> 16)
        p[3] = <uint8_t>(n >> 8)
        p[4] = <uint8_t>n
        p += 5
    memcpy(p, s, n)
    return p + n


cdef inline uint8_t *_wbe(uint8_t *p, uint8_t code, uint64_t x, int nbytes) noexcept nogil:
    cdef int i
    p[0] = code
    for i in range(nbytes):
        p[1 + i] = <uint8_t>(x >> (8 * (nbytes - 1 - i)))
    return p + 1 + nbytes


cdef inline uint8_t *_wint(uint8_t *p, int64_t x) noexcept nogil:
    if x >= 0:
        if x < 128:
            p[0] = <uint8_t>x
            return p + 1
        if x <= 0xff:
            return _wbe(p, 0xcc, <uint64_t>x, 1)
        if x <= 0xffff:
            return _wbe(p, 0xcd, <uint64_t>x, 2)
        if x <= <int64_t>0xffffffff:
            return _wbe(p, 0xce, <uint64_t>x, 4)
        return _wbe(p, 0xcf, <uint64_t>x, 8)
    if x >= -32:
        p[0] = <uint8_t>(x & 0xff)
        return p + 1
    if x >= -128:
        return _wbe(p, 0xd0, <uint64_t>x, 1)
    if x >= -32768:
        return _wbe(p, 0xd1, <uint64_t>x, 2)
    if x >= <int64_t>-2147483648:
        return _wbe(p, 0xd2, <uint64_t>x, 4)
    return _wbe(p, 0xd3, <uint64_t>x, 8)


cdef inline const uint8_t *_rint(const uint8_t *p, const uint8_t *end, int64_t *out) noexcept nogil:
    """Read one MessagePack int at ``p`` (NULL: not an int64)."""
    cdef uint8_t c
    cdef int n = 0, i
    cdef uint64_t u = 0
    if p >= end:
        return NULL
    c = p[0]
    if c < 0x80:
        out[0] = c
        return p + 1
    if c >= 0xe0:
        out[0] = <int64_t>c - 256
        return p + 1
    if c == 0xcc or c == 0xd0:
        n = 1
    elif c == 0xcd or c == 0xd1:
        n = 2
    elif c == 0xce or c == 0xd2:
        n = 4
    elif c == 0xcf or c == 0xd3:
        n = 8
    else:
        return NULL
    if end - p < 1 + n:
        return NULL
    for i in range(n):
        u = (u << 8) | p[1 + i]
    if c >= 0xd0:   # signed: sign-extend
        if n < 8 and (u >> (8 * n - 1)) & 1:
            u |= (~<uint64_t>0) << (8 * n)
        out[0] = <int64_t>u
    else:
        if u > <uint64_t>I64_MAX:
            return NULL
        out[0] = <int64_t>u
    return p + 1 + n


cdef const char *_P0 = b"\x89\xa4kind\xabImageSigned\xa4repo"    # 23 bytes
DEF P0_LEN = 23


cdef inline void _digest_hex(const uint8_t *d, char *out) noexcept nogil:
    cdef int i
    memcpy(out, b"sha256:", 7)
    for i in range(32):
        out[7 + 2 * i] = _HEX[d[i] >> 4]
        out[8 + 2 * i] = _HEX[d[i] & 15]


cdef inline uint32_t _nlen(const tl_row *row) noexcept nogil:
    """The length of a row's name (``name_len`` without its flags)."""
    return row.name_len & NAME_MASK


cdef inline void _row_vals(const tl_row *row, const tl_wide *wide, tl_wide *out) noexcept nogil:
    """The four narrow columns of ``row`` as int64 (``wide``: the store's side array)."""
    if row.name_len & ROWF_WIDE:
        out[0] = wide[row.size]
    else:
        out.size, out.offset, out.version, out.issued_at = row.size, row.offset, row.version, row.issued_at


cdef inline bint _narrow(const tl_wide *v) noexcept nogil:
    return (0 <= v.size <= U32_MAX and 0 <= v.offset <= U32_MAX and 0 <= v.version <= U32_MAX
            and 0 <= v.issued_at <= U32_MAX)


cdef Py_ssize_t _derive(uint8_t *out, const char *repo, Py_ssize_t repo_n, const tl_row *r, const tl_wide *v,
                        const char *role, Py_ssize_t role_n, const char *tag, Py_ssize_t tag_n) noexcept nogil:
    """Write the canonical payload of row ``r`` (its narrow columns ``v``) into ``out``
    (at least :func:`_bound` bytes)."""
    cdef uint8_t *p = out
    cdef char dg[71]
    memcpy(p, _P0, P0_LEN)
    p += P0_LEN
    p = _wstr(p, repo, repo_n)
    p = _wstr(p, b"version", 7)
    p = _wint(p, v.version)
    p = _wstr(p, b"issued_at", 9)
    p = _wint(p, v.issued_at)
    p = _wstr(p, b"role", 4)
    p = _wstr(p, role, role_n)
    p = _wstr(p, b"tag", 3)
    p = _wstr(p, tag, tag_n)
    p = _wstr(p, b"digest", 6)
    _digest_hex(r.digest, dg)
    p = _wstr(p, dg, 71)
    p = _wstr(p, b"size", 4)
    p = _wint(p, v.size)
    p = _wstr(p, b"expires", 7)
    p = _wint(p, r.expires)
    return p - out


cdef inline Py_ssize_t _bound(Py_ssize_t repo_n, Py_ssize_t role_n, Py_ssize_t tag_n) noexcept nogil:
    return 200 + repo_n + role_n + tag_n


# the value of each lowercase hex digit, and 0x10 for every other byte (_unhex64)
cdef uint8_t _HEXVAL[256]
for _i in range(256):
    _HEXVAL[_i] = 0x10
for _i in range(10):
    _HEXVAL[48 + _i] = _i          # 0-9
for _i in range(6):
    _HEXVAL[97 + _i] = 10 + _i     # a-f

cdef inline bint _unhex64(const char *s, uint8_t *out) noexcept nogil:
    """64 lowercase hex digits at ``s`` as 32 bytes into ``out``: 1, or 0 if any is not
    one. By table, without a branch per digit: a digest's digits are random, so a branch
    on digit-or-letter mispredicted on about every third one (half of a row write)."""
    cdef int i
    cdef uint8_t hi, lo, bad = 0
    for i in range(32):
        hi = _HEXVAL[<uint8_t>s[2 * i]]
        lo = _HEXVAL[<uint8_t>s[2 * i + 1]]
        bad |= hi | lo
        out[i] = <uint8_t>((hi << 4) | lo)
    return (bad & 0x10) == 0


cdef int _raw_digest(object digest, uint8_t *out) except -1:
    """1 and the 32 bytes of a canonical ``sha256:<64 lowercase hex>`` digest, else 0."""
    cdef const char *s
    if type(digest) is not str or len(<str>digest) != 71:
        return 0
    b = (<str>digest).encode("utf-8", "surrogatepass")
    if PyBytes_GET_SIZE(b) != 71:
        return 0
    s = PyBytes_AS_STRING(b)
    if memcmp(s, b"sha256:", 7) != 0:
        return 0
    return _unhex64(s + 7, out)


cdef inline bint _is_i64(object x):
    return type(x) is int and I64_MIN <= x <= I64_MAX


# -- snapshot columns: little-endian fields, the fold's tag names ------------------------

DEF SNAP_ROW = 92     # core.tagstore.SNAP_ROW: <6q 32s i i I


cdef inline void _put_le(uint8_t *p, uint64_t x, int nbytes) noexcept nogil:
    cdef int i
    for i in range(nbytes):
        p[i] = <uint8_t>(x >> (8 * i))


cdef inline uint64_t _get_le(const uint8_t *p, int nbytes) noexcept nogil:
    cdef uint64_t x = 0
    cdef int i
    for i in range(nbytes - 1, -1, -1):
        x = (x << 8) | p[i]
    return x


cdef inline bint _all_zero(const uint8_t *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i]:
            return False
    return True


cdef inline bint _tag_char(uint8_t c) noexcept nogil:
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 95 or c == 46 or c == 45


cdef bint _is_tag_name(const char *s, Py_ssize_t n) noexcept nogil:
    """core.names.is_tag over UTF-8 bytes: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``."""
    cdef Py_ssize_t i
    cdef uint8_t c
    if n < 1 or n > 128:
        return False
    c = <uint8_t>s[0]
    if c == 46 or c == 45 or not _tag_char(c):
        return False
    for i in range(1, n):
        if not _tag_char(<uint8_t>s[i]):
            return False
    return True


def _refuse(repo, what):
    return EncodingError(f"the tag columns of {repo!r} are damaged: {what}")


cdef class CTagStore:
    """``dict[str, TagEntry]`` of one repository as C rows (see the module docstring)."""

    cdef readonly object repo          # the repository name (str) payloads are re-derived with
    cdef bytes _repo_b                 # ... as UTF-8 when it is not strictly UTF-8 (lone surrogates), else None
    cdef tl_row *rows
    cdef Py_ssize_t nrows, cap_rows, live
    cdef tl_wide *wide                 # the narrow columns of wide rows (ROWF_WIDE)
    cdef Py_ssize_t nwide, cap_wide, wide_dead
    cdef int32_t *slots
    cdef Py_ssize_t nslots, used_slots
    cdef char *names
    cdef Py_ssize_t names_len, names_cap
    cdef char *sigs
    cdef Py_ssize_t sigs_len, sigs_cap, sigs_dead
    cdef list _strs                    # roles and key ids, by index (read as UTF-8 in place: _str_u8)
    cdef dict _strs_fb                 # index -> UTF-8 (surrogatepass) of a string with lone surrogates (None: none)
    cdef dict _strs_ix
    cdef dict _verbatim                # row -> entry kept as given (None when empty)
    cdef dict _vover                   # tag -> version (or _ABSENT) the rows do not say (None when empty)
    cdef readonly unsigned long long generation   # counts mutations (a reader recompiles when it moves)


    def __cinit__(self, *args, **kwargs):
        # Cython zeroes a new object's C fields: no rows, no table, empty arenas
        self._strs = []
        self._strs_ix = None
        self._verbatim = None
        self._vover = None
        self.generation = 0

    def __init__(self, repo, entries=()):
        if type(repo) is not str:
            raise TypeError(f"a tag store's repository is a str, not {type(repo).__name__}")
        self.repo = repo
        self._repo_b = None if _strict_utf8(repo) else _utf8(repo)
        if entries:
            self.update(entries)

    def __dealloc__(self):
        free(self.rows)
        free(self.wide)
        free(self.slots)
        free(self.names)
        free(self.sigs)

    # -- the hash table -------------------------------------------------------------

    cdef Py_ssize_t _find_slot(self, const char *name, Py_ssize_t n, uint32_t h):
        """The slot holding ``name`` (-1: none)."""
        cdef Py_ssize_t mask, i
        cdef int32_t r
        cdef tl_row *row
        if self.nslots == 0:
            return -1
        mask = self.nslots - 1
        i = h & mask
        while True:
            r = self.slots[i]
            if r == SLOT_EMPTY:
                return -1
            if r >= 0:
                row = &self.rows[r]
                if _nlen(row) == n and memcmp(self.names + row.name_off, name, n) == 0:
                    return i
            i = (i + 1) & mask

    cdef Py_ssize_t find(self, const char *name, Py_ssize_t n, uint32_t h):
        """The row of tag ``name`` (UTF-8, ``h`` its hash), -1 if absent."""
        cdef Py_ssize_t s = self._find_slot(name, n, h)
        return -1 if s < 0 else self.slots[s]

    cdef int _rebuild_slots(self, Py_ssize_t want) except -1:
        cdef Py_ssize_t size = 8, r, i, mask
        while size * 2 <= want * 3:
            size *= 2
        cdef int32_t *slots = <int32_t *>malloc(size * sizeof(int32_t))
        if slots == NULL:
            raise MemoryError()
        memset(slots, 0xff, size * sizeof(int32_t))    # SLOT_EMPTY
        mask = size - 1
        for r in range(self.nrows):
            if self.rows[r].role != ROW_DEAD:
                i = _hash(self.names + self.rows[r].name_off, _nlen(&self.rows[r])) & mask
                while slots[i] != SLOT_EMPTY:
                    i = (i + 1) & mask
                slots[i] = <int32_t>r
        free(self.slots)
        self.slots = slots
        self.nslots = size
        self.used_slots = self.live
        return 0

    cdef Py_ssize_t _row_of(self, object tag, bytes nb):
        return self.find(PyBytes_AS_STRING(nb), PyBytes_GET_SIZE(nb), _hash(PyBytes_AS_STRING(nb), PyBytes_GET_SIZE(nb)))

    # -- growth and compaction ------------------------------------------------------

    cdef int _reserve(self, char **buf, Py_ssize_t *cap, Py_ssize_t need) except -1:
        cdef Py_ssize_t c = cap[0]
        cdef char *nb
        if need <= c:
            return 0
        if need > 0xffffffff:
            raise MemoryError("a compact tag store's arena is limited to 4 GiB")
        c = c + (c >> 3) + 32     # by an eighth: ~6 % unused on average (a quarter left ~12 %)
        if c < need:
            c = need
        if c > 0xffffffff:
            c = 0xffffffff
        nb = <char *>realloc(buf[0], c)
        if nb == NULL:
            raise MemoryError()
        buf[0] = nb
        cap[0] = c
        return 0

    cdef Py_ssize_t _new_row(self, const char *name, Py_ssize_t n, uint32_t h) except -1:
        cdef Py_ssize_t r, i, mask, c
        cdef tl_row *rows
        if self.nrows >= 0x7fffffff:
            raise MemoryError("a compact tag store holds at most 2**31 rows")
        if n > NAME_MASK:
            raise MemoryError("a compact tag store's tag names are limited to 1 GiB")
        if (self.used_slots + 1) * 3 >= self.nslots * 2:
            self._rebuild_slots(self.live + 1)
        if self.nrows == self.cap_rows:
            c = self.cap_rows + (self.cap_rows >> 3) + 4
            rows = <tl_row *>realloc(self.rows, c * sizeof(tl_row))
            if rows == NULL:
                raise MemoryError()
            self.rows = rows
            self.cap_rows = c
        self._reserve(&self.names, &self.names_cap, self.names_len + n)
        r = self.nrows
        memset(&self.rows[r], 0, sizeof(tl_row))
        self.rows[r].name_off = <uint32_t>self.names_len
        self.rows[r].name_len = <uint32_t>n
        self.rows[r].role = ROW_VERBATIM
        if memchr_colon(name, n):
            self.rows[r].name_len |= ROWF_COLON
        memcpy(self.names + self.names_len, name, n)
        self.names_len += n
        mask = self.nslots - 1
        i = h & mask
        while self.slots[i] != SLOT_EMPTY:   # a tombstone is not reused: the probe chains stay simple
            i = (i + 1) & mask
        self.slots[i] = <int32_t>r
        self.used_slots += 1
        self.nrows += 1
        self.live += 1
        return r

    cdef int _maybe_compact(self) except -1:
        cdef Py_ssize_t dead = self.nrows - self.live
        if ((dead >= 16 and dead > self.live) or (self.sigs_dead > COMPACT_MIN and self.sigs_dead * 2 > self.sigs_len)
                or (self.wide_dead >= 16 and self.wide_dead * 2 > self.nwide)):
            self.compact()
        return 0

    cdef int _reserve_wide(self) except -1:
        """Room for one more entry of the side array (so that :meth:`_set_vals` cannot fail)."""
        cdef Py_ssize_t c
        cdef tl_wide *w
        if self.nwide < self.cap_wide:
            return 0
        if self.nwide >= U32_MAX:
            raise MemoryError("a compact tag store holds at most 2**32 wide rows")
        c = self.cap_wide + (self.cap_wide >> 1) + 4
        w = <tl_wide *>realloc(self.wide, c * sizeof(tl_wide))
        if w == NULL:
            raise MemoryError()
        self.wide = w
        self.cap_wide = c
        return 0

    cdef void _set_vals(self, tl_row *row, const tl_wide *v) noexcept:
        """Write the narrow columns ``v`` into ``row`` (a new row: no ROWF_WIDE yet), in
        the row when they fit, else in the side array (reserved by :meth:`_reserve_wide`)."""
        if _narrow(v):
            row.size, row.offset, row.version, row.issued_at = <uint32_t>v.size, <uint32_t>v.offset, \
                <uint32_t>v.version, <uint32_t>v.issued_at
        else:
            self.wide[self.nwide] = v[0]
            row.size = <uint32_t>self.nwide
            row.offset = row.version = row.issued_at = 0
            row.name_len |= ROWF_WIDE
            self.nwide += 1

    cdef inline int64_t _version(self, Py_ssize_t r) noexcept:
        cdef tl_row *row = &self.rows[r]
        return self.wide[row.size].version if row.name_len & ROWF_WIDE else <int64_t>row.version

    def compact(self):
        """Drop deleted rows and dead arena bytes (row numbers change; the order stays)."""
        _check_writable()
        cdef Py_ssize_t r, k = 0, nl = 0, sl = 0, nw = 0
        cdef tl_row *rows = NULL
        cdef char *names = NULL
        cdef char *sigs = NULL
        cdef tl_wide *wide = NULL
        cdef Py_ssize_t ncap = 0, scap = 0
        cdef dict verbatim = None
        for r in range(self.nrows):
            if self.rows[r].role != ROW_DEAD:
                nl += _nlen(&self.rows[r])
                if self.rows[r].role >= 0:
                    sl += self.rows[r].sig_len
                    if self.rows[r].name_len & ROWF_WIDE:
                        nw += 1
        try:
            if self.live:
                rows = <tl_row *>malloc(self.live * sizeof(tl_row))
                names = <char *>malloc(nl if nl else 1)
                sigs = <char *>malloc(sl if sl else 1)
                if rows == NULL or names == NULL or sigs == NULL:
                    raise MemoryError()
            if nw:
                wide = <tl_wide *>malloc(nw * sizeof(tl_wide))
                if wide == NULL:
                    raise MemoryError()
            nl = sl = nw = 0
            for r in range(self.nrows):
                if self.rows[r].role == ROW_DEAD:
                    continue
                rows[k] = self.rows[r]
                memcpy(names + nl, self.names + self.rows[r].name_off, _nlen(&self.rows[r]))
                rows[k].name_off = <uint32_t>nl
                nl += _nlen(&self.rows[r])
                if self.rows[r].role >= 0:
                    memcpy(sigs + sl, self.sigs + self.rows[r].sig_off, self.rows[r].sig_len)
                    rows[k].sig_off = <uint32_t>sl
                    sl += self.rows[r].sig_len
                    if self.rows[r].name_len & ROWF_WIDE:
                        wide[nw] = self.wide[self.rows[r].size]
                        rows[k].size = <uint32_t>nw
                        nw += 1
                elif self._verbatim is not None:
                    if verbatim is None:
                        verbatim = {}
                    verbatim[k] = self._verbatim[r]
                k += 1
        except BaseException:
            free(rows)
            free(names)
            free(sigs)
            free(wide)
            raise
        free(self.rows)
        free(self.names)
        free(self.sigs)
        free(self.wide)
        self.rows, self.names, self.sigs, self.wide = rows, names, sigs, wide
        self.nwide = self.cap_wide = nw
        self.wide_dead = 0
        self.nrows = self.cap_rows = self.live
        self.names_len = self.names_cap = nl
        self.sigs_len = self.sigs_cap = sl
        self.sigs_dead = 0
        self._verbatim = verbatim
        _bump(self)
        if self.live:
            self._rebuild_slots(self.live)
        else:
            free(self.slots)
            self.slots = NULL
            self.nslots = self.used_slots = 0
        return None

    # -- strings --------------------------------------------------------------------

    cdef int _intern(self, object s) except -2:
        """The index of role or key id ``s`` in the string table (-1: full)."""
        cdef Py_ssize_t k
        cdef PyObject *p
        if self._strs_ix is None:
            for k in range(len(self._strs)):
                if self._strs[k] == s:
                    return <int>k
            if len(self._strs) >= 8:
                self._strs_ix = {t: i for i, t in enumerate(self._strs)}
        else:
            p = PyDict_GetItem(self._strs_ix, s)
            if p is not NULL:
                return <int><object>p
        if len(self._strs) >= MAX_TABLE:
            return -1
        if not _strict_utf8(s):
            if self._strs_fb is None:
                self._strs_fb = {}
            self._strs_fb[len(self._strs)] = _utf8(s)
        if self._strs_ix is not None:
            self._strs_ix[s] = len(self._strs)
        self._strs.append(s)
        return <int>(len(self._strs) - 1)

    cdef inline const char *_str_u8(self, Py_ssize_t k, Py_ssize_t *n) except NULL:
        """String ``k`` of the table as UTF-8: its own bytes for an ASCII str (no copy),
        else the UTF-8 the str caches (made when it was interned), or for a str with lone
        surrogates the bytes kept beside the table."""
        cdef PyObject *p
        if self._strs_fb is not None:
            p = PyDict_GetItem(self._strs_fb, k)
            if p is not NULL:
                n[0] = PyBytes_GET_SIZE(<object>p)
                return PyBytes_AS_STRING(<object>p)
        return PyUnicode_AsUTF8AndSize(<object>PyList_GET_ITEM(self._strs, k), n)

    cdef inline const char *_repo_u8(self, Py_ssize_t *n) except NULL:
        if self._repo_b is not None:
            n[0] = PyBytes_GET_SIZE(self._repo_b)
            return PyBytes_AS_STRING(self._repo_b)
        return PyUnicode_AsUTF8AndSize(self.repo, n)

    # -- versions of tag scopes -------------------------------------------------------

    cdef inline bint _implicit(self, Py_ssize_t r):
        return r >= 0 and self.rows[r].role >= 0 and not (self.rows[r].name_len & ROWF_COLON)

    cdef object _implicit_obj(self, Py_ssize_t r):
        return self._version(r) if self._implicit(r) else _ABSENT

    cdef int _versions_moved(self, object tag, object before, Py_ssize_t r_after) except -1:
        """Keep ``versions[tag]`` as it was when a write changed what the row says."""
        cdef object after = self._implicit_obj(r_after)
        if before is after or (before is not _ABSENT and after is not _ABSENT and before == after):
            return 0
        if self._vover is None:
            self._vover = {}
        cdef PyObject *p = PyDict_GetItem(self._vover, tag)
        if p is NULL:
            self._vover[tag] = before
        elif _same_version(<object>p, after):
            del self._vover[tag]
            if not self._vover:
                self._vover = None
        return 0

    def _vget(self, tag, default):
        cdef PyObject *p
        if self._vover is not None:
            p = PyDict_GetItem(self._vover, tag)
            if p is not NULL:
                return default if <object>p is _ABSENT else <object>p
        cdef Py_ssize_t r = self._row_of(tag, _utf8(tag))
        return self._version(r) if self._implicit(r) else default

    def _vset(self, tag, value):
        cdef Py_ssize_t r = self._row_of(tag, _utf8(tag))
        if self._implicit(r) and type(value) is int and value == self._version(r):
            if self._vover is not None:
                self._vover.pop(tag, None)
                if not self._vover:
                    self._vover = None
            return
        if self._vover is None:
            self._vover = {}
        self._vover[tag] = value

    def _vdel(self, tag):
        cdef Py_ssize_t r = self._row_of(tag, _utf8(tag))
        cdef PyObject *p = NULL
        if self._vover is not None:
            p = PyDict_GetItem(self._vover, tag)
        if p is not NULL and <object>p is _ABSENT:
            raise KeyError(tag)
        if p is NULL and not self._implicit(r):
            raise KeyError(tag)
        if self._implicit(r):
            if self._vover is None:
                self._vover = {}
            self._vover[tag] = _ABSENT
        else:
            del self._vover[tag]
            if not self._vover:
                self._vover = None

    def _vkeys(self):
        """The tag scopes with a version: rows first (in order), then the side dict's."""
        cdef Py_ssize_t r
        cdef tl_row *row
        cdef PyObject *p
        out = []
        vo = self._vover
        for r in range(self.nrows):
            if self._implicit(r):
                row = &self.rows[r]
                name = _decode_name(self.names + row.name_off, _nlen(row))
                if vo is not None:
                    p = PyDict_GetItem(vo, name)
                    if p is not NULL and <object>p is _ABSENT:
                        continue
                out.append(name)
        if vo is not None:
            for t, v in vo.items():
                if v is not _ABSENT and not self._implicit(self._row_of(t, _utf8(t))):
                    out.append(t)
        return out

    # -- writing a row ----------------------------------------------------------------

    cdef int _pack(self, Py_ssize_t r, object tag, object e, const char *name, Py_ssize_t name_n) except -1:
        """Write ``e`` into row ``r`` (its name already there): 1, or 0 when the row
        cannot hold it exactly (the caller keeps it verbatim)."""
        cdef tl_row row
        cdef tl_wide v
        cdef int role, k
        cdef Py_ssize_t total, plen, n, at, rn, repo_n
        cdef const char *rp
        cdef const char *repo
        cdef const uint8_t *pl
        cdef const uint8_t *p
        cdef uint8_t *scratch
        cdef int64_t issued
        cdef uint16_t k16
        cdef uint32_t n32
        if type(e) is not TagEntry:
            return 0
        etag = e.tag
        if type(etag) is not str or etag != tag:
            return 0
        size, expires, log_time, offset, version, grant_id = e.size, e.expires, e.log_time, e.offset, e.version, e.grant_id
        if not (_is_i64(size) and _is_i64(expires) and _is_i64(log_time) and _is_i64(offset) and _is_i64(version)):
            return 0
        if type(grant_id) is not int or not (-2147483648 <= grant_id <= 2147483647):
            return 0
        memset(&row, 0, sizeof(tl_row))
        if not _raw_digest(e.digest, row.digest):
            return 0
        erole, payload, sigs = e.role, e.payload, e.signatures
        if type(erole) is not str or type(payload) is not bytes or type(sigs) is not tuple:
            return 0
        total = 0
        for item in <tuple>sigs:
            if type(item) is not tuple or len(<tuple>item) != 2:
                return 0
            kid, sig = item
            if type(kid) is not str or type(sig) is not bytes:
                return 0
            total += SIG_HDR + PyBytes_GET_SIZE(sig)
        if total > 0x7fffffff:
            return 0
        role = self._intern(erole)
        if role < 0:
            return 0
        row.expires, row.log_time = expires, log_time
        v.size, v.offset, v.version = size, offset, version
        row.grant_id = grant_id
        # the payload: the prefix up to issued_at, then issued_at, then all of it derived and compared
        pl = <const uint8_t *>PyBytes_AS_STRING(payload)
        plen = PyBytes_GET_SIZE(payload)
        rp = self._str_u8(role, &rn)
        repo = self._repo_u8(&repo_n)
        n = _bound(repo_n, rn, name_n)
        if plen > n:
            return 0
        scratch = <uint8_t *>malloc(n)
        if scratch == NULL:
            raise MemoryError()
        try:
            at = _wstr(<uint8_t *>memcpy(scratch, _P0, P0_LEN) + P0_LEN, repo, repo_n) - scratch
            at = _wstr(scratch + at, b"version", 7) - scratch
            at = _wint(scratch + at, v.version) - scratch
            at = _wstr(scratch + at, b"issued_at", 9) - scratch
            if plen < at or memcmp(scratch, pl, at) != 0:
                return 0
            p = _rint(pl + at, pl + plen, &issued)
            if p == NULL:
                return 0
            v.issued_at = issued
            if _derive(scratch, repo, repo_n, &row, &v, rp, rn, name, name_n) != plen:
                return 0
            if memcmp(scratch, pl, plen) != 0:
                return 0
        finally:
            free(scratch)
        # the key ids: interned before anything is written (a full table keeps the entry verbatim)
        kix = []
        for kid, sig in <tuple>sigs:
            k = self._intern(kid)
            if k < 0:
                return 0
            kix.append(k)
        if not _narrow(&v):
            self._reserve_wide()
        self._reserve(&self.sigs, &self.sigs_cap, self.sigs_len + total)
        at = self.sigs_len
        for i in range(len(kix)):
            sig = (<tuple>(<tuple>sigs)[i])[1]
            k16 = <uint16_t><int>kix[i]
            n32 = <uint32_t>PyBytes_GET_SIZE(sig)
            memcpy(self.sigs + at, &k16, 2)
            memcpy(self.sigs + at + 2, &n32, 4)
            memcpy(self.sigs + at + SIG_HDR, PyBytes_AS_STRING(sig), n32)
            at += SIG_HDR + n32
        row.sig_off = <uint32_t>self.sigs_len
        row.sig_len = <uint32_t>total
        self.sigs_len = at
        row.role = role
        row.name_off = self.rows[r].name_off
        row.name_len = self.rows[r].name_len
        self._set_vals(&row, &v)
        self.rows[r] = row
        return 1

    cdef int _release(self, Py_ssize_t r) except -1:
        """Forget what row ``r`` holds (its name stays)."""
        if self.rows[r].role >= 0:
            self.sigs_dead += self.rows[r].sig_len
            if self.rows[r].name_len & ROWF_WIDE:
                self.wide_dead += 1
                self.rows[r].name_len &= ~ROWF_WIDE
                self.rows[r].size = 0
        elif self._verbatim is not None:
            self._verbatim.pop(r, None)
            if not self._verbatim:
                self._verbatim = None
        self.rows[r].role = ROW_VERBATIM
        self.rows[r].sig_len = 0
        return 0

    # -- the mapping ----------------------------------------------------------------

    def __len__(self):
        return self.live

    def __bool__(self):
        return self.live > 0

    def __contains__(self, tag):
        if type(tag) is not str:
            return False
        return self._row_of(tag, _utf8(tag)) >= 0

    def __getitem__(self, tag):
        cdef Py_ssize_t r = self._row_of(tag, _utf8(tag)) if type(tag) is str else -1
        if r < 0:
            raise KeyError(tag)
        return self.make_entry(r)

    def get(self, tag, default=None):
        cdef Py_ssize_t r = self._row_of(tag, _utf8(tag)) if type(tag) is str else -1
        return default if r < 0 else self.make_entry(r)

    def __setitem__(self, tag, entry):
        _check_writable()
        nb = _utf8(tag)
        cdef const char *name = PyBytes_AS_STRING(nb)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(nb)
        cdef uint32_t h = _hash(name, n)
        cdef Py_ssize_t r = self.find(name, n, h)
        cdef object before
        if r < 0:
            before = _ABSENT
            r = self._new_row(name, n, h)
        else:
            before = self._implicit_obj(r)
            self._release(r)
        _bump(self)
        if not self._pack(r, tag, entry, name, n):
            self.rows[r].role = ROW_VERBATIM
            if self._verbatim is None:
                self._verbatim = {}
            self._verbatim[r] = entry
        self._versions_moved(tag, before, r)
        if self.sigs_dead or self.wide_dead:
            self._maybe_compact()

    def __delitem__(self, tag):
        _check_writable()
        nb = _utf8(tag)
        cdef const char *name = PyBytes_AS_STRING(nb)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(nb)
        cdef Py_ssize_t s = self._find_slot(name, n, _hash(name, n))
        if s < 0:
            raise KeyError(tag)
        cdef Py_ssize_t r = self.slots[s]
        before = self._implicit_obj(r)
        self._release(r)
        self.rows[r].role = ROW_DEAD
        self.slots[s] = SLOT_DUMMY
        self.live -= 1
        _bump(self)
        self._versions_moved(tag, before, -1)
        if self.live == 0 and self._vover is None:
            self._reset()
        else:
            self._maybe_compact()

    cdef void _reset(self):
        """Free the rows, the table and the arenas: the store of a new object."""
        free(self.rows)
        free(self.slots)
        free(self.names)
        free(self.sigs)
        free(self.wide)
        self.rows = NULL
        self.slots = NULL
        self.names = self.sigs = NULL
        self.wide = NULL
        self.nwide = self.cap_wide = self.wide_dead = 0
        self.nrows = self.cap_rows = self.live = self.nslots = self.used_slots = 0
        self.names_len = self.names_cap = self.sigs_len = self.sigs_cap = self.sigs_dead = 0
        self._verbatim = None
        _bump(self)

    def clear(self):
        """Remove every tag (the versions of their scopes stay, as a dict's would)."""
        _check_writable()
        for t in list(self):
            del self[t]
        self._reset()
        self._strs = []
        self._strs_fb = None
        self._strs_ix = None

    def __iter__(self):
        return self._walk(False)

    def _pairs(self):
        return self._walk(True)

    def _walk(self, bint pairs):
        """Names (or (name, entry) pairs) in order. As for a dict, a change of size
        while iterating raises; an entry replaced in place does not (the walk finds its
        place again when the rows moved)."""
        cdef Py_ssize_t r = 0
        cdef Py_ssize_t size = self.live
        cdef unsigned long long gen = self.generation
        while r < self.nrows:
            if gen != self.generation:
                if self.live != size:
                    raise RuntimeError("compact tag store changed size during iteration")
                r = self._row_of(name, _utf8(name)) + 1   # the last name yielded, wherever it is now
                gen = self.generation
                continue
            if self.rows[r].role != ROW_DEAD:
                name = self.row_name(r)
                if pairs:
                    yield name, self.make_entry(r)
                else:
                    yield name
            r += 1

    def keys(self):
        return KeysView(self)

    def items(self):
        return _Items(self)

    def values(self):
        return _Values(self)

    def pop(self, tag, default=_MISSING):
        cdef Py_ssize_t r = self._row_of(tag, _utf8(tag)) if type(tag) is str else -1
        if r < 0:
            if default is _MISSING:
                raise KeyError(tag)
            return default
        e = self.make_entry(r)
        del self[tag]
        return e

    def popitem(self):
        cdef Py_ssize_t r
        for r in range(self.nrows - 1, -1, -1):
            if self.rows[r].role != ROW_DEAD:
                tag = self.row_name(r)
                return tag, self.pop(tag)
        raise KeyError("popitem(): tag store is empty")

    def setdefault(self, tag, default=None):
        cdef Py_ssize_t r = self._row_of(tag, _utf8(tag))
        if r >= 0:
            return self.make_entry(r)
        self[tag] = default
        return default

    def update(self, other=(), **kw):
        if isinstance(other, Mapping):
            for k in other:
                self[k] = other[k]
        elif hasattr(other, "keys"):
            for k in other.keys():
                self[k] = other[k]
        else:
            for k, v in other:
                self[k] = v
        for k, v in kw.items():
            self[k] = v

    def __eq__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        if len(self) != len(other):
            return False
        for k, v in self._pairs():
            if k not in other or not (other[k] == v):
                return False
        return True

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    __hash__ = None

    def __repr__(self):
        return f"CTagStore({self.repo!r}, {self.live} tags, {self.nbytes():,} bytes)"

    def copy(self):
        c = CTagStore(self.repo, self._pairs())
        return c

    def __reduce__(self):
        return (_rebuild, (self.repo, list(self._pairs()), self._vover_items()))

    def _vover_items(self):
        return None if self._vover is None else [(t, None if v is _ABSENT else v, v is _ABSENT)
                                                  for t, v in self._vover.items()]

    def _set_vover(self, items):
        self._vover = None if not items else {t: (_ABSENT if absent else v) for t, v, absent in items}

    # -- entries ----------------------------------------------------------------------

    cdef object row_name(self, Py_ssize_t r):
        return _decode_name(self.names + self.rows[r].name_off, _nlen(&self.rows[r]))

    cdef object make_entry(self, Py_ssize_t r):
        cdef tl_row *row = &self.rows[r]
        cdef tl_wide v
        cdef char dg[71]
        cdef uint8_t *scratch
        cdef Py_ssize_t n, at, end, rn, repo_n
        cdef const char *rp
        cdef const char *repo
        cdef uint16_t k16
        cdef uint32_t n32
        if row.role < 0:
            return self._verbatim[r]
        _row_vals(row, self.wide, &v)
        rp = self._str_u8(row.role, &rn)
        repo = self._repo_u8(&repo_n)
        n = _bound(repo_n, rn, _nlen(row))
        scratch = <uint8_t *>malloc(n)
        if scratch == NULL:
            raise MemoryError()
        try:
            n = _derive(scratch, repo, repo_n, row, &v, rp, rn, self.names + row.name_off, _nlen(row))
            payload = PyBytes_FromStringAndSize(<char *>scratch, n)
        finally:
            free(scratch)
        sigs = []
        at = row.sig_off
        end = at + row.sig_len
        while at < end:
            memcpy(&k16, self.sigs + at, 2)
            memcpy(&n32, self.sigs + at + 2, 4)
            sigs.append((self._strs[k16], PyBytes_FromStringAndSize(self.sigs + at + SIG_HDR, n32)))
            at += SIG_HDR + n32
        _digest_hex(row.digest, dg)
        return TagEntry(self.row_name(r), PyUnicode_DecodeASCII(dg, 71, NULL), v.size, row.expires,
                        self._strs[row.role], row.grant_id, row.log_time, v.offset, v.version,
                        payload, tuple(sigs))

    # -- rows, for the readers of the C rows ----------------------------------------------

    def row_index(self, tag):
        """The row of ``tag`` (-1: absent); rows count deleted ones until :meth:`compact`."""
        return self._row_of(tag, _utf8(tag)) if type(tag) is str else -1

    def dead_rows(self):
        """Rows of deleted tags not yet dropped by :meth:`compact`."""
        return self.nrows - self.live

    def c_view(self):
        """``(layout, rows address, row count, signature arena address, generation,
        string table)`` for a reader of the C rows (the compiled chain evaluation):
        valid until the next mutation (``generation`` moves) and only while the store
        is alive; ``layout`` names the row struct (the reader refuses another)."""
        return (ROW_LAYOUT, <Py_ssize_t>self.rows, self.nrows, <Py_ssize_t>self.sigs, self.generation, self._strs)

    def entry_at(self, Py_ssize_t r):
        """The entry of row ``r`` (IndexError: no such live row)."""
        if not 0 <= r < self.nrows or self.rows[r].role == ROW_DEAD:
            raise IndexError(r)
        return self.make_entry(r)

    def name_at(self, Py_ssize_t r):
        if not 0 <= r < self.nrows or self.rows[r].role == ROW_DEAD:
            raise IndexError(r)
        return self.row_name(r)

    def derive_payloads(self, rows):
        """The payloads of the C rows ``rows`` (a sequence of row numbers) in one bytes
        object, and their ``n + 1`` offsets into it (array('q')); a row that is not a
        live C row gets an empty payload."""
        cdef Py_ssize_t n = len(rows), i, r, total = 0, at = 0
        cdef tl_row *row
        cdef tl_wide v
        cdef Py_ssize_t repo_n, rn
        cdef const char *repo = self._repo_u8(&repo_n)
        cdef const char *rp
        offs = array("q", bytes(8 * (n + 1)))
        cdef long long[::1] ov = offs
        rl = [int(x) for x in rows]
        for i in range(n):
            r = rl[i]
            if 0 <= r < self.nrows and self.rows[r].role >= 0:
                self._str_u8(self.rows[r].role, &rn)
                total += _bound(repo_n, rn, _nlen(&self.rows[r]))
        cdef uint8_t *buf = <uint8_t *>malloc(total if total else 1)
        if buf == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                ov[i] = at
                r = rl[i]
                if 0 <= r < self.nrows and self.rows[r].role >= 0:
                    row = &self.rows[r]
                    rp = self._str_u8(row.role, &rn)
                    _row_vals(row, self.wide, &v)
                    at += _derive(buf + at, repo, repo_n, row, &v, rp, rn, self.names + row.name_off, _nlen(row))
            ov[n] = at
            blob = PyBytes_FromStringAndSize(<char *>buf, at)
        finally:
            free(buf)
        return blob, offs

    # -- size -------------------------------------------------------------------------

    def nbytes(self):
        """Bytes of C memory the store holds (rows, hash table, arenas, wide columns)."""
        return (self.cap_rows * sizeof(tl_row) + self.nslots * sizeof(int32_t) + self.names_cap + self.sigs_cap
                + self.cap_wide * sizeof(tl_wide))

    def verbatim_count(self):
        """How many entries are kept as given (not in the C rows)."""
        return 0 if self._verbatim is None else len(self._verbatim)

    # -- snapshot columns (core/tagstore.py describes them; columns_of and
    # entries_from_columns there are the pure-Python twins of these two) -------------

    def export_columns(self):
        """The store as snapshot columns, the bytes ``core.tagstore.columns_of`` writes for
        the same mapping: ``(names, ends, rows, sigs, strings, verbatim, absent,
        tag_versions)`` (``tag_versions``: the versions of tag scopes the rows do not
        imply, sorted). None when a name is not a tag name (the repository is then
        written as a map) or the string table has filled up (which makes which entries
        are rows depend on history: the caller takes ``columns_of``'s way)."""
        cdef Py_ssize_t r, n = 0, nl = 0, sl = 0, w = 0, o = 0, at, end, nstr = len(self._strs)
        cdef tl_row *row
        cdef tl_wide vals
        cdef uint8_t *p
        cdef uint8_t *sp
        cdef uint8_t *np_
        cdef uint8_t *ep
        cdef int32_t *remap = NULL
        cdef int32_t seen = 0, k
        cdef uint16_t k16
        cdef uint32_t n32
        if nstr >= MAX_TABLE:
            return None
        for r in range(self.nrows):
            row = &self.rows[r]
            if row.role == ROW_DEAD:
                continue
            if not _is_tag_name(self.names + row.name_off, _nlen(row)):
                return None
            n += 1
            nl += _nlen(row)
            if row.role >= 0:
                sl += row.sig_len
        names = PyBytes_FromStringAndSize(NULL, nl)
        ends = PyBytes_FromStringAndSize(NULL, 4 * n)
        rows = PyBytes_FromStringAndSize(NULL, SNAP_ROW * n)
        sigs = PyBytes_FromStringAndSize(NULL, sl)
        np_ = <uint8_t *>PyBytes_AS_STRING(names)
        ep = <uint8_t *>PyBytes_AS_STRING(ends)
        p = <uint8_t *>PyBytes_AS_STRING(rows)
        sp = <uint8_t *>PyBytes_AS_STRING(sigs)
        strings = []
        verbatim = []
        remap = <int32_t *>malloc((nstr if nstr else 1) * sizeof(int32_t))
        if remap == NULL:
            raise MemoryError()
        try:
            memset(remap, 0xff, (nstr if nstr else 1) * sizeof(int32_t))
            for r in range(self.nrows):
                row = &self.rows[r]
                if row.role == ROW_DEAD:
                    continue
                memcpy(np_ + o, self.names + row.name_off, _nlen(row))
                o += _nlen(row)
                _put_le(ep, <uint64_t>o, 4)
                ep += 4
                memset(p, 0, SNAP_ROW)
                if row.role < 0:
                    _put_le(p + 84, <uint64_t><uint32_t><int32_t>-1, 4)
                    verbatim.append(self._verbatim[r])
                    p += SNAP_ROW
                    continue
                k = remap[row.role]
                if k < 0:
                    k = remap[row.role] = seen
                    seen += 1
                    strings.append(self._strs[row.role])
                _row_vals(row, self.wide, &vals)
                _put_le(p, <uint64_t>vals.size, 8)
                _put_le(p + 8, <uint64_t>row.expires, 8)
                _put_le(p + 16, <uint64_t>row.log_time, 8)
                _put_le(p + 24, <uint64_t>vals.offset, 8)
                _put_le(p + 32, <uint64_t>vals.version, 8)
                _put_le(p + 40, <uint64_t>vals.issued_at, 8)
                memcpy(p + 48, row.digest, 32)
                _put_le(p + 80, <uint64_t><uint32_t>row.grant_id, 4)
                _put_le(p + 84, <uint64_t><uint32_t>k, 4)
                _put_le(p + 88, <uint64_t>row.sig_len, 4)
                p += SNAP_ROW
                at = row.sig_off
                end = at + row.sig_len
                while at < end:
                    memcpy(&k16, self.sigs + at, 2)
                    memcpy(&n32, self.sigs + at + 2, 4)
                    k = remap[k16]
                    if k < 0:
                        k = remap[k16] = seen
                        seen += 1
                        strings.append(self._strs[k16])
                    _put_le(sp + w, <uint64_t>k, 2)
                    _put_le(sp + w + 2, <uint64_t>n32, 4)
                    memcpy(sp + w + SIG_HDR, self.sigs + at + SIG_HDR, n32)
                    w += SIG_HDR + n32
                    at += SIG_HDR + n32
        finally:
            free(remap)
        absent = []
        tag_versions = []
        if self._vover is not None:
            for t, v in self._vover.items():
                r = self._row_of(t, _utf8(t))
                if v is _ABSENT:
                    if self._implicit(r):
                        absent.append(t)
                elif not (self._implicit(r) and type(v) is int and v == self._version(r)):
                    tag_versions.append((t, v))
        absent.sort()
        tag_versions.sort()
        return names, ends, rows, sigs, strings, verbatim, absent, tag_versions

    @staticmethod
    def from_columns(repo, bytes names, bytes ends, bytes rows, bytes sigs, list strings, list verbatim,
                     list absent, list tag_versions):
        """A store from snapshot columns in one pass over them (the arenas copied whole),
        every field checked as ``core.tagstore.entries_from_columns`` checks it; raises
        :class:`~trustlog.core.errors.EncodingError` for exactly the columns it refuses
        (the half-built store is dropped). ``tag_versions``: ``(tag scope, version)`` for
        the versions of tag scopes the rows do not imply."""
        cdef CTagStore s = CTagStore(repo)
        cdef Py_ssize_t n, nl = PyBytes_GET_SIZE(names), sl = PyBytes_GET_SIZE(sigs), r, start = 0, end
        cdef Py_ssize_t at = 0, end_sig, nstr = len(strings), nv = 0, m
        cdef const uint8_t *ep = <const uint8_t *>PyBytes_AS_STRING(ends)
        cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(rows)
        cdef const uint8_t *sp = <const uint8_t *>PyBytes_AS_STRING(sigs)
        cdef tl_row *row
        cdef tl_wide vals
        cdef int32_t role, seen = 0
        cdef uint32_t sig_len, n32
        cdef uint16_t k16
        cdef Py_ssize_t k, dup
        if PyBytes_GET_SIZE(ends) % 4:
            raise _refuse(repo, f"{PyBytes_GET_SIZE(ends)} bytes of name ends is not a whole number of u32s")
        n = PyBytes_GET_SIZE(ends) // 4
        if n > 0x7fffffff or PyBytes_GET_SIZE(rows) != n * SNAP_ROW:
            raise _refuse(repo, f"{PyBytes_GET_SIZE(rows)} bytes of rows for {n} names")
        if nl > 0xffffffff or sl > 0xffffffff:
            raise _refuse(repo, "an arena is over 4 GiB")
        if nstr > MAX_TABLE:
            raise _refuse(repo, f"{nstr} strings; at most {MAX_TABLE}")
        table = {}
        for k in range(nstr):
            t = strings[k]
            if type(t) is not str or table.setdefault(t, k) != k:
                raise _refuse(repo, f"string {k} repeats an earlier one")
        for k in range(nstr):
            if not _strict_utf8(strings[k]):
                if s._strs_fb is None:
                    s._strs_fb = {}
                s._strs_fb[k] = _utf8(strings[k])
        s._strs = list(strings)
        if nstr >= 8:
            s._strs_ix = dict(table)
        if n:
            s.rows = <tl_row *>malloc(n * sizeof(tl_row))
            if s.rows == NULL:
                raise MemoryError()
            s.cap_rows = n
        s.names = <char *>malloc(nl if nl else 1)
        s.sigs = <char *>malloc(sl if sl else 1)
        if s.names == NULL or s.sigs == NULL:
            raise MemoryError()
        s.names_cap = s.names_len = nl
        s.sigs_cap = s.sigs_len = sl
        memcpy(s.names, PyBytes_AS_STRING(names), nl)
        for r in range(n):
            end = <Py_ssize_t>_get_le(ep + 4 * r, 4)
            if not (start < end <= nl) or end - start > 128:
                raise _refuse(repo, f"name {r} ends at {end}, after {start}, in {nl} bytes")
            if not _is_tag_name(s.names + start, end - start):
                raise _refuse(repo, f"name {r} {names[start:end].decode('latin-1')!r} is not a tag name")
            row = &s.rows[r]
            memset(row, 0, sizeof(tl_row))
            row.name_off = <uint32_t>start
            row.name_len = <uint32_t>(end - start)     # (a tag name: no ':', under 1 GiB)
            start = end
            s.nrows = s.live = r + 1
            role = <int32_t><uint32_t>_get_le(p + 84, 4)
            sig_len = <uint32_t>_get_le(p + 88, 4)
            if role == ROW_VERBATIM:
                row.role = ROW_VERBATIM
                if not _all_zero(p, 84) or sig_len != 0:
                    raise _refuse(repo, f"the verbatim row of {s.row_name(r)!r} carries column values")
                if nv >= len(verbatim):
                    raise _refuse(repo, f"{nv + 1} or more rows are verbatim, {len(verbatim)} entries given")
                e = verbatim[nv]
                nv += 1
                name = s.row_name(r)
                if not _py_verbatim_canonical(repo, name, e, table, seen):
                    raise _refuse(repo, f"the verbatim entry of {name!r} is one a row holds")
                if s._verbatim is None:
                    s._verbatim = {}
                s._verbatim[r] = e
                p += SNAP_ROW
                continue
            if not (0 <= role <= seen) or role >= nstr:
                raise _refuse(repo, f"row {r} names string {role}, {seen} used so far of {nstr}")
            if role == seen:
                seen += 1
            end_sig = at + sig_len
            if end_sig > sl:
                raise _refuse(repo, f"the signatures of row {r} end past the arena ({end_sig} > {sl})")
            row.sig_off = <uint32_t>at
            row.sig_len = sig_len
            while at < end_sig:
                if end_sig - at < SIG_HDR:
                    raise _refuse(repo, f"a signature header of row {r} is cut off")
                k16 = <uint16_t>_get_le(sp + at, 2)
                n32 = <uint32_t>_get_le(sp + at + 2, 4)
                if k16 > seen or k16 >= nstr or n32 > end_sig - at - SIG_HDR:
                    raise _refuse(repo, f"a signature of row {r} names string {k16} ({seen} used) or overruns its row")
                if k16 == seen:
                    seen += 1
                memcpy(s.sigs + at, &k16, 2)
                memcpy(s.sigs + at + 2, &n32, 4)
                memcpy(s.sigs + at + SIG_HDR, sp + at + SIG_HDR, n32)
                at += SIG_HDR + n32
            vals.size = <int64_t>_get_le(p, 8)
            row.expires = <int64_t>_get_le(p + 8, 8)
            row.log_time = <int64_t>_get_le(p + 16, 8)
            vals.offset = <int64_t>_get_le(p + 24, 8)
            vals.version = <int64_t>_get_le(p + 32, 8)
            vals.issued_at = <int64_t>_get_le(p + 40, 8)
            if not _narrow(&vals):
                s._reserve_wide()
            s._set_vals(row, &vals)
            memcpy(row.digest, p + 48, 32)
            row.grant_id = <int32_t><uint32_t>_get_le(p + 80, 4)
            row.role = role
            p += SNAP_ROW
        if start != nl or at != sl:
            raise _refuse(repo, f"the rows use {start} of {nl} name bytes and {at} of {sl} signature bytes")
        if nv != len(verbatim):
            raise _refuse(repo, f"{nv} rows are verbatim, {len(verbatim)} entries given")
        if seen != nstr:
            raise _refuse(repo, f"{nstr - seen} of its strings are used by no row")
        if n:
            dup = s._index_unique()
            if dup >= 0:
                raise _refuse(repo, f"tag {s.row_name(dup)!r} has two rows")
        # the versions of tag scopes the rows do not say
        vover = {}
        prev = None
        for t in absent:
            if type(t) is not str or (prev is not None and not prev < t) or not s._implicit(s._row_of(t, _utf8(t))):
                raise _refuse(repo, f"absent version {t!r} is out of order or names no column row")
            vover[t] = _ABSENT
            prev = t
        for t, v in tag_versions:
            r = s._row_of(t, _utf8(t))
            if t in vover or (s._implicit(r) and type(v) is int and v == s._version(r)):
                raise _refuse(repo, f"the version of {t!r} is said twice")
            vover[t] = v
        s._vover = vover or None
        return s

    cdef Py_ssize_t _index_unique(self) except -2:
        """Build the hash table over rows ``[0, nrows)`` (all live): -1, or the row of a
        name an earlier row already has."""
        cdef Py_ssize_t size = 8, r, i, mask, q
        cdef tl_row *row
        while size * 2 <= self.nrows * 3:
            size *= 2
        free(self.slots)
        self.slots = <int32_t *>malloc(size * sizeof(int32_t))
        if self.slots == NULL:
            self.nslots = self.used_slots = 0
            raise MemoryError()
        memset(self.slots, 0xff, size * sizeof(int32_t))
        self.nslots = size
        self.used_slots = 0
        mask = size - 1
        for r in range(self.nrows):
            row = &self.rows[r]
            i = _hash(self.names + row.name_off, _nlen(row)) & mask
            while self.slots[i] != SLOT_EMPTY:
                q = self.slots[i]
                if _nlen(&self.rows[q]) == _nlen(row) and \
                        memcmp(self.names + self.rows[q].name_off, self.names + row.name_off, _nlen(row)) == 0:
                    return r
                i = (i + 1) & mask
            self.slots[i] = <int32_t>r
            self.used_slots += 1
        return -1


cdef inline bint _same_version(object v, object implicit):
    if v is _ABSENT or implicit is _ABSENT:
        return v is implicit
    return type(v) is int and v == implicit


cdef inline bint memchr_colon(const char *s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] == 58:   # ':' 
            return True
    return False


cdef int _api_tag_version(PyObject *o, const char *name, Py_ssize_t n, int64_t *out) noexcept:
    """1 and the version of tag scope ``name`` in ``*out``; 0: it has none; 2: the store
    cannot say without a str (its side dict is in use: ask the mapping)."""
    cdef CTagStore s = <CTagStore>o
    cdef Py_ssize_t r
    if s._vover is not None:
        return 2
    r = s.find(name, n, _hash(name, n))
    if s._implicit(r):
        out[0] = s._version(r)
        return 1
    return 0


cdef int _api_put(PyObject *o, const char *name, Py_ssize_t n, const char *digest, Py_ssize_t digest_n,
                  int64_t size, int64_t expires, int64_t issued_at, int64_t version, PyObject *role,
                  const char *role_u8, Py_ssize_t role_n, int32_t grant_id,
                  int64_t log_time, int64_t offset, PyObject *keyid, const char *sig, Py_ssize_t sig_n,
                  const char *payload, Py_ssize_t payload_n) except -1:
    """``store[tag] = TagEntry(...)`` and ``versions[tag] = version`` for an ImageSigned
    signed by one key, from its parsed fields: 1 if written; 0 if the store cannot take it
    this way (its side dict of versions is in use, the digest is not canonical, the
    payload is not the one the row re-derives): the caller then writes the TagEntry.
    ``role_u8``/``role_n``: ``role``'s UTF-8, which the caller has at hand (the str's own
    would cost a cache miss per event); the re-derived payload, compared with the
    record's, holds whatever bytes they are to what was signed."""
    cdef CTagStore s = <CTagStore>o
    cdef tl_row row
    cdef tl_wide vals
    cdef int k_role, k_key, i
    cdef uint8_t *scratch
    cdef Py_ssize_t bound, got, r, rn, repo_n
    cdef const char *rp
    cdef const char *repo
    cdef uint32_t h
    cdef uint16_t k16
    cdef uint32_t n32
    cdef uint8_t stack[1024]
    _check_writable()
    if s._vover is not None or digest_n != 71 or memcmp(digest, b"sha256:", 7) != 0 or sig_n > 0x7fffffff:
        return 0
    memset(&row, 0, sizeof(tl_row))
    if not _unhex64(digest + 7, row.digest):
        return 0
    k_role = _intern_fast(s, role)
    k_key = _intern_fast(s, keyid)
    if k_role < 0 or k_key < 0:
        return 0
    vals.size, vals.offset, vals.version, vals.issued_at = size, offset, version, issued_at
    row.expires, row.log_time, row.grant_id, row.role = expires, log_time, grant_id, k_role
    rp, rn = role_u8, role_n
    repo = s._repo_u8(&repo_n)
    bound = _bound(repo_n, rn, n)
    if payload_n > bound:
        return 0
    if bound <= 1024:
        scratch = &stack[0]
    else:
        scratch = <uint8_t *>malloc(bound)
        if scratch == NULL:
            raise MemoryError()
    got = _derive(scratch, repo, repo_n, &row, &vals, rp, rn, name, n)
    i = got == payload_n and memcmp(scratch, payload, payload_n) == 0
    if scratch != &stack[0]:
        free(scratch)
    if not i:
        return 0
    s._reserve(&s.sigs, &s.sigs_cap, s.sigs_len + SIG_HDR + sig_n)
    if not _narrow(&vals):
        s._reserve_wide()
    h = _hash(name, n)
    r = s.find(name, n, h)
    if r < 0:
        r = s._new_row(name, n, h)
    else:
        s._release(r)
    k16 = <uint16_t>k_key
    n32 = <uint32_t>sig_n
    memcpy(s.sigs + s.sigs_len, &k16, 2)
    memcpy(s.sigs + s.sigs_len + 2, &n32, 4)
    memcpy(s.sigs + s.sigs_len + SIG_HDR, sig, sig_n)
    row.sig_off = <uint32_t>s.sigs_len
    row.sig_len = <uint32_t>(SIG_HDR + sig_n)
    s.sigs_len += SIG_HDR + sig_n
    row.name_off = s.rows[r].name_off
    row.name_len = s.rows[r].name_len
    s._set_vals(&row, &vals)
    s.rows[r] = row
    _bump(s)
    if s.sigs_dead or s.wide_dead:
        s._maybe_compact()
    return 1


cdef inline int _intern_fast(CTagStore s, PyObject *o) except -2:
    """:meth:`CTagStore._intern` for the fold's own str objects (a grant's role and key
    ids, the same object each time): found by identity first."""
    cdef Py_ssize_t k, n = PyList_GET_SIZE(s._strs)
    for k in range(n):
        if PyList_GET_ITEM(s._strs, k) == o:
            return <int>k
    return s._intern(<object>o)


cdef tl_store_api _API
_API.abi = 2   # 2: put takes the role's UTF-8
_API.tag_version = _api_tag_version
_API.put = _api_put
_C_API = PyCapsule_New(<void *>&_API, b"trustlog.core._tagstore_c._C_API", NULL)


def _rebuild(repo, pairs, vover):
    s = CTagStore(repo, pairs)
    s._set_vover(vover)
    return s


class _Items(ItemsView):
    __slots__ = ()

    def __iter__(self):
        return self._mapping._pairs()


class _Values(ValuesView):
    __slots__ = ()

    def __iter__(self):
        return (e for _, e in self._mapping._pairs())


MutableMapping.register(CTagStore)


# The other scopes of a repository as RepoCreated leaves them (role:targets and role:root
# at version 1): one map shared by every repository still so (core.shared_maps).
CREATED_SCOPES = shared(((role_scope("targets"), 1), (role_scope("root"), 1)))


def _reshared(other):
    """``other`` (a dict of scopes), or the shared map of the same scopes when it is
    the one every new repository holds."""
    if len(other) == 2 and other == CREATED_SCOPES and all(type(v) is int for v in other.values()):
        return CREATED_SCOPES
    return other


class TagVersions(MutableMapping):
    """``RepoState.versions`` over a :class:`CTagStore`: a tag's scope (a str without
    ``':'``, core.events.version_scope) is read from and written to the store, every
    other scope (``role:R``, ``key:K``) to a plain dict. Equal (``==``) to the dict it
    stands for; its iteration lists the tag scopes first (a dict's order is not kept)."""

    __slots__ = ("store", "other")

    def __init__(self, store, other=None):
        self.store = store
        self.other = NO_ENTRIES if not other else _reshared(other)

    def __getitem__(self, scope):
        if type(scope) is str and ":" not in scope:
            v = self.store._vget(scope, _MISSING)
            if v is _MISSING:
                raise KeyError(scope)
            return v
        return self.other[scope]

    def get(self, scope, default=None):
        if type(scope) is str and ":" not in scope:
            return self.store._vget(scope, default)
        return self.other.get(scope, default)

    def __contains__(self, scope):
        if type(scope) is str and ":" not in scope:
            return self.store._vget(scope, _MISSING) is not _MISSING
        return scope in self.other

    def __setitem__(self, scope, value):
        if type(scope) is str and ":" not in scope:
            self.store._vset(scope, value)
        else:
            other = dict(self.other) if type(self.other) is SharedMap else self.other
            other[scope] = value
            self.other = _reshared(other)

    def __delitem__(self, scope):
        if type(scope) is str and ":" not in scope:
            self.store._vdel(scope)
        else:
            other = dict(self.other) if type(self.other) is SharedMap else self.other
            del other[scope]
            self.other = _reshared(other)

    def __iter__(self):
        yield from self.store._vkeys()
        yield from self.other

    def __len__(self):
        return len(self.store._vkeys()) + len(self.other)

    def __eq__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None

    def __repr__(self):
        return f"TagVersions({dict(self.items())!r})"

    def __reduce__(self):
        return (TagVersions, (self.store, self.other))


# -- prefetch hints for the compiled fold (ingest/_fastfold.pyx) ---------------------------
# Not part of tl_store_api (which is unchanged): a capsule of its own. The fold runs a few
# records ahead of the one it applies and asks the store of each such record's repository
# to start loading what its put will touch; at registry scale (a repository's store last
# touched thousands of records ago) those are cache misses one after the other otherwise.

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define TL_PREFETCH(p) __builtin_prefetch((const void *)(p))
    #else
    #define TL_PREFETCH(p) ((void)(p))
    #endif
    """
    void TL_PREFETCH(const void *p) noexcept nogil

cdef extern from "Python.h":
    ctypedef struct PyListObject:
        PyObject **ob_item


cdef void _api_prefetch(PyObject *o, const char *name, Py_ssize_t n, int stage) noexcept:
    """A hint, never a change: stage 0 the hash slot of tag ``name``, the interned
    roles and key ids, the repository name and the signature arena's end; stage 1 the
    row that slot names; stage 2 that row's name. Each stage reads only what the one
    before loaded; a slot or row changed meanwhile makes it load the wrong line, no more."""
    cdef CTagStore s = <CTagStore>o
    cdef int32_t r
    cdef Py_ssize_t i
    if s.nslots == 0:
        return
    i = _hash(name, n) & (s.nslots - 1)
    if stage == 0:
        TL_PREFETCH(&s.slots[i])
        TL_PREFETCH(s.sigs + s.sigs_len)
        TL_PREFETCH((<PyListObject *>s._strs).ob_item)
        TL_PREFETCH(<PyObject *>s.repo)
        TL_PREFETCH(<char *>(<PyObject *>s.repo) + 64)
        return
    r = s.slots[i]
    if r < 0 or r >= s.nrows:
        return
    if stage == 1:
        TL_PREFETCH(&s.rows[r])      # a row spans up to three lines: these three points
        TL_PREFETCH(<char *>&s.rows[r] + sizeof(tl_row) // 2)   # (88 bytes) lie one in each
        TL_PREFETCH(<char *>&s.rows[r] + sizeof(tl_row) - 1)
    else:
        TL_PREFETCH(s.names + s.rows[r].name_off)


_C_PREFETCH = PyCapsule_New(<void *>_api_prefetch, b"trustlog.core._tagstore_c._C_PREFETCH", NULL)


cdef inline void _bump(CTagStore s) noexcept:
    """One more change of ``s``: its generation, and every store's count, move."""
    global _mutations
    s.generation += 1
    _mutations += 1
