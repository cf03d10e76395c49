"""One accepted encoding per key type, and the mathematical key behind it.

A key's identity must come from the key, not from its bytes: the same RSA ``(n, e)``
fits in a SubjectPublicKeyInfo with NULL parameters, one without, one with the
id-RSASSA-PSS OID, or a bare PKCS#1 structure, and if each of those had its own
identity one holder could meet a 2-of-n threshold alone, or escape a compromise report
filed against another form. So each key type has exactly one encoding that trustlog
accepts anywhere (the fold, the pure-Python and the compiled verifier), and
:func:`material` reduces a key to what its holder controls:

=============  ==========================================  =============================
key type       the one accepted encoding                   key material (counts once)
=============  ==========================================  =============================
ed25519        32 bytes, canonical (y < p), a point of     y (the encoding without its
               the prime-order subgroup (no small-order     sign bit: A and -A share a
               or mixed-order points)                       holder)
ecdsa-p256     65 bytes ``04 || X || Y``, X, Y < p, on the  X (Q and -Q share a holder)
               curve (P-256 has cofactor 1)
rsa-pss-sha256 DER SubjectPublicKeyInfo, rsaEncryption OID  n (whoever can factor n signs
               with NULL parameters, BIT STRING without     for every e)
               unused bits, RSAPublicKey {n, e}; minimal
               lengths and integers, nothing trailing;
               n odd, 2048..4096 bits; e odd, 3 <= e < n,
               at most 64 bits
=============  ==========================================  =============================

The bounds on RSA are also the bound on the work one signature can cost: a 4096-bit
modulus with a 64-bit exponent is the most expensive key a verifier will ever load.
No I/O here; :mod:`trustlog.core.keys` builds on it.
"""
from __future__ import annotations

from typing import Final

from .errors import InvalidKeyError

RSA_MIN_BITS: Final = 2048
RSA_MAX_BITS: Final = 4096
RSA_MAX_EXPONENT_BITS: Final = 64
ED25519_LEN: Final = 32
P256_LEN: Final = 65

# DER of AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }.
_RSA_ALG_ID: Final = bytes.fromhex("300d06092a864886f70d0101010500")
_P256_P: Final = 2**256 - 2**224 + 2**192 + 2**96 - 1
_ED25519_P: Final = 2**255 - 19
_P256_B: Final = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


