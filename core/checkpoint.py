"""Signed checkpoints: a log's commitment to its Merkle tree head at a point in time.

A :class:`Checkpoint` names the log (``origin``), the tree size, the RFC 9162 §2.1.1 root
hash over the first ``tree_size`` leaves, and the log time (ns) at which it was taken.

Format (since trustlog 0.3): the body is a C2SP ``tlog-checkpoint``
(https://c2sp.org/tlog-checkpoint) and its signature a C2SP signed-note Ed25519
signature by the log key, key name = origin, so any note verifier (Go's
``golang.org/x/mod/sumdb/note``, witnesses) checks it::

    trustlog/4f1c…                       origin
    1234                                 tree size, decimal
    q0fVf…=                              root hash, base64
    trustlog-log-time 1764600000000000   extension: log time in ns (always present)
    …                                    further extension lines (Checkpoint.extensions)

    — trustlog/4f1c… <base64(key hash || Ed25519 signature over the four+ lines)>

The stored form is a :class:`SignedCheckpoint` (the body bytes, the TUF key id, the raw
signature), from which :func:`checkpoint_note` rebuilds the note. A body re-formats to
exactly itself, so one checkpoint has one byte form. A note body always starts with a
printable origin, so it cannot be taken for a MessagePack event payload or snapshot
header (which start with a map byte), nor the other way round.

Older logs stored MessagePack bodies signed behind :data:`CHECKPOINT_CONTEXT`; they are
still verified (:func:`is_legacy_body`), and new checkpoints of such a log are notes.

A checkpoint also commits to the log's rejects log: ``rejects_size`` and
``rejects_root`` are the RFC 9162 tree head over the reject record bodies (every input
that was not accepted), so deleting, replacing or editing rejected inputs is caught like
an edit of the log. In the note they are the extension line
``trustlog-rejects <size> <base64 root>``, present only when committed (a checkpoint made
before the commitment existed has none).
"""
from __future__ import annotations

import base64
import binascii
from typing import Final

import msgspec

from .encoding import canonical_bytes, decode_canonical
from .errors import EncodingError, SignatureError
from .keys import PublicKey, SigningKey
from .merkle import HASH_SIZE
from .note import ALG_ED25519, Note, NoteSignature, key_hash, parse_note, valid_name, verifier_key

CHECKPOINT_CONTEXT: Final = b"trustlog checkpoint v1\n"  # legacy MessagePack checkpoints only
LOG_TIME_EXTENSION: Final = "trustlog-log-time"
REJECTS_EXTENSION: Final = "trustlog-rejects"
_RESERVED_EXTENSIONS: Final = (LOG_TIME_EXTENSION, REJECTS_EXTENSION)


class Checkpoint(msgspec.Struct, frozen=True):
    """The head of a log's Merkle tree: ``root_hash = MTH(D[tree_size])``, and of its
    rejects log (``rejects_root = MTH(rejects[rejects_size])``; empty: not committed).

    ``extensions`` are further C2SP extension lines (non-empty, one line each), e.g.
    a commitment to another tree kept by the log."""

    origin: str
    tree_size: int
    root_hash: bytes
    log_time: int
    extensions: tuple[str, ...] = ()
    rejects_size: int = 0
    rejects_root: bytes = b""

    def __post_init__(self) -> None:
        # ValueError here becomes an EncodingError when decoding (msgspec ValidationError).
        if not self.origin:
            raise ValueError("checkpoint origin (the log's name) must not be empty")
        if self.tree_size < 0:
            raise ValueError(f"checkpoint tree_size must be >= 0, got {self.tree_size}")
        if len(self.root_hash) != HASH_SIZE:
            raise ValueError(f"checkpoint root_hash must be {HASH_SIZE} bytes, got {len(self.root_hash)}")
        if self.log_time < 0:
            raise ValueError(f"checkpoint log_time must be >= 0 ns, got {self.log_time}")
        for line in self.extensions:
            if not line or any(ord(c) < 0x20 for c in line) or line.split(" ")[0] in _RESERVED_EXTENSIONS:
                raise ValueError(f"checkpoint extension line {line!r} must be non-empty, one line, "
                                 f"and not another {' or '.join(_RESERVED_EXTENSIONS)}")
        if self.rejects_size < 0 or len(self.rejects_root) not in (0, HASH_SIZE) or \
                (not self.rejects_root and self.rejects_size):
            raise ValueError("checkpoint rejects commitment must be a size >= 0 with a "
                             f"{HASH_SIZE}-byte root (or neither)")


