"""Public keys, key ids and signature checking for the three key types.

Key types (the name decides both the key encoding and the signature encoding):

=================  ==============================  ==========================  =====
keytype            public bytes                    signature                   alg
=================  ==============================  ==========================  =====
``ed25519``        32 raw bytes                    64 raw bytes                1
``ecdsa-p256``     65-byte uncompressed SEC1 point raw r||s, 64 bytes (Notary)  2
``ecdsa-p256-der`` 65-byte uncompressed SEC1 point ASN.1 DER (TUF)             3
``rsa-pss-sha256`` DER SubjectPublicKeyInfo, 2048+  raw, PSS/MGF1-SHA256/salt 32 4
=================  ==============================  ==========================  =====

Each key type accepts exactly one encoding of a key, everywhere (see
:mod:`trustlog.core.keyparse` for the exact rules and bounds): the fold refuses any
other, and both batch verifiers treat any other as invalid. A key id is the hex SHA-256
of the canonical encoding of :class:`PublicKey`, as in TUF, so one key has one id per
key type. The same P-256 key under ``ecdsa-p256`` and ``ecdsa-p256-der`` has two key
ids; counting and compromise go by :func:`key_material_id`, which is computed from the
mathematical key, so it counts once and one report takes both down.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from collections.abc import Callable, Iterable
from typing import Final, cast

import msgspec
import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .encoding import canonical_bytes
from .errors import InvalidKeyError, KeyMaterialError, SignatureError, UnsupportedKeyTypeError
from .keyparse import (  # noqa: F401 - the RSA bounds are re-exported
    RSA_MAX_BITS,
    RSA_MAX_EXPONENT_BITS,
    RSA_MIN_BITS,
    check_rsa_numbers,
    material,
    p256_xy,
    parse_rsa,
    rsa_spki,
)

KEY_TYPES: Final = ("ed25519", "ecdsa-p256", "ecdsa-p256-der", "rsa-pss-sha256")

# Algorithm codes shared by the pure-Python and the compiled batch verifier.
ALG_ED25519: Final = 1
ALG_ECDSA_P256_RAW: Final = 2
ALG_ECDSA_P256_DER: Final = 3
ALG_RSA_PSS_SHA256: Final = 4
ALG_BY_KEYTYPE: Final[dict[str, int]] = {
    "ed25519": ALG_ED25519,
    "ecdsa-p256": ALG_ECDSA_P256_RAW,
    "ecdsa-p256-der": ALG_ECDSA_P256_DER,
    "rsa-pss-sha256": ALG_RSA_PSS_SHA256,
}
RSA_PSS_SALT_LEN: Final = 32


class PublicKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    keytype: str
    public: bytes

    @property
    def keyid(self) -> str:
        return keyid_of(self)

    @property
    def alg(self) -> int:
        try:
            return ALG_BY_KEYTYPE[self.keytype]
        except KeyError:
            raise UnsupportedKeyTypeError(
                f"unknown key type {self.keytype!r}; use one of {', '.join(KEY_TYPES)}"
            ) from None

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature`` is valid for ``message``."""
        if not crypto_valid(self.alg, self.public, message, signature):
            raise SignatureError(f"signature by key {self.keyid[:16]}… does not verify")


def keyid_of(key: PublicKey) -> str:
    return hashlib.sha256(canonical_bytes(key)).hexdigest()


def key_material_id(key: PublicKey) -> bytes:
    """Identity of the key material, from the mathematical key: a key counts once,
    whatever its type label or encoding, and one compromise report covers every form.

    The fold admits only the one accepted encoding of each key, but a key in another
    encoding of the same key (an RSA PKCS#1 structure, a compressed point) still maps
    to the same identity here, so no state, whoever built it, can count it twice. A key
    that does not parse at all gets an identity of its own bytes."""
    return _material_id(key.keytype, bytes(key.public))


