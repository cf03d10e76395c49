"""State snapshots: the fold's result at a log offset, for fast restart and replay.

A snapshot is ``DIR/snapshots/<offset>.snap`` (offset zero-padded to 20 digits)::

    b"TLSNAP01" | u32 header length | header | body

* body: the :class:`~trustlog.core.state.TrustState` as MessagePack, ``{"repos":
  [repository, ...]}`` (msgspec encodes the state's dataclasses and structs directly;
  no pickle, nothing executable). From format 3 on, the tags of a native repository are
  one section of columns (:class:`~trustlog.core.tagstore.SnapColumns`: names, fixed-
  width rows, the signature arena, the few entries kept verbatim, the tag scopes with
  no version) that the compiled store exports and imports in C in one pass, so a
  snapshot loads in time proportional to its size; its versions then hold only what
  the rows do not imply. The pure-Python twin writes and reads the same bytes. An
  imported (TUF/Notary) repository, or one with a tag name the fold would not accept,
  keeps its tags as a map of entries, as in format 2;
* header: a canonical :class:`SnapshotHeader` — the offset (the state folds records
  ``[0, offset)``), the RFC 9162 root of the log's Merkle tree at that offset, the
  SHA-256 and length of the body, the pins and the upstream positions — followed by an
  Ed25519 signature by the log key over the header.

A snapshot is used only when its signature verifies, its body hashes to the header's
digest, and its root equals the Merkle store's root at its offset: the records it
summarises are then exactly the records of the log. Anything else is skipped (and
reported in :attr:`SnapshotStore.skipped`), never trusted. A body is input like any
other: columns that do not check out (an offset out of range, a name the fold would not
accept, a count that does not add up, anything not in canonical order) are refused as a
whole, never half loaded, and the state is folded from the log instead.

Formats: 3 (columns) is written; 2 (every tag as a map entry) still loads, through the
same decoder (a format-2 repository is a format-3 one without columns), so an upgrade
does not cost a replay of the log; 1 (no versions of scopes: it would forget replay
protection) is skipped and the state folded from the log.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from trustlog.core.encoding import canonical_bytes, decode_canonical
from trustlog.core.errors import EncodingError, LogError, TrustlogError
from trustlog.core.keys import PublicKey, SigningKey
from trustlog.core.state import Pin, TrustState

from .signed_file import read_signed_header, write_signed_file
from .snapshot_body import READABLE_FORMATS, SNAPSHOT_FORMAT, decode_state, encode_state

MAGIC: Final = b"TLSNAP01"
SNAPSHOT_CONTEXT: Final = b"trustlog snapshot v1\n"
_NAME_RE: Final = re.compile(r"([0-9]{20})\.snap")


class SnapshotHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: int
    offset: int
    root: bytes
    last_log_time: int
    body_sha256: bytes
    body_len: int
    repos: int
    pins: list[tuple[str, list[str]]]
    positions: list[tuple[str, int, int]]
    created_ns: int
    auto: bool = False


class SignedSnapshotHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    header: bytes
    keyid: str
    sig: bytes


def pins_key(pins: Iterable[Pin]) -> list[tuple[str, list[str]]]:
    return [(p.pattern, sorted(p.keyids)) for p in pins]


def snapshot_name(offset: int) -> str:
    return f"{offset:020d}.snap"


@dataclass
class Snapshot:
    path: Path
    header: SnapshotHeader


class SnapshotStore:
    """The snapshots of one log directory."""

    def __init__(self, directory: str | os.PathLike[str], key: SigningKey | PublicKey) -> None:
        self.directory = Path(directory)
        self._signer = key if isinstance(key, SigningKey) else None
        self.public_key = key.public_key if isinstance(key, SigningKey) else key
        self.skipped: list[str] = []
        if self._signer is not None and self.directory.is_dir():
            for tmp in self.directory.glob("*.snap.tmp"):  # a write that never finished
                tmp.unlink(missing_ok=True)

    def list(self) -> list[Snapshot]:
        """Every snapshot whose header signature verifies, by offset (no body check)."""
        out = []
        if not self.directory.is_dir():
            return out
        for p in sorted(self.directory.iterdir()):
            if not _NAME_RE.fullmatch(p.name):
                continue
            try:
                out.append(Snapshot(p, self._read_header(p)[0]))
            except TrustlogError as e:
                self.skipped.append(f"{p.name}: {e}")
        return out

    def write(self, state: TrustState, *, root: bytes, last_log_time: int,
              positions: dict[tuple[str, int], int] | None = None, auto: bool = False) -> Path:
        """Write a snapshot of ``state`` (which has folded ``state.version`` records)."""
        if self._signer is None:
            raise LogError("snapshots are signed with the log key; this store holds only the public key")
        body = encode_state(state, SNAPSHOT_FORMAT)
        header = SnapshotHeader(
            format=SNAPSHOT_FORMAT, offset=state.version, root=root, last_log_time=last_log_time,
            body_sha256=hashlib.sha256(body).digest(), body_len=len(body), repos=len(state.repos),
            pins=pins_key(state.pins),
            positions=sorted((t, p, o) for (t, p), o in (positions or {}).items()),
            created_ns=time.time_ns(), auto=auto,
        )
        hb = canonical_bytes(header)
        signed = canonical_bytes(SignedSnapshotHeader(hb, self._signer.keyid,
                                                      self._signer.sign(SNAPSHOT_CONTEXT + hb)))
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / snapshot_name(state.version)
        write_signed_file(path, MAGIC, signed, body)
        from .snapshot_index import write_index  # lets readers load a few repositories (view.py)
        try:
            write_index(path, body, state.version, self._signer)
        except OSError:  # derived data: without it readers load the whole body
            path.with_suffix(".sidx").unlink(missing_ok=True)
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def prune(self, keep: int) -> None:
        """Keep the ``keep`` newest automatic snapshots; explicit ones stay."""
        autos = [s for s in self.list() if s.header.auto]
        for s in autos[:-keep] if keep > 0 else autos:
            s.path.unlink(missing_ok=True)
            s.path.with_suffix(".sidx").unlink(missing_ok=True)

    def _read_header(self, path: Path) -> tuple[SnapshotHeader, int]:
        with open(path, "rb") as f:
            raw, body_start = read_signed_header(f, MAGIC, "trustlog snapshot", 1 << 20)
        signed = decode_canonical(raw, SignedSnapshotHeader)
        if signed.keyid != self.public_key.keyid:
            raise EncodingError("signed by another key than the log key")
        self.public_key.verify(SNAPSHOT_CONTEXT + signed.header, signed.sig)
        header = decode_canonical(signed.header, SnapshotHeader)
        if _NAME_RE.fullmatch(path.name).group(1) != f"{header.offset:020d}":  # type: ignore[union-attr]
            raise EncodingError(f"file name does not match its offset {header.offset}")
        if header.format not in READABLE_FORMATS:
            raise EncodingError(f"snapshot format {header.format}, not one of {READABLE_FORMATS} (written by another "
                                "trustlog version; the state is folded from the log instead)")
        return header, body_start

    def check_body(self, snap: Snapshot) -> bytes:
        """The body of ``snap`` once it matches the digest in its signed header."""
        header, start = self._read_header(snap.path)
        with open(snap.path, "rb") as f:
            f.seek(start)
            body = f.read()
        if len(body) != header.body_len or hashlib.sha256(body).digest() != header.body_sha256:
            raise EncodingError("body does not match the digest in its signed header")
        return body

    def load(self, snap: Snapshot, pins: Iterable[Pin] = ()) -> TrustState:
        """The state in ``snap``, after checking its body digest."""
        header = snap.header
        st = decode_state(self.check_body(snap), pins)
        st.version = header.offset
        return st

    def best(self, max_offset: int, root_at, pins: Iterable[Pin] = ()) -> tuple[TrustState, SnapshotHeader] | None:
        """The newest usable snapshot at or below ``max_offset``: signature, digest,
        pins and ``root_at(offset)`` (the Merkle store's root) must all agree."""
        want_pins = pins_key(pins)
        for snap in reversed(self.list()):
            h = snap.header
            if h.offset > max_offset:
                continue
            if h.pins != want_pins:
                self.skipped.append(f"{snap.path.name}: made with other pins")
                continue
            try:
                if root_at(h.offset) != h.root:
                    self.skipped.append(f"{snap.path.name}: its Merkle root does not match the log's")
                    continue
                return self.load(snap, pins), h
            except TrustlogError as e:
                self.skipped.append(f"{snap.path.name}: {e}")
        return None
