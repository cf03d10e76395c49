"""TUF and Notary v1 metadata as publishers sign it: canonical JSON, keys, signatures.

Pure parsing, no I/O. Two dialects of one format are read:

* **TUF** (python-tuf, the specification): ``_type`` ``root``/``targets``/...,
  signatures ``{keyid, sig: hex}``, keys with a ``scheme``: ``ed25519`` (hex public),
  ``ecdsa-sha2-nistp256`` (PEM public, DER signature), ``rsassa-pss-sha256`` (PEM).
* **Notary v1** (Docker Content Trust): ``_type`` ``Root``/``Targets``/..., signatures
  ``{keyid, method, sig: base64}`` with ``method`` ``eddsa``, ``ecdsa`` (raw r‖s) or
  ``rsapss``; key types ``ed25519`` (raw), ``ecdsa`` / ``rsa`` (DER
  SubjectPublicKeyInfo) and ``ecdsa-x509`` / ``rsa-x509`` (a PEM certificate wrapping
  the key), all base64. Notary's key id is the SHA-256 of the canonical JSON of
  ``{keytype, keyval: {private: null, public}}`` and is checked; a root certificate's
  "canonical" id (the one ``notary key list`` prints and pins name) is that of the key
  inside it, typed ``ecdsa`` / ``rsa``.

The dialect is read from the file itself (Notary capitalises ``_type``), so the same
bytes always parse the same way. Both dialects sign the canonical JSON of the
``signed`` object (OLPC canonical JSON: sorted keys, no whitespace, only ``"`` and
``\\`` escaped, integers only), which :func:`canonical_json` produces.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .errors import EncodingError
from .keys import PublicKey

MAX_METADATA_BYTES = 16 * 1024 * 1024
TOP_ROLES = ("root", "targets", "snapshot", "timestamp")


class TufFormatError(EncodingError):
    """Metadata that is not well-formed TUF / Notary metadata (which field, and why)."""


# -- canonical JSON ---------------------------------------------------------------------


def _canon_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _canon(obj: Any, out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, str):
        out.append(_canon_str(obj))
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(",")
            _canon(v, out)
        out.append("]")
    elif isinstance(obj, dict):
        out.append("{")
        for i, k in enumerate(sorted(obj)):
            if not isinstance(k, str):
                raise TufFormatError(f"canonical JSON: object key {k!r} is not a string")
            if i:
                out.append(",")
            out.append(_canon_str(k))
            out.append(":")
            _canon(obj[k], out)
        out.append("}")
    else:
        raise TufFormatError(f"canonical JSON: {type(obj).__name__} values are not allowed (floats never are)")


def canonical_json(obj: Any) -> bytes:
    """OLPC canonical JSON, as securesystemslib and Notary's ``MarshalCanonical`` write it."""
    out: list[str] = []
    _canon(obj, out)
    return "".join(out).encode("utf-8")


def _no_float(s: str) -> Any:
    raise TufFormatError(f"number {s} is not an integer; metadata numbers are integers")


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise TufFormatError(f"duplicate key {k!r} in a JSON object")
        d[k] = v
    return d


def load_json(data: bytes) -> Any:
    """Parse metadata JSON: integers only, no duplicate keys, size-limited."""
    if len(data) > MAX_METADATA_BYTES:
        raise TufFormatError(f"metadata is {len(data)} bytes; the limit is {MAX_METADATA_BYTES}")
    try:
        return json.loads(data, parse_float=_no_float, parse_constant=_no_float, object_pairs_hook=_no_dupes)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TufFormatError(f"not JSON: {e}") from e


# -- small field readers ------------------------------------------------------------------

_TIME_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})")


def parse_time(s: Any, what: str) -> int:
    """RFC 3339 (TUF's ``...Z``, Go's nanoseconds and offsets) to integer seconds."""
    if not isinstance(s, str) or not (m := _TIME_RE.fullmatch(s)):
        raise TufFormatError(f"{what}: {s!r} is not an RFC 3339 time")
    tz = m.group(8)
    base = s[: m.start(7)] if m.group(7) else s[: m.start(8)]
    try:
        dt = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    except ValueError as e:
        raise TufFormatError(f"{what}: {s!r}: {e}") from e
    secs = int(dt.replace(tzinfo=timezone.utc).timestamp())
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs


def _get(d: Any, key: str, typ: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(d, dict):
        raise TufFormatError(f"{what}: expected an object")
    if key not in d:
        raise TufFormatError(f"{what}: missing {key!r}")
    v = d[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise TufFormatError(f"{what}.{key}: expected {getattr(typ, '__name__', typ)}, got {type(v).__name__}")
    return v


def _int(d: Any, key: str, what: str, minimum: int = 0) -> int:
    v: int = _get(d, key, int, what)
    if isinstance(v, bool) or v < minimum:
        raise TufFormatError(f"{what}.{key}: {v!r} must be an integer >= {minimum}")
    return v


def _b64(s: str, what: str) -> bytes:
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise TufFormatError(f"{what}: not base64: {e}") from e


def _hex(s: str, what: str) -> bytes:
    try:
        return bytes.fromhex(s)
    except ValueError as e:
        raise TufFormatError(f"{what}: not hex: {e}") from e


# -- keys -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetaKey:
    """One key as metadata names it, and the trustlog key it is.

    ``key`` is None for a key trustlog cannot use (unknown type or scheme, bad
    encoding, an unusable certificate): signatures by it never count. ``cert_*`` are
    set for certificate-wrapped Notary keys."""

    keyid: str
    keytype: str
    key: PublicKey | None
    method: str                       # the signature method it verifies ("eddsa", "ecdsa", ...)
    problem: str = ""
    cert_cn: str | None = None
    cert_not_before: int | None = None
    cert_not_after: int | None = None
    canonical_id: str | None = None   # Notary's id of the key inside a certificate


def notary_key_id(keytype: str, public_b64: str) -> str:
    """Notary's key id: SHA-256 of ``{"keytype":T,"keyval":{"private":null,"public":P}}``."""
    return hashlib.sha256(canonical_json({"keytype": keytype, "keyval": {"private": None, "public": public_b64}})).hexdigest()


def _point(pk: Any) -> bytes:
    if not isinstance(pk, ec.EllipticCurvePublicKey) or not isinstance(pk.curve, ec.SECP256R1):
        raise TufFormatError("ECDSA key is not on P-256")
    return pk.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _spki(pk: Any) -> bytes:
    der: bytes = pk.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def _from_public_obj(pk: Any, der_sigs: bool) -> tuple[PublicKey, str]:
    if isinstance(pk, ec.EllipticCurvePublicKey):
        return PublicKey("ecdsa-p256-der" if der_sigs else "ecdsa-p256", _point(pk)), "ecdsa"
    if isinstance(pk, rsa.RSAPublicKey):
        return PublicKey("rsa-pss-sha256", _spki(pk)), "rsapss"
    if isinstance(pk, ed25519.Ed25519PublicKey):
        return PublicKey("ed25519", pk.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)), "eddsa"
    raise TufFormatError(f"unsupported public key {type(pk).__name__}")


def _notary_key(keyid: str, d: dict[str, Any], what: str) -> MetaKey:
    keytype = _get(d, "keytype", str, what)
    keyval = _get(d, "keyval", dict, what)
    pub_b64 = _get(keyval, "public", str, f"{what}.keyval")
    if keyval.get("private") is not None:
        raise TufFormatError(f"{what}: metadata must not carry a private key")
    if notary_key_id(keytype, pub_b64) != keyid:
        raise TufFormatError(f"{what}: key id {keyid[:16]}… is not the SHA-256 of the key (Notary's key-id rule)")
    raw = _b64(pub_b64, f"{what}.keyval.public")
    try:
        if keytype == "ed25519":
            if len(raw) != 32:
                raise TufFormatError("ed25519 public key is not 32 bytes")
            return MetaKey(keyid, keytype, PublicKey("ed25519", raw), "eddsa")
        if keytype in ("ecdsa", "rsa"):
            pk, method = _from_public_obj(serialization.load_der_public_key(raw), der_sigs=False)
            if (keytype == "ecdsa") != (method == "ecdsa"):
                raise TufFormatError(f"a {keytype} key holds a {method} public key")
            return MetaKey(keyid, keytype, pk, method)
        if keytype in ("ecdsa-x509", "rsa-x509"):
            cert = x509.load_pem_x509_certificate(raw)
            pub = cert.public_key()
            pk, method = _from_public_obj(pub, der_sigs=False)
            if (keytype == "ecdsa-x509") != (method == "ecdsa"):
                raise TufFormatError(f"a {keytype} certificate holds a {method} key")
            cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            inner = notary_key_id(keytype.split("-")[0], base64.b64encode(_spki(pub)).decode())
            return MetaKey(
                keyid, keytype, pk, method,
                cert_cn=str(cns[0].value) if cns else None,
                cert_not_before=int(cert.not_valid_before_utc.timestamp()),
                cert_not_after=int(cert.not_valid_after_utc.timestamp()),
                canonical_id=inner,
            )
    except TufFormatError as e:
        return MetaKey(keyid, keytype, None, "", problem=str(e))
    except (ValueError, TypeError) as e:
        return MetaKey(keyid, keytype, None, "", problem=f"unusable {keytype} key: {e}")
    return MetaKey(keyid, keytype, None, "", problem=f"unknown Notary key type {keytype!r}")


_TUF_SCHEMES = {"ed25519": "ed25519", "ecdsa-sha2-nistp256": "ecdsa", "rsassa-pss-sha256": "rsapss"}


def _tuf_key(keyid: str, d: dict[str, Any], what: str) -> MetaKey:
    keytype = _get(d, "keytype", str, what)
    scheme = _get(d, "scheme", str, what)
    keyval = _get(d, "keyval", dict, what)
    public = _get(keyval, "public", str, f"{what}.keyval")
    method = _TUF_SCHEMES.get(scheme)
    try:
        if method is None:
            raise TufFormatError(f"unsupported scheme {scheme!r}")
        if scheme == "ed25519":
            if keytype != "ed25519":
                raise TufFormatError(f"scheme ed25519 with key type {keytype!r}")
            raw = _hex(public, f"{what}.keyval.public")
            if len(raw) != 32:
                raise TufFormatError("ed25519 public key is not 32 bytes")
            return MetaKey(keyid, keytype, PublicKey("ed25519", raw), "ed25519")
        pk_obj = serialization.load_pem_public_key(public.encode())
        pk, m = _from_public_obj(pk_obj, der_sigs=True)
        if scheme == "ecdsa-sha2-nistp256" and (m != "ecdsa" or keytype not in ("ecdsa", "ecdsa-sha2-nistp256")):
            raise TufFormatError(f"scheme {scheme} with key type {keytype!r}")
        if scheme == "rsassa-pss-sha256" and (m != "rsapss" or keytype != "rsa"):
            raise TufFormatError(f"scheme {scheme} with key type {keytype!r}")
        return MetaKey(keyid, keytype, pk, method)
    except TufFormatError as e:
        return MetaKey(keyid, keytype, None, "", problem=str(e))
    except (ValueError, TypeError) as e:
        return MetaKey(keyid, keytype, None, "", problem=f"unusable {keytype} key: {e}")


def parse_keys(d: Any, dialect: str, what: str) -> dict[str, MetaKey]:
    if not isinstance(d, dict):
        raise TufFormatError(f"{what}: expected an object of keys")
    reader = _notary_key if dialect == "notary" else _tuf_key
    return {kid: reader(kid, v, f"{what}[{kid[:16]}]") for kid, v in d.items()}


# -- signatures and the signed envelope ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetaSig:
    keyid: str
    method: str      # Notary's method; "" for TUF (the key's scheme decides)
    sig: bytes


@dataclass(frozen=True, slots=True)
class Signed:
    """One metadata file: its ``signed`` object, the canonical bytes that were signed,
    and its signatures."""

    dialect: str          # "tuf" or "notary"
    role_type: str        # "root", "targets", "snapshot", "timestamp" (lower case)
    signed: dict[str, Any]
    message: bytes
    signatures: tuple[MetaSig, ...]
    version: int
    expires: int


def parse_signed(data: bytes, expect_type: str | None = None) -> Signed:
    doc = load_json(data)
    signed = _get(doc, "signed", dict, "metadata")
    sigs = _get(doc, "signatures", list, "metadata")
    typ = _get(signed, "_type", str, "signed")
    dialect = "notary" if typ[:1].isupper() else "tuf"
    role_type = typ.lower()
    if role_type not in TOP_ROLES:
        raise TufFormatError(f"signed._type {typ!r} is not one of root, targets, snapshot, timestamp")
    if expect_type is not None and role_type != expect_type:
        raise TufFormatError(f"expected {expect_type} metadata, got {typ!r}")
    out: list[MetaSig] = []
    for i, s in enumerate(sigs):
        w = f"signatures[{i}]"
        kid = _get(s, "keyid", str, w)
        sv = _get(s, "sig", str, w)
        if dialect == "notary":
            out.append(MetaSig(kid, _get(s, "method", str, w), _b64(sv, f"{w}.sig")))
        else:
            out.append(MetaSig(kid, "", _hex(sv, f"{w}.sig")))
    return Signed(dialect, role_type, signed, canonical_json(signed), tuple(out),
                  _int(signed, "version", "signed", 1), parse_time(signed.get("expires"), "signed.expires"))


# -- the four roles ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoleKeys:
    keyids: tuple[str, ...]
    threshold: int


@dataclass(frozen=True, slots=True)
class Root:
    meta: Signed
    keys: dict[str, MetaKey]
    roles: dict[str, RoleKeys]


def _role_keys(d: Any, what: str) -> RoleKeys:
    keyids = _get(d, "keyids", list, what)
    if not all(isinstance(k, str) for k in keyids) or len(set(keyids)) != len(keyids):
        raise TufFormatError(f"{what}.keyids: a list of distinct key ids")
    return RoleKeys(tuple(keyids), _int(d, "threshold", what, 1))


def parse_root(data: bytes) -> Root:
    m = parse_signed(data, "root")
    keys = parse_keys(_get(m.signed, "keys", dict, "root"), m.dialect, "root.keys")
    roles_d = _get(m.signed, "roles", dict, "root")
    roles: dict[str, RoleKeys] = {}
    for name in TOP_ROLES:
        if name not in roles_d:
            raise TufFormatError(f"root.roles: missing {name!r}")
        rk = _role_keys(roles_d[name], f"root.roles.{name}")
        missing = [k for k in rk.keyids if k not in keys]
        if missing:
            raise TufFormatError(f"root.roles.{name}: key {missing[0][:16]}… is not in root.keys")
        roles[name] = rk
    return Root(m, keys, roles)


@dataclass(frozen=True, slots=True)
class Delegation:
    name: str
    keyids: tuple[str, ...]
    threshold: int
    paths: tuple[str, ...] | None           # TUF globs or Notary prefixes
    path_hash_prefixes: tuple[str, ...] | None
    terminating: bool


@dataclass(frozen=True, slots=True)
class TargetFile:
    path: str
    sha256: str | None     # hex
    length: int


@dataclass(frozen=True, slots=True)
class Targets:
    meta: Signed
    targets: dict[str, TargetFile]
    keys: dict[str, MetaKey]
    delegations: tuple[Delegation, ...]


def _hash_value(v: Any, dialect: str, what: str) -> str:
    if not isinstance(v, str):
        raise TufFormatError(f"{what}: expected a string")
    raw = _b64(v, what) if dialect == "notary" else _hex(v, what)
    if len(raw) != 32:
        raise TufFormatError(f"{what}: a SHA-256 is 32 bytes, got {len(raw)}")
    return raw.hex()


def parse_targets(data: bytes) -> Targets:
    m = parse_signed(data, "targets")
    tdict = _get(m.signed, "targets", dict, "targets")
    targets: dict[str, TargetFile] = {}
    for path, t in tdict.items():
        w = f"targets[{path!r}]"
        hashes = _get(t, "hashes", dict, w)
        sha = _hash_value(hashes["sha256"], m.dialect, f"{w}.hashes.sha256") if "sha256" in hashes else None
        targets[path] = TargetFile(path, sha, _int(t, "length", w))
    keys: dict[str, MetaKey] = {}
    dels: list[Delegation] = []
    dd = m.signed.get("delegations")
    if dd is not None:
        if not isinstance(dd, dict):
            raise TufFormatError("delegations: expected an object")
        # Notary writes null for an empty key set or role list
        keys = parse_keys(dd.get("keys") or {}, m.dialect, "delegations.keys")
        roles_list = dd.get("roles") or []
        if not isinstance(roles_list, list):
            raise TufFormatError("delegations.roles: expected a list")
        names: set[str] = set()
        for i, r in enumerate(roles_list):
            w = f"delegations.roles[{i}]"
            name = _get(r, "name", str, w)
            if name in names or name in TOP_ROLES:
                raise TufFormatError(f"{w}: role name {name!r} is delegated twice or is a top-level role")
            names.add(name)
            rk = _role_keys(r, w)
            missing = [k for k in rk.keyids if k not in keys]
            if missing:
                raise TufFormatError(f"{w}: key {missing[0][:16]}… is not in delegations.keys")
            paths = r.get("paths")
            prefixes = r.get("path_hash_prefixes")
            if (paths is None) == (prefixes is None):
                raise TufFormatError(f"{w}: exactly one of paths and path_hash_prefixes")
            seq = paths if paths is not None else prefixes
            if not isinstance(seq, list) or not all(isinstance(p, str) for p in seq):
                raise TufFormatError(f"{w}: paths must be a list of strings")
            term = r.get("terminating", False)
            if not isinstance(term, bool):
                raise TufFormatError(f"{w}.terminating: expected a boolean")
            if m.dialect == "notary" and not name.startswith("targets/"):
                raise TufFormatError(f"{w}: Notary delegations are named targets/NAME, not {name!r}")
            dels.append(Delegation(name, rk.keyids, rk.threshold,
                                   tuple(paths) if paths is not None else None,
                                   tuple(prefixes) if prefixes is not None else None, term))
    return Targets(m, targets, keys, tuple(dels))


@dataclass(frozen=True, slots=True)
class MetaFileInfo:
    version: int
    length: int | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot (``meta``: role file name -> version/hash) or a timestamp (``meta``
    names the snapshot)."""

    meta_signed: Signed
    meta: dict[str, MetaFileInfo] = field(default_factory=dict)


def parse_snapshot_or_timestamp(data: bytes, expect_type: str) -> Snapshot:
    m = parse_signed(data, expect_type)
    md = _get(m.signed, "meta", dict, expect_type)
    meta: dict[str, MetaFileInfo] = {}
    for name, info in md.items():
        w = f"{expect_type}.meta[{name!r}]"
        if not isinstance(info, dict):
            raise TufFormatError(f"{w}: expected an object")
        version = info.get("version")
        if m.dialect == "notary" and version is None:
            version = 0  # Notary 0.7 snapshots name files by length and hashes only
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise TufFormatError(f"{w}.version: expected an integer")
        sha = None
        hashes = info.get("hashes")
        if isinstance(hashes, dict) and "sha256" in hashes:
            sha = _hash_value(hashes["sha256"], m.dialect, f"{w}.hashes.sha256")
        length = info.get("length")
        meta[name] = MetaFileInfo(version, length if isinstance(length, int) else None, sha)
    return Snapshot(m, meta)