class _Der:
    """A strict DER reader (definite, minimal lengths), as rust-asn1 reads it."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def take(self, tag: int, what: str) -> _Der:
        d, p, end = self.data, self.pos, self.end
        if end - p < 2 or d[p] != tag:
            raise InvalidKeyError(f"RSA key: expected {what} (DER tag 0x{tag:02x}) at byte {p}")
        first = d[p + 1]
        p += 2
        if first < 0x80:
            length = first
        else:
            nb = first & 0x7F
            if nb == 0 or nb > 4 or nb > end - p or d[p] == 0:
                raise InvalidKeyError(f"RSA key: {what} has an indefinite or non-minimal length")
            length = int.from_bytes(d[p:p + nb], "big")
            if length < 0x80:
                raise InvalidKeyError(f"RSA key: {what} has a non-minimal length")
            p += nb
        if length > end - p:
            raise InvalidKeyError(f"RSA key: {what} runs past the end of the key")
        self.pos = p + length
        return _Der(d, p, p + length)

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise InvalidKeyError(f"RSA key: {self.end - self.pos} unexpected byte(s) after {what}")

    def uint(self, what: str) -> int:
        c = self.take(0x02, what)
        raw = c.data[c.pos:c.end]
        if not raw or raw[0] & 0x80:
            raise InvalidKeyError(f"RSA key: {what} is empty or negative")
        if len(raw) > 1 and raw[0] == 0 and not raw[1] & 0x80:
            raise InvalidKeyError(f"RSA key: {what} has a redundant leading zero byte")
        return int.from_bytes(raw, "big")


def check_rsa_numbers(n: int, e: int) -> None:
    """The bounds every RSA key must meet (also applied by the compiled verifier)."""
    bits = n.bit_length()
    if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
        raise InvalidKeyError(f"RSA key has {bits} bits; between {RSA_MIN_BITS} and {RSA_MAX_BITS} are accepted")
    if not n & 1:
        raise InvalidKeyError("RSA modulus is even")
    if not e & 1 or e < 3 or e >= n:
        raise InvalidKeyError(f"RSA public exponent {e} must be odd and 3 <= e < n")
    if e.bit_length() > RSA_MAX_EXPONENT_BITS:
        raise InvalidKeyError(f"RSA public exponent has {e.bit_length()} bits; at most {RSA_MAX_EXPONENT_BITS}")


def parse_rsa(der: bytes) -> tuple[int, int]:
    """``(n, e)`` of the one accepted RSA encoding; raise :class:`InvalidKeyError`."""
    top = _Der(der)
    spki = top.take(0x30, "SubjectPublicKeyInfo")
    top.done("the SubjectPublicKeyInfo")
    alg_start = spki.pos
    spki.take(0x30, "AlgorithmIdentifier")
    if der[alg_start:spki.pos] != _RSA_ALG_ID:
        raise InvalidKeyError(
            "RSA key: the algorithm must be rsaEncryption with NULL parameters "
            "(not id-RSASSA-PSS, not absent parameters)"
        )
    bits = spki.take(0x03, "subjectPublicKey BIT STRING")
    spki.done("the subjectPublicKey")
    if bits.end == bits.pos or der[bits.pos] != 0:
        raise InvalidKeyError("RSA key: the BIT STRING must start with 0 unused bits")
    bits.pos += 1
    seq = bits.take(0x30, "RSAPublicKey")
    bits.done("the RSAPublicKey")
    n = seq.uint("modulus")
    e = seq.uint("publicExponent")
    seq.done("the public exponent")
    check_rsa_numbers(n, e)
    return n, e


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(content)) + content


def _der_uint(x: int) -> bytes:
    return _der(0x02, x.to_bytes(x.bit_length() // 8 + 1, "big"))


def rsa_spki(n: int, e: int) -> bytes:
    """The one accepted encoding of the RSA key ``(n, e)``."""
    pkcs1 = _der(0x30, _der_uint(n) + _der_uint(e))
    return _der(0x30, _RSA_ALG_ID + _der(0x03, b"\0" + pkcs1))


def p256_xy(point: bytes) -> tuple[int, int]:
    """``(x, y)`` of the one accepted P-256 encoding; raise :class:`InvalidKeyError`."""
    if len(point) != P256_LEN or point[0] != 0x04:
        raise InvalidKeyError(f"a P-256 key must be the {P256_LEN}-byte uncompressed point 04||X||Y")
    x = int.from_bytes(point[1:33], "big")
    y = int.from_bytes(point[33:], "big")
    p = _P256_P
    if x >= p or y >= p or (y * y - (x * x * x - 3 * x + _P256_B)) % p:
        raise InvalidKeyError("not a point on P-256")
    return x, y


def material(keytype: str, public: bytes) -> bytes | None:
    """What a holder of ``public`` controls, for counting and compromise; ``None`` when
    ``public`` is not the accepted encoding for ``keytype`` (it then verifies nothing).

    Keys that trivially derive from one private key share a material: RSA keys with the
    same modulus, P-256 points Q and -Q, Ed25519 points A and -A.
    """
    try:
        if keytype == "ed25519":
            if len(public) != ED25519_LEN:
                return None
            y = (int.from_bytes(public, "little") & (2**255 - 1)) % _ED25519_P
            return b"ed25519\0" + y.to_bytes(32, "little")
        if keytype in ("ecdsa-p256", "ecdsa-p256-der"):
            p256_xy(public)
            return b"ec-p256\0" + public[1:33]
        if keytype == "rsa-pss-sha256":
            n, _ = parse_rsa(public)
            return b"rsa\0" + n.to_bytes((n.bit_length() + 7) // 8, "big")
    except InvalidKeyError:
        return None
    return None
