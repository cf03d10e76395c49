"""Signed checkpoints: a log's commitment to its Merkle tree head at a point in time.

A :class:`Checkpoint` names the log (``origin``), the tree size, the RFC 9162 §2.1.1 root
hash over the first ``tree_size`` leaves, and the log time (ns) at which it was taken.
Its canonical encoding (``core.encoding``) is what is signed and stored, so a verifier
checks exactly the bytes it decodes. The signature covers that encoding behind a
domain-separation prefix (:data:`CHECKPOINT_CONTEXT`), so a checkpoint signature can
never be replayed as a signature over an event payload made with the same key, nor the
other way round.

A checkpoint also commits to the log's rejects log: ``rejects_size`` and
``rejects_root`` are the RFC 9162 tree head over the reject record bodies (every input
that was not accepted), so deleting, replacing or editing rejected inputs is caught like
an edit of the log. They are an extension: a checkpoint made before it has an empty
``rejects_root`` (no commitment), and both are omitted from the encoding then, so older
checkpoints keep their exact bytes.
"""
from __future__ import annotations

from typing import Final

import msgspec

from .encoding import canonical_bytes, decode_canonical
from .errors import SignatureError
from .keys import PublicKey, SigningKey
from .merkle import HASH_SIZE

CHECKPOINT_CONTEXT: Final = b"trustlog checkpoint v1\n"


class Checkpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The head of a log's Merkle tree: ``root_hash = MTH(D[tree_size])``, and of its
    rejects log (``rejects_root = MTH(rejects[rejects_size])``; empty: not committed)."""

    origin: str
    tree_size: int
    root_hash: bytes
    log_time: int
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
        if self.rejects_size < 0 or len(self.rejects_root) not in (0, HASH_SIZE) or \
                (not self.rejects_root and self.rejects_size):
            raise ValueError("checkpoint rejects commitment must be a size >= 0 with a "
                             f"{HASH_SIZE}-byte root (or neither)")


class SignedCheckpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The canonical bytes of a :class:`Checkpoint` and one signature over them."""

    checkpoint: bytes
    keyid: str
    sig: bytes


def signing_message(checkpoint_bytes: bytes) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    return CHECKPOINT_CONTEXT + checkpoint_bytes


def sign_checkpoint(cp: Checkpoint, signing_key: SigningKey) -> SignedCheckpoint:
    """Sign the canonical encoding of ``cp``."""
    body = canonical_bytes(cp)
    return SignedCheckpoint(checkpoint=body, keyid=signing_key.keyid, sig=signing_key.sign(signing_message(body)))


def verify_checkpoint(signed: SignedCheckpoint, public_key: PublicKey, *, origin: str | None = None) -> Checkpoint:
    """Return the checkpoint ``signed`` carries once its signature by ``public_key`` is
    checked. Raises :class:`SignatureError` for another key id or a bad signature,
    :class:`EncodingError` for a body that is not a canonical :class:`Checkpoint`, and
    :class:`SignatureError` if ``origin`` is given and the checkpoint names another log.
    """
    if signed.keyid != public_key.keyid:
        raise SignatureError(
            f"checkpoint is signed by key {signed.keyid[:16]}…, not by the expected key {public_key.keyid[:16]}…"
        )
    # (1) the signature over the exact stored bytes, before anything is decoded from them.
    public_key.verify(signing_message(signed.checkpoint), signed.sig)
    # (2) the bytes must be the canonical encoding of a well-formed checkpoint.
    cp = decode_canonical(signed.checkpoint, Checkpoint)
    if origin is not None and cp.origin != origin:
        raise SignatureError(f"checkpoint is for log {cp.origin!r}, not {origin!r}")
    return cp


def encode_signed_checkpoint(signed: SignedCheckpoint) -> bytes:
    return canonical_bytes(signed)


def decode_signed_checkpoint(data: bytes) -> SignedCheckpoint:
    """Decode a stored :class:`SignedCheckpoint` (canonical form enforced)."""
    return decode_canonical(data, SignedCheckpoint)
