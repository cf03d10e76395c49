# Included by _cverify.pyx: the containers of the compiled state.
#
# Buf: a growable array of fixed-size items (PyMem_Raw*, zeroed on growth).
# PtrMap: open addressing from a TagEntry's address to its row, backward-shift deletion.

cdef struct Buf:
    char *p
    Py_ssize_t n            # items in use
    Py_ssize_t cap          # items allocated
    Py_ssize_t item         # bytes per item


cdef int buf_init(Buf *b, Py_ssize_t item) except -1:
    b.p = NULL
    b.n = 0
    b.cap = 0
    b.item = item
    return 0


cdef int buf_reserve(Buf *b, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap
    cdef char *p
    if need <= b.cap:
        return 0
    cap = b.cap + (b.cap >> 1) + 64
    if cap < need:
        cap = need
    p = <char *>PyMem_RawRealloc(b.p, <size_t>(cap * b.item))
    if p == NULL:
        raise MemoryError()
    b.p = p
    b.cap = cap
    return 0


cdef Py_ssize_t buf_grow(Buf *b, Py_ssize_t k) except -1:
    """Append k zeroed items; return the index of the first."""
    cdef Py_ssize_t at = b.n
    buf_reserve(b, b.n + k)
    memset(b.p + at * b.item, 0, <size_t>(k * b.item))
    b.n += k
    return at


cdef void buf_free(Buf *b) noexcept:
    PyMem_RawFree(b.p)
    b.p = NULL
    b.n = 0
    b.cap = 0


cdef struct PtrMap:
    uint64_t *keys          # 0: empty
    int64_t *vals
    size_t cap
    size_t count


cdef inline size_t pm_slot(const PtrMap *m, uint64_t k) noexcept nogil:
    return <size_t>(((k >> 4) * <uint64_t>0x9E3779B97F4A7C15ULL) >> 20) & (m.cap - 1)


cdef int pm_rehash(PtrMap *m, size_t newcap) except -1:
    cdef uint64_t *ok = m.keys
    cdef int64_t *ov = m.vals
    cdef size_t oc = m.cap, i, j
    m.keys = <uint64_t *>PyMem_RawCalloc(newcap, 8)
    m.vals = <int64_t *>PyMem_RawMalloc(newcap * 8)
    if m.keys == NULL or m.vals == NULL:
        PyMem_RawFree(m.keys)
        PyMem_RawFree(m.vals)
        m.keys = ok
        m.vals = ov
        raise MemoryError()
    m.cap = newcap
    for i in range(oc):
        if ok[i]:
            j = pm_slot(m, ok[i])
            while m.keys[j]:
                j = (j + 1) & (newcap - 1)
            m.keys[j] = ok[i]
            m.vals[j] = ov[i]
    PyMem_RawFree(ok)
    PyMem_RawFree(ov)
    return 0


cdef inline int64_t pm_get(const PtrMap *m, uint64_t k) noexcept nogil:
    cdef size_t i
    if m.cap == 0:
        return -1
    i = pm_slot(m, k)
    while m.keys[i]:
        if m.keys[i] == k:
            return m.vals[i]
        i = (i + 1) & (m.cap - 1)
    return -1


cdef int pm_put(PtrMap *m, uint64_t k, int64_t v) except -1:
    cdef size_t i
    if (m.count + 1) * 2 > m.cap:
        pm_rehash(m, m.cap * 2 if m.cap else 1024)
    i = pm_slot(m, k)
    while m.keys[i]:
        if m.keys[i] == k:
            m.vals[i] = v
            return 0
        i = (i + 1) & (m.cap - 1)
    m.keys[i] = k
    m.vals[i] = v
    m.count += 1
    return 0


cdef void pm_del(PtrMap *m, uint64_t k) noexcept:
    """Remove k (backward-shift deletion keeps probe chains whole)."""
    cdef size_t mask, i, j, home
    if m.cap == 0:
        return
    mask = m.cap - 1
    i = pm_slot(m, k)
    while m.keys[i]:
        if m.keys[i] == k:
            break
        i = (i + 1) & mask
    else:
        return
    j = i
    while True:
        j = (j + 1) & mask
        if not m.keys[j]:
            break
        home = pm_slot(m, m.keys[j])
        # move keys[j] into the hole at i unless its home lies cyclically in (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
            m.keys[i] = m.keys[j]
            m.vals[i] = m.vals[j]
            i = j
    m.keys[i] = 0
    m.count -= 1


cdef void pm_free(PtrMap *m) noexcept:
    PyMem_RawFree(m.keys)
    PyMem_RawFree(m.vals)
    m.keys = NULL
    m.vals = NULL
    m.cap = 0
    m.count = 0
