"""State snapshots: the fold's result at a log offset, for fast restart and replay.

A snapshot is ``DIR/snapshots/<offset>.snap`` (offset zero-padded to 20 digits)::

    b"TLSNAP01" | u32 header length | header | body

* body: the :class:`~trustlog.core.state.TrustState` as MessagePack (msgspec encodes
  the state's dataclasses and structs directly; no pickle, nothing executable);
* header: a canonical :class:`SnapshotHeader` — the offset (the state folds records
  ``[0, offset)``), the RFC 9162 root of the log's Merkle tree at that offset, the
  SHA-256 and length of the body, the pins and the upstream positions — followed by an
  Ed25519 signature by the log key over the header.

A snapshot is used only when its signature verifies, its body hashes to the header's
digest, and its root equals the Merkle store's root at its offset: the records it
summarises are then exactly the records of the log. Anything else is skipped (and
reported in :attr:`SnapshotStore.skipped`), never trusted.
"""
from __future__ import annotations

import gc
import hashlib
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import msgspec

from trustlog.core.encoding import canonical_bytes, decode_canonical
from trustlog.core.errors import EncodingError, LogError, TrustlogError
from trustlog.core.keys import PublicKey, SigningKey
from trustlog.core import tagstore_backend
from trustlog.core.state import Pin, RepoState, TrustState

from .signed_file import read_signed_header, write_signed_file

MAGIC: Final = b"TLSNAP01"
SNAPSHOT_CONTEXT: Final = b"trustlog snapshot v1\n"
_NAME_RE: Final = re.compile(r"([0-9]{20})\.snap")
# 2: RepoState.versions (the last accepted version of each scope, core.events.version_scope);
# a format-1 snapshot lacks it and would forget replay protection, so it is skipped and rebuilt
SNAPSHOT_FORMAT: Final = 2


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


class _Body(msgspec.Struct, frozen=True):
    repos: list[RepoState]


_body_decoder = msgspec.msgpack.Decoder(_Body)


def _enc_hook(obj: object) -> object:
    # a compact per-tag store (core.tagstore, core._tagstore_c) and the versions over one are
    # written as the maps they stand for, so a snapshot's bytes do not depend on how the
    # state holds its tags
    if isinstance(obj, Mapping):
        return dict(obj.items())
    raise NotImplementedError(f"a snapshot cannot hold {type(obj).__name__}")


_body_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def pins_key(pins: Iterable[Pin]) -> list[tuple[str, list[str]]]:
    return [(p.pattern, sorted(p.keyids)) for p in pins]


def snapshot_name(offset: int) -> str:
    return f"{offset:020d}.snap"


@dataclass
class Snapshot:
    path: Path
    header: SnapshotHeader


def encode_state(state: TrustState) -> bytes:
    """The snapshot body of ``state``. Each repository's versions are written in the order
    of their scopes (a compact store does not keep a dict's insertion order for them, and
    nothing reads that order), so the bytes are the same whichever store holds them."""
    return _body_encoder.encode(_Body([replace(r, versions=dict(sorted(r.versions.items())))
                                       for r in state.repos.values()]))


def decode_state(body: bytes, pins: Iterable[Pin] = ()) -> TrustState:
    """A :class:`TrustState` from a snapshot body (the collector is paused while the
    millions of small objects are made: it would otherwise rescan them repeatedly)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        decoded = _body_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise EncodingError(f"snapshot body does not decode: {e}") from e
    finally:
        if enabled:
            gc.enable()
    st = TrustState(pins)
    st.repos = {r.name: tagstore_backend.adopt(r) for r in decoded.repos}   # the selected store
    return st


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
        body = encode_state(state)
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
        if header.format != SNAPSHOT_FORMAT:
            raise EncodingError(f"snapshot format {header.format}, not {SNAPSHOT_FORMAT} (written by another "
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
