# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled batch signature check: the fast twin of ``crypto_batch``.

Same API and same verdict bytes as :mod:`trustlog.verifier.crypto_batch` (1 valid,
0 invalid, 2 error). The batch is split over ``nthreads`` OpenMP threads with the GIL
released; no Python object is created per signature.

* Ed25519: libsodium's ``crypto_sign_verify_detached``, taken with ``dlsym`` from the
  libsodium that PyNaCl bundles, so both paths run the very same code.
* ECDSA P-256 and RSA-PSS-SHA256: OpenSSL libcrypto, mirroring what pyca/cryptography
  does for ``trustlog.core.keys.crypto_valid``:

  Keys are accepted only in the one encoding their type has
  (:mod:`trustlog.core.keyparse`), with the same bounds, so that the two backends and the
  fold agree on what a key is:

  - P-256 key: exactly 65 bytes ``04 || X || Y``, then ``EC_POINT_oct2point`` (which
    refuses coordinates >= p and points off the curve);
  - raw r||s: exactly 64 bytes, two 32-byte big-endian integers; DER: ``ECDSA_verify``,
    which rejects anything that does not re-encode to the same strict DER;
  - RSA key: a strict DER SubjectPublicKeyInfo with rsaEncryption and NULL parameters,
    a BIT STRING without unused bits, and an RSAPublicKey; minimal lengths and integers,
    nothing trailing; n odd, of RSA_MIN_BITS..RSA_MAX_BITS bits; e odd, 3 <= e < n, of at
    most RSA_MAX_EXPONENT_BITS bits. Then PSS, MGF1-SHA256, salt length 32, through the
    same EVP calls as cryptography.

