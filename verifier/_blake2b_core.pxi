# Included by verifier/_blake2b.pxi (the compiled verifier) and ingest/_precheck.pxi (the
# ingest pre-check's compiled twin): the content hash of the crypto-validity cache.
# The including module cimports dlopen/dlsym/RTLD_* (posix.dlfcn), uint8_t/uint32_t and
# imports os.
#
# BLAKE2b-128 over ``>BIII`` (algorithm, lengths), key, message, signature: the same bytes
# as trustlog.core.sigcache.cache_key, computed without the GIL by the libsodium that
# PyNaCl bundles (the same function as hashlib.blake2b; tests/test_chain_compiled.py
# holds the two equal).

ctypedef int (*b2_init_fn)(void *state, const unsigned char *key, size_t keylen, size_t outlen) noexcept nogil
ctypedef int (*b2_update_fn)(void *state, const unsigned char *inp, unsigned long long inlen) noexcept nogil
ctypedef int (*b2_final_fn)(void *state, unsigned char *out, size_t outlen) noexcept nogil
ctypedef size_t (*b2_size_fn)() noexcept nogil

cdef b2_init_fn _b2_init = NULL
cdef b2_update_fn _b2_update = NULL
cdef b2_final_fn _b2_final = NULL


def _load_blake2b():
    global _b2_init, _b2_update, _b2_final
    import nacl._sodium

    path = os.fsencode(nacl._sodium.__file__)
    cdef void *handle = dlopen(path, RTLD_NOW | RTLD_GLOBAL)
    if handle == NULL:
        raise ImportError(f"cannot dlopen PyNaCl's libsodium at {path!r}")
    cdef b2_size_fn size = <b2_size_fn>dlsym(handle, b"crypto_generichash_blake2b_statebytes")
    _b2_init = <b2_init_fn>dlsym(handle, b"crypto_generichash_blake2b_init")
    _b2_update = <b2_update_fn>dlsym(handle, b"crypto_generichash_blake2b_update")
    _b2_final = <b2_final_fn>dlsym(handle, b"crypto_generichash_blake2b_final")
    if size == NULL or _b2_init == NULL or _b2_update == NULL or _b2_final == NULL:
        raise ImportError(f"{path!r} does not export crypto_generichash_blake2b_*")
    if size() > 448:
        raise ImportError(f"libsodium's BLAKE2b state is {size()} bytes; this build expects at most 448")


_load_blake2b()


cdef inline void _put_u32be(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v


cdef int cache_key16(uint8_t alg, const uint8_t *key, size_t klen, const uint8_t *msg, size_t mlen,
                     const uint8_t *sig, size_t slen, uint8_t *out) noexcept nogil:
    """BLAKE2b-128 of ``>BIII`` (alg, lengths), key, message, signature: sigcache.cache_key."""
    cdef unsigned char buf[512]
    cdef void *st = <void *>((<size_t>buf + 63) & ~(<size_t>63))
    cdef uint8_t hdr[13]
    if klen > 0xFFFFFFFFu or mlen > 0xFFFFFFFFu or slen > 0xFFFFFFFFu:
        return 0
    hdr[0] = alg
    _put_u32be(hdr + 1, <uint32_t>klen)
    _put_u32be(hdr + 5, <uint32_t>mlen)
    _put_u32be(hdr + 9, <uint32_t>slen)
    if _b2_init(st, NULL, 0, 16) != 0:
        return 0
    if (_b2_update(st, hdr, 13) != 0 or _b2_update(st, key, klen) != 0
            or _b2_update(st, msg, mlen) != 0 or _b2_update(st, sig, slen) != 0):
        return 0
    return _b2_final(st, out, 16) == 0