@lru_cache(maxsize=65536)
def _material_id(keytype: str, public: bytes) -> bytes:
    m = material(keytype, public)
    if m is None and keytype in ALG_BY_KEYTYPE:
        try:
            m = material(keytype, validate_public_key(PublicKey(keytype, public)).public)
        except KeyMaterialError:
            m = None
    if m is None:
        m = b"unparsed\0" + keytype.encode() + b"\0" + public
    return hashlib.sha256(m).digest()


@lru_cache(maxsize=1 << 18)  # a 10M-event registry has ~100k keys; ~40 MB when full
def _ed25519_point_ok(public: bytes) -> bool:
    """libsodium's full point check (~30-60 µs: a subgroup check), cached by the key's
    bytes: a point's validity never changes, and one signer key is set in many
    repositories (each ``RoleKeysSet`` of it would check it again on every replay)."""
    return bool(nacl.bindings.crypto_core_ed25519_is_valid_point(public))


def warm_ed25519_checks(publics: Iterable[bytes], stop: Callable[[], bool]) -> int:
    """Make the point check of each 32-byte string in ``publics`` ahead of need, into
    the cache :func:`validate_public_key` reads (a replay's helper thread does this for
    the keys a segment introduces while the fold works through it: libsodium runs
    without the GIL). The check itself is unchanged; this only computes it earlier.
    Stops early when ``stop()`` is true; returns how many were looked at."""
    n = 0
    for public in publics:
        if stop():
            break
        if len(public) == 32:
            _ed25519_point_ok(public)
        n += 1
    return n


def clear_key_caches() -> None:
    """Empty this module's process-wide caches (point checks, key identities, parsed
    RSA/P-256 keys): afterwards a fold pays what it pays in a fresh process. For
    benchmarks, so that a repeated measurement is not flattered by the run before it."""
    for f in (_ed25519_point_ok, _material_id, _rsa_key, _p256_key):
        f.cache_clear()


def validate_public_key(key: PublicKey) -> PublicKey:
    """Check that ``key`` is a usable key of its type; return it in its one accepted
    encoding (which the fold then requires: a key in any other form is refused).

    Other encodings of the same key are recognised only so that the returned key can
    tell a person what the accepted form is: RSA in PKCS#1, SubjectPublicKeyInfo with
    absent parameters or the id-RSASSA-PSS OID; P-256 compressed points.
    """
    alg = key.alg
    if alg == ALG_ED25519:
        if len(key.public) != 32:
            raise InvalidKeyError(f"ed25519 public key must be 32 bytes, got {len(key.public)}")
        # Canonical (y < p), on the curve, in the prime-order subgroup, not of small
        # order: refuses every alias encoding and every key with a torsion component.
        if not _ed25519_point_ok(bytes(key.public)):
            raise InvalidKeyError(
                "ed25519 public key is not the canonical encoding of a point of the prime-order subgroup"
            )
        return key
    if alg in (ALG_ECDSA_P256_RAW, ALG_ECDSA_P256_DER):
        try:
            pt = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key.public)
        except ValueError as e:
            raise InvalidKeyError(f"not a P-256 point: {e}") from e
        norm = pt.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        p256_xy(norm)
        return key if norm == key.public else PublicKey(key.keytype, norm)
    if alg == ALG_RSA_PSS_SHA256:
        try:
            parse_rsa(key.public)
            return key
        except InvalidKeyError as strict:
            try:
                pk = serialization.load_der_public_key(key.public)
            except (ValueError, UnsupportedAlgorithm):
                raise strict from None
            if not isinstance(pk, rsa.RSAPublicKey):
                raise InvalidKeyError("rsa-pss-sha256 key is not an RSA key") from None
            nums = pk.public_numbers()
            check_rsa_numbers(nums.n, nums.e)
            norm = rsa_spki(nums.n, nums.e)
            if norm == key.public:  # pragma: no cover - parse_rsa accepts it
                raise strict from None
            return PublicKey(key.keytype, norm)
    raise UnsupportedKeyTypeError(f"unknown key type {key.keytype!r}")  # pragma: no cover


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=RSA_PSS_SALT_LEN)