Each thread keeps its last few parsed EC and RSA keys (compared by their bytes), because
batches repeat keys.
"""
import os

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, INT32_MAX, INT64_MAX, INT64_MIN, UINT32_MAX
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcmp, memcpy, memset
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawRealloc, PyMem_RawFree, PyMem_RawCalloc
from libc.limits cimport INT_MAX
from posix.dlfcn cimport dlopen, dlsym, dlerror, RTLD_NOW, RTLD_GLOBAL
from cython.parallel cimport parallel, prange

cdef extern from "openssl/bn.h" nogil:
    ctypedef struct BIGNUM:
        pass
    ctypedef struct BN_CTX:
        pass
    BIGNUM *BN_new()
    BIGNUM *BN_bin2bn(const unsigned char *s, int len, BIGNUM *ret)
    void BN_free(BIGNUM *a)
    int BN_num_bits(const BIGNUM *a)
    int BN_is_odd(const BIGNUM *a)
    int BN_cmp(const BIGNUM *a, const BIGNUM *b)
    BN_CTX *BN_CTX_new()
    void BN_CTX_free(BN_CTX *c)

cdef extern from "openssl/evp.h" nogil:
    ctypedef struct EVP_MD:
        pass
    ctypedef struct EVP_MD_CTX:
        pass
    ctypedef struct EVP_PKEY:
        pass
    ctypedef struct EVP_PKEY_CTX:
        pass
    ctypedef struct ENGINE:
        pass
    ctypedef struct OSSL_LIB_CTX:
        pass
    EVP_MD *EVP_MD_fetch(OSSL_LIB_CTX *ctx, const char *algorithm, const char *properties)
    void EVP_MD_free(EVP_MD *md)
    const EVP_MD *EVP_sha256()
    EVP_MD_CTX *EVP_MD_CTX_new()
    void EVP_MD_CTX_free(EVP_MD_CTX *ctx)
    int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl)
    int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt)
    int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s)
    EVP_PKEY *EVP_PKEY_new()
    void EVP_PKEY_free(EVP_PKEY *pkey)
    EVP_PKEY_CTX *EVP_PKEY_CTX_new(EVP_PKEY *pkey, ENGINE *e)
    void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx)
    int EVP_PKEY_verify_init(EVP_PKEY_CTX *ctx)
    int EVP_PKEY_verify(EVP_PKEY_CTX *ctx, const unsigned char *sig, size_t siglen,
                        const unsigned char *tbs, size_t tbslen)
    int EVP_PKEY_CTX_set_signature_md(EVP_PKEY_CTX *ctx, const EVP_MD *md)
    int EVP_PKEY_assign_RSA(EVP_PKEY *pkey, void *key)  # a macro over EVP_PKEY_assign

cdef extern from "openssl/rsa.h" nogil:
    ctypedef struct RSA:
        pass
    int RSA_PKCS1_PSS_PADDING
    RSA *RSA_new()
    void RSA_free(RSA *r)
    int RSA_set0_key(RSA *r, BIGNUM *n, BIGNUM *e, BIGNUM *d)
    int EVP_PKEY_CTX_set_rsa_padding(EVP_PKEY_CTX *ctx, int pad_mode)
    int EVP_PKEY_CTX_set_rsa_pss_saltlen(EVP_PKEY_CTX *ctx, int saltlen)
    int EVP_PKEY_CTX_set_rsa_mgf1_md(EVP_PKEY_CTX *ctx, const EVP_MD *md)

cdef extern from "openssl/ec.h" nogil:
    ctypedef struct EC_GROUP:
        pass
    ctypedef struct EC_POINT:
        pass
    ctypedef struct EC_KEY:
        pass
    ctypedef struct ECDSA_SIG:
        pass
    int NID_X9_62_prime256v1
    EC_GROUP *EC_GROUP_new_by_curve_name(int nid)
    void EC_GROUP_free(EC_GROUP *group)
    EC_POINT *EC_POINT_new(const EC_GROUP *group)
    void EC_POINT_free(EC_POINT *point)
    int EC_POINT_oct2point(const EC_GROUP *group, EC_POINT *p, const unsigned char *buf,
                           size_t len, BN_CTX *ctx)
    EC_KEY *EC_KEY_new()
    void EC_KEY_free(EC_KEY *key)
    int EC_KEY_set_group(EC_KEY *key, const EC_GROUP *group)
    int EC_KEY_set_public_key(EC_KEY *key, const EC_POINT *pub)
    ECDSA_SIG *ECDSA_SIG_new()
    void ECDSA_SIG_free(ECDSA_SIG *sig)
    int ECDSA_SIG_set0(ECDSA_SIG *sig, BIGNUM *r, BIGNUM *s)
    void ECDSA_SIG_get0(const ECDSA_SIG *sig, const BIGNUM **pr, const BIGNUM **ps)
    int ECDSA_do_verify(const unsigned char *dgst, int dgst_len, const ECDSA_SIG *sig, EC_KEY *eckey)
    int ECDSA_verify(int type, const unsigned char *dgst, int dgstlen,
                     const unsigned char *sig, int siglen, EC_KEY *eckey)

cdef extern from "openssl/err.h" nogil:
    void ERR_clear_error()

cdef extern from "openssl/crypto.h" nogil:
    const char *OpenSSL_version(int t)
    int OPENSSL_VERSION

cdef enum:
    # Verdict bytes (same as crypto_batch).
    R_INVALID = 0
    R_VALID = 1
    R_ERROR = 2
    # Algorithm codes (trustlog.core.keys.ALG_*).
    ALG_ED25519 = 1
    ALG_ECDSA_P256_RAW = 2
    ALG_ECDSA_P256_DER = 3
    ALG_RSA_PSS_SHA256 = 4
    # trustlog.core.keyparse.RSA_MIN_BITS / RSA_MAX_BITS / RSA_MAX_EXPONENT_BITS and
    # trustlog.core.keys.RSA_PSS_SALT_LEN (tests/test_key_identity.py holds them equal)
    RSA_MIN_BITS = 2048
    RSA_MAX_BITS = 4096
    RSA_MAX_EXPONENT_BITS = 64
    P256_LEN = 65
    RSA_PSS_SALT_LEN = 32
    # Parsed keys each thread keeps per key family (EC, RSA).
    CACHE_SLOTS = 8

INVALID = R_INVALID
VALID = R_VALID
ERROR = R_ERROR
KEY_BOUNDS = {"RSA_MIN_BITS": RSA_MIN_BITS, "RSA_MAX_BITS": RSA_MAX_BITS,
              "RSA_MAX_EXPONENT_BITS": RSA_MAX_EXPONENT_BITS, "RSA_PSS_SALT_LEN": RSA_PSS_SALT_LEN,
              "P256_LEN": P256_LEN}

ctypedef int (*sodium_verify_fn)(const unsigned char *sig, const unsigned char *m,
                                 unsigned long long mlen, const unsigned char *pk) noexcept nogil
ctypedef int (*sodium_init_fn)() noexcept nogil

cdef sodium_verify_fn _ed25519_verify = NULL
cdef EVP_MD *_sha256 = NULL
cdef uint8_t _EMPTY[1]

# DER of AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }: the only one.
cdef const char *_RSA_ALG_ID = b"\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00"


def _load_libsodium():
    """dlopen PyNaCl's bundled libsodium and take crypto_sign_verify_detached from it."""
    global _ed25519_verify
    import nacl._sodium

    path = os.fsencode(nacl._sodium.__file__)
    cdef void *handle = dlopen(path, RTLD_NOW | RTLD_GLOBAL)
    if handle == NULL:
        raise ImportError(f"cannot dlopen PyNaCl's libsodium at {path!r}: {(<bytes>dlerror()).decode(errors='replace')}")
    cdef sodium_init_fn init = <sodium_init_fn>dlsym(handle, b"sodium_init")
    cdef sodium_verify_fn verify = <sodium_verify_fn>dlsym(handle, b"crypto_sign_verify_detached")
    if init == NULL or verify == NULL:
        raise ImportError(f"{path!r} does not export sodium_init / crypto_sign_verify_detached")
    if init() < 0:  # 0 = initialised now, 1 = already initialised, -1 = failure
        raise ImportError("sodium_init() failed")
    _ed25519_verify = verify


