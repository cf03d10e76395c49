# Included by _cverify.pyx: SigCache, the compact compiled crypto-validity cache.
#
# Validity by 128-bit content hash (cache_key16 in _blake2b.pxi), open addressing, 17
# bytes a slot, at most 80 % full; the table grows by half (any size: a slot is the hash
# modulo the size), so a cached signature costs 21 to 32 bytes. The compiled state (_compiled_trust.pxi) looks signatures up here in
# parallel under the read lock and verifies only the misses.

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_rwlock_t:
        pass
    int pthread_rwlock_init(pthread_rwlock_t *lock, const void *attr)
    int pthread_rwlock_destroy(pthread_rwlock_t *lock)
    int pthread_rwlock_rdlock(pthread_rwlock_t *lock)
    int pthread_rwlock_wrlock(pthread_rwlock_t *lock)
    int pthread_rwlock_unlock(pthread_rwlock_t *lock)


cdef class SigCache:
    """Crypto validity by content hash: the compact, compiled CryptoCache.

    Same interface as :class:`trustlog.core.sigcache.CryptoCache` (``in``, ``len``,
    ``get``, ``put``, ``hits``, ``misses``), keys are the 16-byte ``cache_key``. A table
    of 16-byte keys and one value byte per slot, at most 80 % full and grown by half
    when it would be fuller: 21 to 32 bytes per cached signature (a power-of-two table
    at 70 % took 24 to 49, 35 at a million signatures). Lookups from the compiled verifier run in parallel without the
    GIL under a read lock; inserts take the write lock.
    """

    cdef uint8_t *keys
    cdef uint8_t *vals          # 0 empty, 1 invalid, 2 valid
    cdef size_t cap
    cdef size_t count
    cdef pthread_rwlock_t lock
    cdef public unsigned long long hits
    cdef public unsigned long long misses

    def __cinit__(self, size_t capacity=1024):
        cdef size_t cap = capacity if capacity > 1024 else 1024
        pthread_rwlock_init(&self.lock, NULL)
        self.keys = <uint8_t *>PyMem_RawMalloc(cap * 16)
        self.vals = <uint8_t *>PyMem_RawCalloc(cap, 1)
        if self.keys == NULL or self.vals == NULL:
            raise MemoryError()
        self.cap = cap
        self.count = 0

    def __dealloc__(self):
        PyMem_RawFree(self.keys)
        PyMem_RawFree(self.vals)
        pthread_rwlock_destroy(&self.lock)

    cdef inline size_t _slot0(self, const uint8_t *k) noexcept nogil:
        cdef uint64_t h
        memcpy(&h, k, 8)
        return <size_t>(h % self.cap)

    cdef inline uint8_t find(self, const uint8_t *k) noexcept nogil:
        """1 invalid, 2 valid, 0 absent. Caller holds the lock (read or write)."""
        cdef size_t i = self._slot0(k)
        while self.vals[i]:
            if memcmp(self.keys + 16 * i, k, 16) == 0:
                return self.vals[i]
            i += 1
            if i == self.cap:
                i = 0
        return 0

    cdef int _rehash(self, size_t newcap) noexcept nogil:
        cdef uint8_t *nk = <uint8_t *>PyMem_RawMalloc(newcap * 16)
        cdef uint8_t *nv = <uint8_t *>PyMem_RawCalloc(newcap, 1)
        cdef size_t i, j
        cdef uint64_t h
        if nk == NULL or nv == NULL:
            PyMem_RawFree(nk)
            PyMem_RawFree(nv)
            return -1
        for i in range(self.cap):
            if self.vals[i]:
                memcpy(&h, self.keys + 16 * i, 8)
                j = <size_t>(h % newcap)
                while nv[j]:
                    j += 1
                    if j == newcap:
                        j = 0
                memcpy(nk + 16 * j, self.keys + 16 * i, 16)
                nv[j] = self.vals[i]
        PyMem_RawFree(self.keys)
        PyMem_RawFree(self.vals)
        self.keys = nk
        self.vals = nv
        self.cap = newcap
        return 0

    cdef int reserve(self, size_t more) noexcept nogil:
        """Room for ``more`` inserts without passing 80 % load. Caller holds the write lock."""
        cdef size_t need = self.count + more
        cdef size_t cap = self.cap
        while need * 5 > cap * 4:
            cap += cap >> 1
        if cap != self.cap:
            return self._rehash(cap)
        return 0

    cdef int insert(self, const uint8_t *k, uint8_t v) noexcept nogil:
        """Store v (1 invalid, 2 valid). Caller holds the write lock."""
        cdef size_t i
        if self.reserve(1) != 0:
            return -1
        i = self._slot0(k)
        while self.vals[i]:
            if memcmp(self.keys + 16 * i, k, 16) == 0:
                self.vals[i] = v
                return 0
            i += 1
            if i == self.cap:
                i = 0
        memcpy(self.keys + 16 * i, k, 16)
        self.vals[i] = v
        self.count += 1
        return 0

    def presize(self, size_t n) -> None:
        """Room for ``n`` more verdicts without growing, in a table just big enough (when
        they are known to come: a cold cache filled by one sweep)."""
        cdef int rc = 0
        cdef size_t need
        with nogil:
            self.wrlock()
            need = self.count + n
            if need * 5 > self.cap * 4:
                rc = self._rehash(need + (need >> 2) + 1)
            self.unlock()
        if rc != 0:
            raise MemoryError()

    cdef inline void rdlock(self) noexcept nogil:
        pthread_rwlock_rdlock(&self.lock)

    cdef inline void wrlock(self) noexcept nogil:
        pthread_rwlock_wrlock(&self.lock)

    cdef inline void unlock(self) noexcept nogil:
        pthread_rwlock_unlock(&self.lock)

    # -- CryptoCache's interface ------------------------------------------------------

    cdef const uint8_t *_key(self, key) except NULL:
        if not isinstance(key, bytes) or len(key) != 16:
            raise ValueError("SigCache keys are the 16-byte cache_key of a signature")
        return <const uint8_t *>PyBytes_AS_STRING(key)

    def __contains__(self, key) -> bool:
        cdef const uint8_t *k = self._key(key)
        cdef uint8_t v
        with nogil:
            self.rdlock()
            v = self.find(k)
            self.unlock()
        return v != 0

    def __len__(self) -> int:
        return self.count

    def get(self, key):
        """True (valid), False (invalid) or None (not cached)."""
        cdef const uint8_t *k = self._key(key)
        cdef uint8_t v
        with nogil:
            self.rdlock()
            v = self.find(k)
            self.unlock()
        if v == 0:
            self.misses += 1
            return None
        self.hits += 1
        return v == 2

    def put(self, key, valid) -> None:
        cdef const uint8_t *k = self._key(key)
        cdef uint8_t v = 2 if valid else 1
        cdef int rc
        with nogil:
            self.wrlock()
            rc = self.insert(k, v)
            self.unlock()
        if rc != 0:
            raise MemoryError()

    def clear(self) -> None:
        with nogil:
            self.wrlock()
            memset(self.vals, 0, self.cap)
            self.count = 0
            self.unlock()

    @property
    def nbytes(self) -> int:
        """Bytes the table holds (its slots), not counting this small object."""
        return self.cap * 17

    @property
    def capacity(self) -> int:
        return self.cap
