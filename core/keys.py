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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
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


ED25519_POINT_REFUSED: Final = "ed25519 public key is not the canonical encoding of a point of the prime-order subgroup"
_POINT_CACHE_MAX: Final = 1 << 18   # a 10M-event registry has ~100k keys; ~40 MB when full
_point_ok: dict[bytes, bool] = {}   # key bytes -> libsodium's verdict (see _ed25519_point_ok)


def _ed25519_point_ok(public: bytes) -> bool:
    """libsodium's full point check (~30-60 µs: a subgroup check), cached by the key's
    bytes: a point's validity never changes, and one signer key is set in many
    repositories (each ``RoleKeysSet`` of it would check it again on every replay).
    A plain dict (emptied when full) rather than an ``lru_cache``: a deferred check
    (:class:`DeferredPointChecks`) must be able to ask whether a verdict is known
    without computing one."""
    ok = _point_ok.get(public)
    if ok is None:
        ok = bool(nacl.bindings.crypto_core_ed25519_is_valid_point(public))
        if len(_point_ok) >= _POINT_CACHE_MAX:
            _point_ok.clear()
        _point_ok[public] = ok
    return ok


class DeferredPointChecks:
    """Ed25519 point checks a trusted replay puts off until the end of its fold.

    Inside :func:`deferred_point_checks`, a check whose verdict is not cached yet is
    recorded here (with the record offset the fold sets in :attr:`offset` and the
    fold's own words for the key, ``what``) instead of being made on the fold's thread;
    a helper thread makes them meanwhile (``ingest.replay._warm_key_checks``). Before the fold
    may return a state, or raise any other error, :meth:`first_failure` settles every
    recorded check in the order they were recorded: the first that fails is where the
    fold had to stop, so the replay then raises for that record, with the reason the
    fold gives an invalid key (``core.state``). Nothing but the fold's own thread sees
    the state in between, so the outcome is the one of checking each key on the spot.
    """

    __slots__ = ("offset", "pending")

    def __init__(self) -> None:
        self.offset = -1
        self.pending: list[tuple[bytes, int, str]] = []

    def defer(self, public: bytes, what: str) -> None:
        self.pending.append((public, self.offset, what))

    def first_failure(self, check_many: Callable[[list[bytes]], bytes] | None = None) -> tuple[int, str] | None:
        """``(offset, what)`` of the first recorded key that is not a valid point, or
        None when every one is. The checks not cached yet are made here: by
        ``check_many`` (``_logscan.ed25519_points_ok``, without the GIL: verdict bytes
        for a list of keys) when given, else one by one through PyNaCl."""
        if check_many is not None:
            todo = unchecked_points(dict.fromkeys(public for public, _, _ in self.pending))
            if todo:
                record_point_checks(todo, check_many(todo))
        for public, offset, what in self.pending:
            if not _ed25519_point_ok(public):
                return offset, what
        self.pending.clear()
        return None


_deferred: ContextVar[DeferredPointChecks | None] = ContextVar("trustlog_deferred_point_checks", default=None)


@contextmanager
def deferred_point_checks() -> Iterator[DeferredPointChecks]:
    """Defer this thread's (this context's) Ed25519 point checks made through
    ``validate_public_key(key, what=...)`` into the :class:`DeferredPointChecks` it
    yields; the caller must settle them (``first_failure``) before it uses the result.
    Other threads are not affected: each thread has a context of its own."""
    checks = DeferredPointChecks()
    token = _deferred.set(checks)
    try:
        yield checks
    finally:
        _deferred.reset(token)


def unchecked_points(publics: Iterable[bytes]) -> list[bytes]:
    """Those of ``publics`` whose point check has no cached verdict yet."""
    known = _point_ok
    return [p for p in publics if p not in known]


def record_point_checks(publics: list[bytes], verdicts: bytes) -> None:
    """Cache verdicts made elsewhere by the same libsodium function (``_logscan.
    ed25519_points_ok``, without the GIL): ``verdicts[i]`` is 1 where ``publics[i]``
    passed ``crypto_core_ed25519_is_valid_point``, 0 where it did not."""
    if len(verdicts) != len(publics):
        raise ValueError(f"{len(verdicts)} verdicts for {len(publics)} keys")
    if len(_point_ok) + len(publics) > _POINT_CACHE_MAX:
        _point_ok.clear()
    for p, v in zip(publics, verdicts):
        _point_ok[p] = v == 1


def clear_key_caches() -> None:
    """Empty this module's process-wide caches (point checks, key identities, parsed
    RSA/P-256 keys): afterwards a fold pays what it pays in a fresh process. For
    benchmarks, so that a repeated measurement is not flattered by the run before it."""
    _point_ok.clear()
    for f in (_material_id, _rsa_key, _p256_key):
        f.cache_clear()


def validate_public_key(key: PublicKey, *, what: str | None = None) -> PublicKey:
    """Check that ``key`` is a usable key of its type; return it in its one accepted
    encoding (which the fold then requires: a key in any other form is refused).

    ``what`` (the fold's words for the key, e.g. ``"root"``) lets a trusted replay
    defer an Ed25519 point check that is not cached yet (:func:`deferred_point_checks`);
    without it, or outside such a replay, every check is made here.

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
        public = bytes(key.public)
        ok = _point_ok.get(public)
        if ok is None:
            if what is not None:
                deferred = _deferred.get()
                if deferred is not None:
                    deferred.defer(public, what)
                    return key
            ok = _ed25519_point_ok(public)
        if not ok:
            raise InvalidKeyError(ED25519_POINT_REFUSED)
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