def _load_openssl():
    global _sha256
    _sha256 = EVP_MD_fetch(NULL, b"SHA256", NULL)
    if _sha256 == NULL:
        raise ImportError("OpenSSL has no SHA256 digest")


_load_libsodium()
_load_openssl()


def openssl_version() -> str:
    """The libcrypto this extension runs its ECDSA and RSA checks with."""
    return (<bytes>OpenSSL_version(OPENSSL_VERSION)).decode()


# ---------------------------------------------------------------------------
# Per-thread state

cdef struct KeySlot:
    uint8_t *bytes           # the key as given, compared in full on lookup
    size_t len
    size_t cap
    int state                # -1 empty; else what the key alone decides (R_VALID = usable)
    EC_KEY *ec
    EVP_PKEY *pkey
    EVP_PKEY_CTX *ctx

cdef struct KeyCache:
    KeySlot slot[CACHE_SLOTS]
    int last                 # the most recent hit, tried first
    int victim               # the next slot to replace (round robin)

cdef struct ThreadState:
    EVP_MD_CTX *md
    BN_CTX *bn
    EC_GROUP *group
    ECDSA_SIG *esig
    KeyCache ec
    KeyCache rsa


cdef ThreadState *state_new() noexcept nogil:
    cdef BIGNUM *r
    cdef BIGNUM *s
    cdef int i
    cdef ThreadState *st = <ThreadState *>calloc(1, sizeof(ThreadState))
    if st == NULL:
        return NULL
    for i in range(CACHE_SLOTS):
        st.ec.slot[i].state = -1
        st.rsa.slot[i].state = -1
    st.md = EVP_MD_CTX_new()
    st.bn = BN_CTX_new()
    st.group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1)
    st.esig = ECDSA_SIG_new()   # since OpenSSL 1.1 it starts without r and s
    if st.md == NULL or st.bn == NULL or st.group == NULL or st.esig == NULL:
        state_free(st)
        return NULL
    r = BN_new()
    s = BN_new()
    if r == NULL or s == NULL or ECDSA_SIG_set0(st.esig, r, s) != 1:
        BN_free(r)
        BN_free(s)
        state_free(st)
        return NULL
    return st


