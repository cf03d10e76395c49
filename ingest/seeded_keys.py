"""Keys derived from a seed, with deterministic signatures: the demo's and the
benchmarks' keys, so the same seed gives the same events byte for byte.

A publish that is killed half-way and run again must send the very same envelopes (the
log recognises them as duplicates) rather than new keys and signatures (which it would
reject as version conflicts). So every key type is derived from the seed and signs
deterministically:

* Ed25519: the seed hashed to the 32-byte private key (signatures are deterministic).
* ECDSA P-256: the private scalar from a seeded hash; signatures with RFC 6979
  deterministic nonces (OpenSSL, through pyca/cryptography's ``deterministic_signing``).
* RSA-PSS-SHA256 (2048 bits): primes from a seeded deterministic search (SHA-256 counter
  stream, small-prime sieve, Miller-Rabin with seeded bases); PSS signatures with the
  salt derived from the key and the message (HMAC-SHA256), encoded here by RFC 8017
  EMSA-PSS-ENCODE and signed with the private exponent: OpenSSL's raw RSA operation
  through ctypes where libcrypto loads (about 1 ms), else Python's ``pow`` with CRT
  (about 20 ms); either result is checked with the public exponent before it is used.
  PSS permits any salt; a message-derived one is as good as a random one for a demo and
  makes the bytes repeat.

These keys are for synthetic data only: a real signer's key comes from
``SigningKey.generate`` (the operating system's randomness).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trustlog.core.keys import RSA_PSS_SALT_LEN, SigningKey, der_to_raw

_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def _stream(seed: bytes, label: bytes, nbytes: int, counter: int = 0) -> bytes:
    out = b""
    while len(out) < nbytes:
        out += hashlib.sha256(label + b"\0" + seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return out[:nbytes]


class _SeededECDSAKey(SigningKey):
    """ECDSA P-256 with RFC 6979 deterministic signatures."""

    def sign(self, message: bytes) -> bytes:
        der = self.private.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))  # type: ignore[union-attr]
        return der_to_raw(der) if self.keytype == "ecdsa-p256" else der


class _RawRSA:
    """OpenSSL's raw RSA private operation (``RSA_NO_PADDING``) over one key, by ctypes;
    None from :meth:`load` when libcrypto 3 cannot be used here."""

    _RSA_NO_PADDING = 3

    def __init__(self, lib: ctypes.CDLL, pkey: int) -> None:
        self._lib, self._pkey = lib, pkey

    @classmethod
    def load(cls, private: rsa.RSAPrivateKey) -> _RawRSA | None:
        name = ctypes.util.find_library("crypto")
        if name is None:
            return None
        try:
            lib = ctypes.CDLL(name)
            lib.d2i_AutoPrivateKey.restype = ctypes.c_void_p
            lib.d2i_AutoPrivateKey.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
            lib.EVP_PKEY_CTX_new.restype = ctypes.c_void_p
            lib.EVP_PKEY_CTX_new.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            lib.EVP_PKEY_CTX_free.argtypes = [ctypes.c_void_p]
            lib.EVP_PKEY_sign_init.argtypes = [ctypes.c_void_p]
            lib.EVP_PKEY_CTX_set_rsa_padding.argtypes = [ctypes.c_void_p, ctypes.c_int]
            lib.EVP_PKEY_sign.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t),
                                          ctypes.c_char_p, ctypes.c_size_t]
        except (OSError, AttributeError):  # no libcrypto, or not OpenSSL 3
            return None
        der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        buf = ctypes.c_char_p(der)
        pkey = lib.d2i_AutoPrivateKey(None, ctypes.byref(buf), len(der))
        return cls(lib, pkey) if pkey else None

    def __del__(self) -> None:
        try:
            self._lib.EVP_PKEY_free.argtypes = [ctypes.c_void_p]
            self._lib.EVP_PKEY_free(self._pkey)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def private_op(self, em: bytes) -> bytes | None:
        lib = self._lib
        ctx = lib.EVP_PKEY_CTX_new(self._pkey, None)
        if not ctx:
            return None
        try:
            out = ctypes.create_string_buffer(len(em))
            n = ctypes.c_size_t(len(em))
            if (lib.EVP_PKEY_sign_init(ctx) != 1 or lib.EVP_PKEY_CTX_set_rsa_padding(ctx, self._RSA_NO_PADDING) != 1
                    or lib.EVP_PKEY_sign(ctx, out, ctypes.byref(n), em, len(em)) != 1):
                return None
            return out.raw[:n.value]
        finally:
            lib.EVP_PKEY_CTX_free(ctx)


class _SeededRSAKey(SigningKey):
    """RSA-PSS-SHA256 (MGF1-SHA256, 32-byte salt) with a message-derived salt."""

    def __init__(self, private: rsa.RSAPrivateKey, salt_key: bytes) -> None:
        super().__init__("rsa-pss-sha256", private)
        self._salt_key = salt_key
        self._priv_numbers = private.private_numbers()
        self._raw = _RawRSA.load(private)

    def sign(self, message: bytes) -> bytes:
        pn = self._priv_numbers
        n, e = pn.public_numbers.n, pn.public_numbers.e
        k = (n.bit_length() + 7) // 8
        salt = hmac.new(self._salt_key, message, hashlib.sha256).digest()[:RSA_PSS_SALT_LEN]
        em = emsa_pss_encode(hashlib.sha256(message).digest(), salt, n.bit_length() - 1)
        m = int.from_bytes(em, "big")
        raw = self._raw.private_op(em.rjust(k, b"\0")) if self._raw is not None else None
        if raw is not None and pow(int.from_bytes(raw, "big"), e, n) == m:
            return raw.rjust(k, b"\0")
        s1, s2 = pow(m, pn.dmp1, pn.p), pow(m, pn.dmq1, pn.q)
        s = s2 + pn.q * ((pn.iqmp * (s1 - s2)) % pn.p)   # CRT recombination
        if pow(s, e, n) != m:  # pragma: no cover - a fault in the arithmetic
            raise ValueError("RSA signature self-check failed")
        return s.to_bytes(k, "big")


def _mgf1(seed: bytes, length: int) -> bytes:
    out = b""
    for counter in range((length + 31) // 32):
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
    return out[:length]


def emsa_pss_encode(m_hash: bytes, salt: bytes, em_bits: int) -> bytes:
    """RFC 8017 section 9.1.1 with SHA-256 and MGF1-SHA256."""
    em_len = (em_bits + 7) // 8
    h_len = len(m_hash)
    if em_len < h_len + len(salt) + 2:
        raise ValueError("encoding error: the modulus is too short for this salt")
    h = hashlib.sha256(b"\0" * 8 + m_hash + salt).digest()
    db = b"\0" * (em_len - len(salt) - h_len - 2) + b"\x01" + salt
    masked = bytes(a ^ b for a, b in zip(db, _mgf1(h, em_len - h_len - 1)))
    masked = bytes([masked[0] & (0xFF >> (8 * em_len - em_bits))]) + masked[1:]
    return masked + h + b"\xbc"


def _is_probable_prime(n: int, seed: bytes, rounds: int = 40) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for i in range(rounds):
        a = 2 + int.from_bytes(_stream(seed, b"mr-base", 32, i), "big") % (n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _seeded_prime(seed: bytes, label: bytes, bits: int, e: int) -> int:
    counter = 0
    while True:
        c = int.from_bytes(_stream(seed, label, bits // 8, counter), "big")
        counter += (bits // 8 + 31) // 32
        c |= (3 << (bits - 2)) | 1   # top two bits set: the product has exactly 2*bits bits
        if (c - 1) % e and _is_probable_prime(c, seed + label):
            return c


@functools.lru_cache(maxsize=64)
def _rsa_from_seed(seed: bytes, bits: int = 2048) -> rsa.RSAPrivateKey:
    e = 65537
    p = _seeded_prime(seed, b"rsa-p", bits // 2, e)
    q = _seeded_prime(seed, b"rsa-q", bits // 2, e)
    if p == q:  # pragma: no cover - 2^-1000
        raise ValueError("seeded RSA primes collided; use another seed")
    if p < q:
        p, q = q, p
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key()


def seeded_key(seed: bytes, keytype: str = "ed25519") -> SigningKey:
    """The key of ``keytype`` derived from ``seed``: the same seed gives the same key,
    and the key signs deterministically (same message, same signature bytes)."""
    if keytype == "ed25519":
        return SigningKey.from_seed(seed)
    if keytype in ("ecdsa-p256", "ecdsa-p256-der"):
        scalar = 1 + int.from_bytes(_stream(seed, b"ecdsa-p256", 48), "big") % (_P256_N - 1)
        return _SeededECDSAKey(keytype, ec.derive_private_key(scalar, ec.SECP256R1()))
    if keytype == "rsa-pss-sha256":
        return _SeededRSAKey(_rsa_from_seed(seed), hashlib.sha256(b"rsa-pss-salt\0" + seed).digest())
    raise ValueError(f"no seeded derivation for key type {keytype!r}")
