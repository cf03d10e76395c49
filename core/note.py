"""C2SP signed notes (https://c2sp.org/signed-note) and Ed25519 cosignatures
(https://c2sp.org/tlog-cosignature), the envelope of the transparency-log ecosystem.

A signed note is a UTF-8 text ending in a newline, a blank line, and one or more
signature lines ``— <key name> base64(4-byte key hash || signature)``. The key hash is
``SHA-256(name || "\\n" || alg || public key)[:4]``: alg ``0x01`` for a plain Ed25519
note signature over the text (what Go's ``golang.org/x/mod/sumdb/note`` verifies) and
``0x04`` for an Ed25519 ``cosignature/v1``, whose signature is an 8-byte big-endian
POSIX timestamp and an Ed25519 signature over ``"cosignature/v1\\ntime <t>\\n" || text``.

Only the parsing and the byte strings to sign live here (no I/O, no keys): the caller
signs and verifies with :mod:`trustlog.core.keys`. Parsing is strict in the way the Go
implementation is (no control characters but newline, at most 100 signature lines) and
a parsed note re-formats to exactly its input, so one note has one byte form.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from typing import Final

from .errors import EncodingError

ALG_ED25519: Final = 0x01
ALG_COSIGNATURE_V1: Final = 0x04
SIG_PREFIX: Final = "— "  # U+2014 EM DASH, then a space
MAX_SIGNATURES: Final = 100
COSIGNATURE_HEADER: Final = b"cosignature/v1\n"


class NoteError(EncodingError):
    """Text that is not a well-formed signed note (or key string)."""


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key's name, its 4-byte key hash, the signature bytes."""

    name: str
    key_hash: bytes
    sig: bytes

    def line(self) -> str:
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_hash + self.sig).decode()}\n"


@dataclass(frozen=True)
class Note:
    text: bytes
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        return self.text + b"\n" + "".join(s.line() for s in self.signatures).encode()


def valid_name(name: str) -> bool:
    """A key name: non-empty, no Unicode space, no ``+`` (signed-note §"Signatures")."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name) and \
        all(ord(c) >= 0x20 for c in name)


def key_hash(name: str, alg: int, public: bytes) -> bytes:
    """``SHA-256(name || 0x0A || alg || public)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()[:4]


def verifier_key(name: str, alg: int, public: bytes) -> str:
    """The ``<name>+<hex key hash>+<base64(alg || public)>`` vkey string."""
    if not valid_name(name):
        raise NoteError(f"{name!r} is not a valid note key name (no spaces, no '+')")
    return f"{name}+{key_hash(name, alg, public).hex()}+{base64.b64encode(bytes([alg]) + public).decode()}"


def parse_verifier_key(vkey: str) -> tuple[str, int, bytes]:
    """``(name, alg, public)`` from a vkey string; the key hash must match."""
    try:
        name, hash_hex, b64 = vkey.strip().split("+", 2)
        raw = base64.b64decode(b64, validate=True)
        want = bytes.fromhex(hash_hex)
    except (ValueError, binascii.Error) as e:
        raise NoteError(f"not a verifier key <name>+<hash>+<key>: {vkey.strip()[:80]!r}") from e
    if not valid_name(name) or len(hash_hex) != 8 or len(raw) < 2:
        raise NoteError(f"not a verifier key <name>+<hash>+<key>: {vkey.strip()[:80]!r}")
    alg, public = raw[0], raw[1:]
    if key_hash(name, alg, public) != want:
        raise NoteError(f"verifier key {name!r}: its key hash does not match the key")
    return name, alg, public


def parse_note(data: bytes) -> Note:
    """Split a signed note into its text and signature lines (nothing verified)."""
    try:
        s = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NoteError(f"a signed note must be UTF-8: {e}") from e
    if any(ord(c) < 0x20 and c != "\n" for c in s):
        raise NoteError("a signed note holds no control characters other than newline")
    split = data.rfind(b"\n\n")
    if split < 0:
        raise NoteError("a signed note is text, a blank line, then signature lines")
    text, sigs = data[:split + 1], data[split + 2:]
    if not sigs or not sigs.endswith(b"\n"):
        raise NoteError("a signed note ends with at least one newline-terminated signature line")
    out = []
    for raw_line in sigs.decode().split("\n")[:-1]:
        if not raw_line.startswith(SIG_PREFIX):
            raise NoteError(f"signature line does not start with '— ': {raw_line[:60]!r}")
        name, _, b64 = raw_line[len(SIG_PREFIX):].partition(" ")
        try:
            blob = base64.b64decode(b64, validate=True)
        except binascii.Error as e:
            raise NoteError(f"signature line for {name!r}: not base64") from e
        if not valid_name(name) or len(blob) < 5 or base64.b64encode(blob).decode() != b64:
            raise NoteError(f"malformed signature line: {raw_line[:60]!r}")
        out.append(NoteSignature(name, blob[:4], blob[4:]))
        if len(out) > MAX_SIGNATURES:
            raise NoteError(f"a note with more than {MAX_SIGNATURES} signatures is refused")
    return Note(text, tuple(out))


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    """The bytes an Ed25519 ``cosignature/v1`` signs (tlog-cosignature §"Ed25519 signed message")."""
    if not 0 <= timestamp < 2**63:
        raise NoteError(f"cosignature timestamp {timestamp} is out of range")
    return COSIGNATURE_HEADER + f"time {timestamp}\n".encode() + text


def cosignature(name: str, public: bytes, timestamp: int, signature: bytes) -> NoteSignature:
    """A ``cosignature/v1`` signature line from a signature over :func:`cosignature_message`."""
    return NoteSignature(name, key_hash(name, ALG_COSIGNATURE_V1, public), struct.pack(">Q", timestamp) + signature)


def split_cosignature(sig: NoteSignature) -> tuple[int, bytes]:
    """``(timestamp, ed25519 signature)`` of a cosignature line."""
    if len(sig.sig) != 8 + 64:
        raise NoteError(f"cosignature by {sig.name!r} is {len(sig.sig)} bytes, not 72")
    (ts,) = struct.unpack(">Q", sig.sig[:8])
    if ts >= 2**63:
        raise NoteError(f"cosignature by {sig.name!r}: timestamp out of range")
    return ts, sig.sig[8:]