cdef void slot_clear(KeySlot *s) noexcept nogil:
    if s.ctx != NULL:
        EVP_PKEY_CTX_free(s.ctx)
        s.ctx = NULL
    if s.pkey != NULL:
        EVP_PKEY_free(s.pkey)
        s.pkey = NULL
    if s.ec != NULL:
        EC_KEY_free(s.ec)
        s.ec = NULL
    s.state = -1


cdef void cache_free(KeyCache *c) noexcept nogil:
    cdef int i
    for i in range(CACHE_SLOTS):
        slot_clear(&c.slot[i])
        free(c.slot[i].bytes)
        c.slot[i].bytes = NULL


cdef void state_free(ThreadState *st) noexcept nogil:
    if st == NULL:
        return
    cache_free(&st.ec)
    cache_free(&st.rsa)
    if st.esig != NULL:
        ECDSA_SIG_free(st.esig)
    if st.group != NULL:
        EC_GROUP_free(st.group)
    if st.bn != NULL:
        BN_CTX_free(st.bn)
    if st.md != NULL:
        EVP_MD_CTX_free(st.md)
    free(st)


cdef inline bint slot_is(KeySlot *s, const uint8_t *key, size_t klen) noexcept nogil:
    return s.state >= 0 and s.len == klen and (klen == 0 or memcmp(s.bytes, key, klen) == 0)


cdef KeySlot *cache_find(KeyCache *c, const uint8_t *key, size_t klen) noexcept nogil:
    cdef int i
    if slot_is(&c.slot[c.last], key, klen):
        return &c.slot[c.last]
    for i in range(CACHE_SLOTS):
        if slot_is(&c.slot[i], key, klen):
            c.last = i
            return &c.slot[i]
    return NULL


cdef KeySlot *cache_claim(KeyCache *c, const uint8_t *key, size_t klen) noexcept nogil:
    """Empty the next slot and copy ``key`` into it (state stays -1 until parsed)."""
    cdef int i = c.victim
    cdef KeySlot *s = &c.slot[i]
    cdef uint8_t *p
    c.victim = (i + 1) % CACHE_SLOTS
    slot_clear(s)
    if klen > s.cap:
        p = <uint8_t *>realloc(s.bytes, klen)
        if p == NULL:
            return NULL
        s.bytes = p
        s.cap = klen
    if klen:
        memcpy(s.bytes, key, klen)
    s.len = klen
    c.last = i
    return s


ctypedef int (*key_parse_fn)(ThreadState *st, KeySlot *slot, const uint8_t *key, size_t klen) noexcept nogil


cdef int cached_key(ThreadState *st, KeyCache *c, key_parse_fn parse, const uint8_t *key, size_t klen,
                    KeySlot **out) noexcept nogil:
    """The key from the thread's cache ``c`` (st.ec or st.rsa), parsed by ``parse`` on a
    miss; returns its state (R_VALID = usable). A key that does not parse stays cached
    as R_INVALID; a parse that failed (R_ERROR) is not remembered."""
    cdef KeySlot *slot = cache_find(c, key, klen)
    cdef int res
    if slot == NULL:
        slot = cache_claim(c, key, klen)
        if slot == NULL:
            return R_ERROR
        res = parse(st, slot, key, klen)
        if res != R_VALID:
            slot_clear(slot)
            ERR_clear_error()
        if res == R_ERROR:
            return R_ERROR
        slot.state = res
    out[0] = slot
    return slot.state