class _LegacyCheckpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The MessagePack body of checkpoints written before the note format."""

    origin: str
    tree_size: int
    root_hash: bytes
    log_time: int


class SignedCheckpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The bytes of a checkpoint body and one signature over them by the log key."""

    checkpoint: bytes
    keyid: str
    sig: bytes


def is_legacy_body(body: bytes) -> bool:
    """A MessagePack body (a fixmap) rather than note text."""
    return bool(body) and 0x80 <= body[0] <= 0x8F


def checkpoint_body(cp: Checkpoint) -> bytes:
    """The C2SP tlog-checkpoint note text of ``cp``."""
    if not valid_name(cp.origin):
        raise ValueError(f"checkpoint origin {cp.origin!r} must hold no spaces and no '+' (it is the note key name)")
    lines = [cp.origin, str(cp.tree_size), base64.b64encode(cp.root_hash).decode(),
             f"{LOG_TIME_EXTENSION} {cp.log_time}"]
    if cp.rejects_root:
        lines.append(f"{REJECTS_EXTENSION} {cp.rejects_size} {base64.b64encode(cp.rejects_root).decode()}")
    lines.extend(cp.extensions)
    return "".join(line + "\n" for line in lines).encode()


def parse_checkpoint_body(body: bytes) -> Checkpoint:
    """The checkpoint in note text ``body``; raises :class:`EncodingError` unless it is
    exactly what :func:`checkpoint_body` writes for it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EncodingError(f"checkpoint body is not UTF-8: {e}") from e
    if not text.endswith("\n"):
        raise EncodingError("checkpoint body must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 4:
        raise EncodingError(f"checkpoint body has {len(lines)} lines; need origin, size, root hash and "
                            f"{LOG_TIME_EXTENSION}")
    origin, size_s, root_s, time_line, *ext = lines
    tag, _, time_s = time_line.partition(" ")
    try:
        if not (size_s.isdigit() and time_s.isdigit() and tag == LOG_TIME_EXTENSION):
            raise ValueError("size and log time must be decimal, the fourth line " + LOG_TIME_EXTENSION)
        rejects_size, rejects_root = 0, b""
        if ext and ext[0].split(" ")[0] == REJECTS_EXTENSION:
            parts = ext.pop(0).split(" ")
            if len(parts) != 3 or not parts[1].isdigit():
                raise ValueError(f"{REJECTS_EXTENSION} line must be '{REJECTS_EXTENSION} SIZE BASE64ROOT'")
            rejects_size, rejects_root = int(parts[1]), base64.b64decode(parts[2], validate=True)
            if not rejects_root:
                raise ValueError(f"{REJECTS_EXTENSION} needs a root")
        cp = Checkpoint(origin, int(size_s), base64.b64decode(root_s, validate=True), int(time_s), tuple(ext),
                        rejects_size, rejects_root)
        again = checkpoint_body(cp)
    except (ValueError, binascii.Error) as e:
        raise EncodingError(f"not a trustlog checkpoint body: {e}") from e
    if again != body:
        raise EncodingError("checkpoint body is not in canonical form (leading zeros, padding or spacing)")
    return cp


def decode_checkpoint(body: bytes) -> Checkpoint:
    """The checkpoint in ``body`` (note text or legacy MessagePack), NOT signature-checked."""
    if is_legacy_body(body):
        old = decode_canonical(body, _LegacyCheckpoint)
        try:
            return Checkpoint(old.origin, old.tree_size, old.root_hash, old.log_time)
        except ValueError as e:
            raise EncodingError(f"not a checkpoint: {e}") from e
    return parse_checkpoint_body(body)


def signing_message(checkpoint_bytes: bytes) -> bytes:
    """The exact bytes a checkpoint signature covers: the note text itself, or for a
    legacy body the context prefix and the body."""
    return CHECKPOINT_CONTEXT + checkpoint_bytes if is_legacy_body(checkpoint_bytes) else checkpoint_bytes


def sign_checkpoint(cp: Checkpoint, signing_key: SigningKey) -> SignedCheckpoint:
    """Sign ``cp`` as a C2SP checkpoint note (the log key must be Ed25519)."""
    if signing_key.keytype != "ed25519":
        raise SignatureError(f"the log key must be Ed25519 to sign C2SP checkpoints, not {signing_key.keytype}")
    body = checkpoint_body(cp)
    return SignedCheckpoint(checkpoint=body, keyid=signing_key.keyid, sig=signing_key.sign(body))


def verify_checkpoint(signed: SignedCheckpoint, public_key: PublicKey, *, origin: str | None = None) -> Checkpoint:
    """Return the checkpoint ``signed`` carries once its signature by ``public_key`` is
    checked. Raises :class:`SignatureError` for another key id or a bad signature,
    :class:`EncodingError` for a body that is not a canonical checkpoint, and
    :class:`SignatureError` if ``origin`` is given and the checkpoint names another log.
    """
    if signed.keyid != public_key.keyid:
        raise SignatureError(
            f"checkpoint is signed by key {signed.keyid[:16]}…, not by the expected key {public_key.keyid[:16]}…"
        )
    legacy = is_legacy_body(signed.checkpoint)
    if not legacy and public_key.keytype != "ed25519":
        raise SignatureError(f"a checkpoint note is signed with Ed25519, but the log key is {public_key.keytype}")
    # (1) the signature over the exact stored bytes, before anything is decoded from them.
    public_key.verify(signing_message(signed.checkpoint), signed.sig)
    # (2) the bytes must be the canonical form of a well-formed checkpoint.
    cp = decode_checkpoint(signed.checkpoint)
    if origin is not None and cp.origin != origin:
        raise SignatureError(f"checkpoint is for log {cp.origin!r}, not {origin!r}")
    return cp


# -- the signed note ----------------------------------------------------------------------

def log_verifier_key(origin: str, public_key: PublicKey) -> str:
    """The log's note verifier key ``origin+hash+base64(0x01 || key)`` (for Go's
    ``note.NewVerifier``, witnesses and monitors)."""
    if public_key.keytype != "ed25519":
        raise SignatureError(f"only an Ed25519 log key has a note verifier key, not {public_key.keytype}")
    return verifier_key(origin, ALG_ED25519, public_key.public)


def checkpoint_note(signed: SignedCheckpoint, public_key: PublicKey,
                    cosignatures: tuple[NoteSignature, ...] = ()) -> bytes:
    """The C2SP signed note of a (note-format) checkpoint, with any cosignature lines."""
    if is_legacy_body(signed.checkpoint):
        raise EncodingError("a legacy MessagePack checkpoint has no signed-note form; sign a new checkpoint")
    cp = parse_checkpoint_body(signed.checkpoint)
    own = NoteSignature(cp.origin, key_hash(cp.origin, ALG_ED25519, public_key.public), signed.sig)
    return Note(signed.checkpoint, (own, *cosignatures)).encode()


def checkpoint_from_note(data: bytes, public_key: PublicKey) -> tuple[SignedCheckpoint, Note]:
    """The log's signed checkpoint in a signed note, and the parsed note (for any
    cosignatures). Only the signature line with the origin as name and the log key's
    hash is taken; the signature is NOT checked here (use :func:`verify_checkpoint`)."""
    note = parse_note(data)
    cp = parse_checkpoint_body(note.text)
    want = key_hash(cp.origin, ALG_ED25519, public_key.public) if public_key.keytype == "ed25519" else b""
    for s in note.signatures:
        if s.name == cp.origin and s.key_hash == want:
            return SignedCheckpoint(note.text, public_key.keyid, s.sig), note
    raise SignatureError(f"the checkpoint note carries no signature by the log key {public_key.keyid[:16]}… "
                         f"(name {cp.origin!r})")


def encode_signed_checkpoint(signed: SignedCheckpoint) -> bytes:
    return canonical_bytes(signed)


def decode_signed_checkpoint(data: bytes) -> SignedCheckpoint:
    """Decode a stored :class:`SignedCheckpoint` (canonical form enforced)."""
    return decode_canonical(data, SignedCheckpoint)
