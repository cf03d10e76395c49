# Included by _cverify.pyx: the content hash of the crypto-validity cache (its C part in
# _blake2b_core.pxi, shared with the ingest pre-check), and its Python twin for tests.

include "_blake2b_core.pxi"


def cache_key(int alg, const uint8_t[::1] public not None, const uint8_t[::1] message not None,
              const uint8_t[::1] signature not None):
    """The compiled twin of :func:`trustlog.core.sigcache.cache_key` (for tests)."""
    cdef uint8_t out[16]
    if not 0 <= alg <= 255:
        raise ValueError(f"algorithm code {alg} does not fit in a byte")
    if not cache_key16(<uint8_t>alg, _ptr(public), public.shape[0], _ptr(message), message.shape[0],
                       _ptr(signature), signature.shape[0], out):
        raise ValueError("cannot hash this item")
    return (<char *>out)[:16]