cdef int sha256(ThreadState *st, const uint8_t *msg, size_t mlen, unsigned char *out) noexcept nogil:
    cdef unsigned int outlen = 0
    if EVP_DigestInit_ex(st.md, _sha256, NULL) != 1:
        return 0
    if mlen and EVP_DigestUpdate(st.md, msg, mlen) != 1:
        return 0
    if EVP_DigestFinal_ex(st.md, out, &outlen) != 1 or outlen != 32:
        return 0
    return 1


# ---------------------------------------------------------------------------
# Strict DER, as rust-asn1 (used by cryptography) reads it

cdef int der_take(const uint8_t **pp, size_t *rem, uint8_t tag,
                  const uint8_t **content, size_t *clen) noexcept nogil:
    """Read one TLV whose one-byte tag is ``tag``; minimal definite length only."""
    cdef const uint8_t *p = pp[0]
    cdef size_t r = rem[0]
    cdef size_t length = 0, nb, k
    if r < 2 or p[0] != tag:
        return 0
    if p[1] < 0x80:
        length = p[1]
        p += 2
        r -= 2
    else:
        nb = p[1] & 0x7f
        p += 2
        r -= 2
        if nb == 0 or nb > 4 or nb > r or p[0] == 0:  # indefinite, absurd, short, leading zero
            return 0
        for k in range(nb):
            length = (length << 8) | p[k]
        if length < 0x80:  # long form for a short length
            return 0
        p += nb
        r -= nb
    if length > r:
        return 0
    content[0] = p
    clen[0] = length
    pp[0] = p + length
    rem[0] = r - length
    return 1


cdef inline bint der_uint_ok(const uint8_t *p, size_t n) noexcept nogil:
    """rust-asn1 BigUint: non-empty, minimal, non-negative."""
    if n == 0:
        return False
    if n > 1 and ((p[0] == 0 and (p[1] & 0x80) == 0) or (p[0] == 0xff and (p[1] & 0x80) != 0)):
        return False
    return (p[0] & 0x80) == 0


cdef int rsa_from_pkcs1(KeySlot *slot, const uint8_t *p, size_t r) noexcept nogil:
    """RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }, exactly.

    On success the key is in slot.pkey / slot.ctx. Returns R_VALID, R_INVALID or
    R_ERROR.
    """
    cdef const uint8_t *seq
    cdef size_t seq_len
    cdef const uint8_t *n_p
    cdef size_t n_len
    cdef const uint8_t *e_p
    cdef size_t e_len
    cdef BIGNUM *n = NULL
    cdef BIGNUM *e = NULL
    cdef RSA *rsa = NULL
    if not der_take(&p, &r, 0x30, &seq, &seq_len) or r != 0:
        return R_INVALID
    p = seq
    r = seq_len
    if not der_take(&p, &r, 0x02, &n_p, &n_len) or not der_uint_ok(n_p, n_len):
        return R_INVALID
    if not der_take(&p, &r, 0x02, &e_p, &e_len) or not der_uint_ok(e_p, e_len) or r != 0:
        return R_INVALID
    if n_len > <size_t>INT_MAX or e_len > <size_t>INT_MAX:
        return R_INVALID
    n = BN_bin2bn(n_p, <int>n_len, NULL)
    e = BN_bin2bn(e_p, <int>e_len, NULL)
    if n == NULL or e == NULL:
        BN_free(n)
        BN_free(e)
        return R_ERROR
    # keyparse.check_rsa_numbers: n odd of RSA_MIN_BITS..RSA_MAX_BITS bits; e odd,
    # 3 <= e < n, at most RSA_MAX_EXPONENT_BITS bits.
    if (BN_num_bits(n) < RSA_MIN_BITS or BN_num_bits(n) > RSA_MAX_BITS or not BN_is_odd(n)
            or not BN_is_odd(e) or BN_num_bits(e) < 2 or BN_num_bits(e) > RSA_MAX_EXPONENT_BITS
            or BN_cmp(e, n) >= 0):
        BN_free(n)
        BN_free(e)
        return R_INVALID
    rsa = RSA_new()
    if rsa == NULL or RSA_set0_key(rsa, n, e, NULL) != 1:
        RSA_free(rsa)
        BN_free(n)
        BN_free(e)
        return R_ERROR
    slot.pkey = EVP_PKEY_new()
    if slot.pkey == NULL or EVP_PKEY_assign_RSA(slot.pkey, rsa) != 1:
        RSA_free(rsa)
        return R_ERROR
    slot.ctx = EVP_PKEY_CTX_new(slot.pkey, NULL)
    if slot.ctx == NULL:
        return R_ERROR
    return R_VALID