@lru_cache(maxsize=256)
def _rsa_key(public: bytes) -> rsa.RSAPublicKey | None:
    try:
        n, e = parse_rsa(public)
    except InvalidKeyError:
        return None
    return rsa.RSAPublicNumbers(e, n).public_key()


@lru_cache(maxsize=256)
def _p256_key(public: bytes) -> ec.EllipticCurvePublicKey | None:
    try:
        p256_xy(public)
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    except (InvalidKeyError, ValueError):
        return None


def crypto_valid(alg: int, public: bytes, message: bytes, signature: bytes) -> bool:
    """Pure crypto validity of one signature: the reference for the batch verifiers.

    Fails closed: keys not in their type's one accepted encoding (or out of bounds),
    signatures of the wrong size, and unknown algorithms are all invalid. Only the
    narrow exceptions each library documents are caught.
    """
    if alg == ALG_ED25519:
        if len(public) != 32 or len(signature) != 64:
            return False
        try:
            nacl.signing.VerifyKey(public).verify(message, signature)
            return True
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
            return False
    if alg in (ALG_ECDSA_P256_RAW, ALG_ECDSA_P256_DER):
        pk = _p256_key(bytes(public))
        if pk is None:
            return False
        if alg == ALG_ECDSA_P256_RAW:
            if len(signature) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        else:
            der = signature
        try:
            pk.verify(der, message, ec.ECDSA(hashes.SHA256()))
            return True
        except InvalidSignature:
            return False
    if alg == ALG_RSA_PSS_SHA256:
        rk = _rsa_key(bytes(public))
        if rk is None:
            return False
        try:
            rk.verify(signature, message, _PSS, hashes.SHA256())
            return True
        except InvalidSignature:
            return False
    return False


def raw_to_der(sig: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))


def der_to_raw(sig: bytes) -> bytes:
    r, s = decode_dss_signature(sig)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class SigningKey:
    """A private key able to sign for one key type. Holds no I/O; see ``keystore``."""

    def __init__(self, keytype: str, private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
        if keytype not in ALG_BY_KEYTYPE:
            raise UnsupportedKeyTypeError(f"unknown key type {keytype!r}; use one of {', '.join(KEY_TYPES)}")
        self.keytype = keytype
        self._private = private
        pub = private.public_key()
        if keytype == "ed25519":
            raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self._nacl = nacl.signing.SigningKey(
                private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
            )
        elif keytype.startswith("ecdsa-p256"):
            raw = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        else:
            raw = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        # A key the fold would refuse (RSA outside 2048..4096 bits or with an unusual
        # exponent) is refused here, before it signs anything.
        self.public_key = validate_public_key(PublicKey(keytype, raw))
        self.keyid = self.public_key.keyid

    @classmethod
    def generate(cls, keytype: str = "ed25519") -> SigningKey:
        if keytype == "ed25519":
            return cls(keytype, ed25519.Ed25519PrivateKey.generate())
        if keytype in ("ecdsa-p256", "ecdsa-p256-der"):
            return cls(keytype, ec.generate_private_key(ec.SECP256R1()))
        if keytype == "rsa-pss-sha256":
            return cls(keytype, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        raise UnsupportedKeyTypeError(f"unknown key type {keytype!r}; use one of {', '.join(KEY_TYPES)}")

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """A deterministic Ed25519 key (for reproducible demos and tests)."""
        return cls("ed25519", ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))

    def sign(self, message: bytes) -> bytes:
        if self.keytype == "ed25519":
            return self._nacl.sign(message).signature
        if self.keytype.startswith("ecdsa-p256"):
            der = cast(ec.EllipticCurvePrivateKey, self._private).sign(message, ec.ECDSA(hashes.SHA256()))
            return der_to_raw(der) if self.keytype == "ecdsa-p256" else der
        return cast(rsa.RSAPrivateKey, self._private).sign(message, _PSS, hashes.SHA256())

    @property
    def private(self) -> ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        return self._private
