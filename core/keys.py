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

The same P-256 key under ``ecdsa-p256`` and ``ecdsa-p256-der`` has two key ids; the
threshold rules count it once (see :func:`key_material_id`).

A key id is the hex SHA-256 of the canonical encoding of :class:`PublicKey`, as in TUF.
ECDSA points are normalised to the uncompressed form before hashing, so one key has one
id per key type.
"""
from __future__ import annotations

import hashlib
from typing import Final, Literal

import msgspec
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .encoding import canonical_bytes
from .errors import InvalidKeyError, SignatureError, UnsupportedKeyTypeError

KeyType = Literal["ed25519", "ecdsa-p256", "ecdsa-p256-der", "rsa-pss-sha256"]
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
RSA_MIN_BITS: Final = 2048
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
    """Identity of the key material regardless of key type label: a key counts once."""
    family = "ec-p256" if key.keytype.startswith("ecdsa-p256") else key.keytype
    return hashlib.sha256(family.encode() + b"\0" + key.public).digest()


def validate_public_key(key: PublicKey) -> PublicKey:
    """Check that ``key`` is well formed for its type; return it normalised."""
    alg = key.alg
    if alg == ALG_ED25519:
        if len(key.public) != 32:
            raise InvalidKeyError(f"ed25519 public key must be 32 bytes, got {len(key.public)}")
        return key
    if alg in (ALG_ECDSA_P256_RAW, ALG_ECDSA_P256_DER):
        try:
            pt = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key.public)
        except ValueError as e:
            raise InvalidKeyError(f"not a P-256 point: {e}") from e
        norm = pt.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return key if norm == key.public else PublicKey(key.keytype, norm)
    if alg == ALG_RSA_PSS_SHA256:
        try:
            pk = serialization.load_der_public_key(key.public)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise InvalidKeyError(f"RSA key is not a DER SubjectPublicKeyInfo: {e}") from e
        if not isinstance(pk, rsa.RSAPublicKey):
            raise InvalidKeyError("rsa-pss-sha256 key is not an RSA key")
        if pk.key_size < RSA_MIN_BITS:
            raise InvalidKeyError(f"RSA key has {pk.key_size} bits; at least {RSA_MIN_BITS} required")
        return key
    raise UnsupportedKeyTypeError(f"unknown key type {key.keytype!r}")  # pragma: no cover


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=RSA_PSS_SALT_LEN)


def crypto_valid(alg: int, public: bytes, message: bytes, signature: bytes) -> bool:
    """Pure crypto validity of one signature: the reference for the batch verifiers.

    Fails closed: malformed keys, signatures of the wrong size, and unknown algorithms
    are all invalid. Only the narrow exceptions each library documents are caught.
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
        try:
            pk = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
        except ValueError:
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
        try:
            pk = serialization.load_der_public_key(public)
        except (ValueError, UnsupportedAlgorithm):
            return False
        if not isinstance(pk, rsa.RSAPublicKey) or pk.key_size < RSA_MIN_BITS:
            return False
        try:
            pk.verify(signature, message, _PSS, hashes.SHA256())
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
        self.public_key = PublicKey(keytype, raw)
        self.keyid = self.public_key.keyid

    @classmethod
    def generate(cls, keytype: str = "ed25519") -> "SigningKey":
        if keytype == "ed25519":
            return cls(keytype, ed25519.Ed25519PrivateKey.generate())
        if keytype in ("ecdsa-p256", "ecdsa-p256-der"):
            return cls(keytype, ec.generate_private_key(ec.SECP256R1()))
        if keytype == "rsa-pss-sha256":
            return cls(keytype, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        raise UnsupportedKeyTypeError(f"unknown key type {keytype!r}; use one of {', '.join(KEY_TYPES)}")

    @classmethod
    def from_seed(cls, seed: bytes) -> "SigningKey":
        """A deterministic Ed25519 key (for reproducible demos and tests)."""
        return cls("ed25519", ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))

    def sign(self, message: bytes) -> bytes:
        if self.keytype == "ed25519":
            return self._nacl.sign(message).signature
        if self.keytype.startswith("ecdsa-p256"):
            der = self._private.sign(message, ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr]
            return der_to_raw(der) if self.keytype == "ecdsa-p256" else der
        return self._private.sign(message, _PSS, hashes.SHA256())  # type: ignore[union-attr]

    @property
    def private(self) -> ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        return self._private