cdef int rsa_parse(ThreadState *st, KeySlot *slot, const uint8_t *key, size_t klen) noexcept nogil:
    """Load an RSA public key in its one accepted encoding (keyparse.parse_rsa).

    SubjectPublicKeyInfo { AlgorithmIdentifier { rsaEncryption, NULL }, BIT STRING
    { 0 unused bits, RSAPublicKey } }, nothing else. Returns R_VALID (usable),
    R_INVALID or R_ERROR.
    """
    cdef const uint8_t *p = key
    cdef size_t r = klen
    cdef const uint8_t *spki
    cdef size_t spki_len
    cdef const uint8_t *alg
    cdef size_t alg_len
    cdef const uint8_t *bits
    cdef size_t bits_len
    if not der_take(&p, &r, 0x30, &spki, &spki_len) or r != 0:
        return R_INVALID
    p = spki
    r = spki_len
    if r < 15 or memcmp(p, <const void *>_RSA_ALG_ID, 15) != 0:
        return R_INVALID
    p += 15
    r -= 15
    if not der_take(&p, &r, 0x03, &bits, &bits_len) or r != 0:
        return R_INVALID
    if bits_len == 0 or bits[0] != 0:
        return R_INVALID
    return rsa_from_pkcs1(slot, bits + 1, bits_len - 1)


cdef int verify_rsa_pss(ThreadState *st, const uint8_t *key, size_t klen, const uint8_t *msg,
                        size_t mlen, const uint8_t *sig, size_t slen) noexcept nogil:
    cdef unsigned char dgst[32]
    cdef KeySlot *slot = NULL
    cdef int res = cached_key(st, &st.rsa, rsa_parse, key, klen, &slot)
    if res != R_VALID:
        return res
    if not sha256(st, msg, mlen, dgst):
        return R_ERROR
    # Same calls, same order as cryptography's RSAPublicKey.verify with
    # PSS(MGF1(SHA256), salt_length=32) and SHA256.
    if (EVP_PKEY_verify_init(slot.ctx) != 1
            or EVP_PKEY_CTX_set_signature_md(slot.ctx, EVP_sha256()) <= 0
            or EVP_PKEY_CTX_set_rsa_padding(slot.ctx, RSA_PKCS1_PSS_PADDING) <= 0
            or EVP_PKEY_CTX_set_rsa_pss_saltlen(slot.ctx, RSA_PSS_SALT_LEN) <= 0
            or EVP_PKEY_CTX_set_rsa_mgf1_md(slot.ctx, EVP_sha256()) <= 0):
        ERR_clear_error()
        return R_ERROR
    if EVP_PKEY_verify(slot.ctx, sig if slen else _EMPTY, slen, dgst, 32) == 1:
        return R_VALID
    ERR_clear_error()
    return R_INVALID


cdef int ec_parse(ThreadState *st, KeySlot *slot, const uint8_t *key, size_t klen) noexcept nogil:
    cdef EC_POINT *pt
    # keyparse.p256_xy: the 65-byte uncompressed point only.
    if klen != P256_LEN or key[0] != 0x04:
        return R_INVALID
    pt = EC_POINT_new(st.group)
    if pt == NULL:
        return R_ERROR
    if EC_POINT_oct2point(st.group, pt, key, klen, st.bn) != 1:
        EC_POINT_free(pt)
        return R_INVALID
    slot.ec = EC_KEY_new()
    if (slot.ec == NULL or EC_KEY_set_group(slot.ec, st.group) != 1
            or EC_KEY_set_public_key(slot.ec, pt) != 1):
        EC_POINT_free(pt)
        return R_ERROR
    EC_POINT_free(pt)
    return R_VALID


cdef int verify_ecdsa(ThreadState *st, int raw, const uint8_t *key, size_t klen, const uint8_t *msg,
                      size_t mlen, const uint8_t *sig, size_t slen) noexcept nogil:
    cdef unsigned char dgst[32]
    cdef const BIGNUM *r
    cdef const BIGNUM *s
    cdef KeySlot *slot = NULL
    cdef int res = cached_key(st, &st.ec, ec_parse, key, klen, &slot)
    if res != R_VALID:
        return res
    if raw and slen != 64:
        return R_INVALID
    if not raw and slen > <size_t>INT_MAX:
        return R_INVALID
    if not sha256(st, msg, mlen, dgst):
        return R_ERROR
    if raw:
        # The reference DER-encodes (r, s) and OpenSSL decodes it back; going straight
        # to ECDSA_do_verify is the same computation.
        ECDSA_SIG_get0(st.esig, &r, &s)
        if BN_bin2bn(sig, 32, <BIGNUM *>r) == NULL or BN_bin2bn(sig + 32, 32, <BIGNUM *>s) == NULL:
            return R_ERROR
        res = ECDSA_do_verify(dgst, 32, st.esig, slot.ec)
    else:
        # ECDSA_verify rejects any signature that does not re-encode to the same DER.
        res = ECDSA_verify(0, dgst, 32, sig if slen else _EMPTY, <int>slen, slot.ec)
    if res == 1:
        return R_VALID
    ERR_clear_error()
    return R_INVALID


cdef int verify_item(ThreadState *st, uint8_t alg, const uint8_t *key, size_t klen,
                     const uint8_t *msg, size_t mlen, const uint8_t *sig, size_t slen) noexcept nogil:
    if alg == ALG_ED25519:
        if klen != 32 or slen != 64:
            return R_INVALID
        return R_VALID if _ed25519_verify(sig, msg if mlen else _EMPTY, mlen, key) == 0 else R_INVALID
    if st == NULL:
        return R_ERROR
    if alg == ALG_ECDSA_P256_RAW:
        return verify_ecdsa(st, 1, key, klen, msg, mlen, sig, slen)
    if alg == ALG_ECDSA_P256_DER:
        return verify_ecdsa(st, 0, key, klen, msg, mlen, sig, slen)
    if alg == ALG_RSA_PSS_SHA256:
        return verify_rsa_pss(st, key, klen, msg, mlen, sig, slen)
    return R_INVALID


# ---------------------------------------------------------------------------
# Python API

cdef inline const uint8_t *_ptr(const uint8_t[::1] buf) noexcept nogil:
    return &buf[0] if buf.shape[0] else _EMPTY


cdef void _check_offsets(const uint64_t[::1] off, Py_ssize_t n, size_t data_len, str name) except *:
    if off.shape[0] != n + 1:
        raise ValueError(f"{name} must have n + 1 = {n + 1} entries, got {off.shape[0]}")
    cdef Py_ssize_t i
    for i in range(1, n + 1):
        if off[i] < off[i - 1]:
            raise ValueError(f"{name} must be non-decreasing (entry {i})")
    if off[n] > data_len:
        raise ValueError(f"{name} point past the end of their buffer ({off[n]} > {data_len})")


def default_threads():
    """Worker threads for ``nthreads=0``: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:
        return os.cpu_count() or 1


def verify_batch(const uint8_t[::1] algs not None,
                 const uint8_t[::1] keys not None, const uint64_t[::1] key_offsets not None,
                 const uint8_t[::1] msgs not None, const uint64_t[::1] msg_offsets not None,
                 const uint8_t[::1] sigs not None, const uint64_t[::1] sig_offsets not None,
                 int nthreads=0):
    """Check n signatures; return n verdict bytes (1 valid, 0 invalid, 2 error).

    Item i is ``(algs[i], keys[key_offsets[i]:key_offsets[i+1]], msgs[...], sigs[...])``;
    offsets are uint64 with n + 1 entries. ``nthreads=0`` uses every available core.
    """
    cdef Py_ssize_t n = algs.shape[0]
    if nthreads < 0:
        raise ValueError(f"nthreads must be >= 0, got {nthreads}")
    _check_offsets(key_offsets, n, keys.shape[0], "key_offsets")
    _check_offsets(msg_offsets, n, msgs.shape[0], "msg_offsets")
    _check_offsets(sig_offsets, n, sigs.shape[0], "sig_offsets")
    out = bytearray(n)
    if n == 0:
        return out
    cdef uint8_t[::1] res = out
    cdef int nt = nthreads if nthreads > 0 else default_threads()
    if nt > n:
        nt = <int>n
    cdef const uint8_t *a = &algs[0]
    cdef const uint8_t *kp = _ptr(keys)
    cdef const uint8_t *mp = _ptr(msgs)
    cdef const uint8_t *sp = _ptr(sigs)
    cdef const uint64_t *ko = &key_offsets[0]
    cdef const uint64_t *mo = &msg_offsets[0]
    cdef const uint64_t *so = &sig_offsets[0]
    cdef uint8_t *rp = &res[0]
    cdef Py_ssize_t i
    cdef ThreadState *st = NULL
    with nogil, parallel(num_threads=nt):
        st = state_new()
        for i in prange(n, schedule="dynamic", chunksize=16):
            rp[i] = <uint8_t>verify_item(st, a[i], kp + ko[i], ko[i + 1] - ko[i],
                                         mp + mo[i], mo[i + 1] - mo[i], sp + so[i], so[i + 1] - so[i])
        state_free(st)
    return out


def raw_verify_loop(int alg, const uint8_t[::1] key not None, const uint8_t[::1] msg not None,
                    const uint8_t[::1] sig not None, long count):
    """Verify the same signature ``count`` times in C on this thread, GIL released.

    Returns how many verified. For measuring the per-signature limit of one core
    (the key is parsed once and then served from the thread's key cache).
    """
    cdef long i, ok = 0
    cdef int r
    cdef ThreadState *st
    cdef const uint8_t *kp = _ptr(key)
    cdef const uint8_t *mp = _ptr(msg)
    cdef const uint8_t *sp = _ptr(sig)
    cdef size_t kl = key.shape[0], ml = msg.shape[0], sl = sig.shape[0]
    with nogil:
        st = state_new()
        for i in range(count):
            r = verify_item(st, <uint8_t>alg, kp, kl, mp, ml, sp, sl)
            if r == R_VALID:
                ok += 1
        state_free(st)
    return ok


# ---------------------------------------------------------------------------
# Key-chain evaluation over the compiled state, and the compact validity cache: one job
# per file (they call verify_item / ThreadState above). _codes.pxi is generated by
# setup.py from core/verdict_codes.py.

include "_codes.pxi"            # verdict bytes V_*, details E_* / X_* (generated)
include "_blake2b.pxi"          # BLAKE2b-128 content hash (core/sigcache.py cache_key)
include "_sigcache.pxi"         # SigCache: the compact validity cache
include "_containers.pxi"       # Buf, PtrMap
include "_structs.pxi"          # the compiled tables' layout and flags
include "_rules.pxi"            # the key-chain rules: read beside core/evaluate.py
include "_compiled_trust.pxi"   # CompiledTrust: compile, ensure validity, evaluate
