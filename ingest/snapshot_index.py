"""A signed index beside each snapshot, so a reader can load a few repositories from it
without reading and hashing the whole body.

``DIR/snapshots/<offset>.sidx`` (written by the log writer right after the snapshot)::

    b"TLSIDX01" | u32 header length | signed header | entries

* entries: MessagePack ``[[repository, start, end], ...]``: the byte range of each
  repository's encoding inside the snapshot body (of any format: the body is
  ``{"repos": [...]}`` in each, and a repository is decoded by ``snapshot_body.decode_repo``);
* header: a canonical :class:`IndexHeader` — the snapshot's offset, body length and body
  SHA-256 (which bind the index to exactly one snapshot), the SHA-256 of each
  ``chunk_bytes`` chunk of the body, the SHA-256 and length of the entries — signed by
  the log key (Ed25519, context ``trustlog snapshot index v1``).

A reader verifies the signature, the binding to the snapshot's signed header and the
entries' digest, then reads only the chunks that hold the repositories it wants and
checks each chunk against its digest before decoding. The trust is the snapshot's: every
byte used is covered by a digest signed by the log key. Anything that does not check
out makes the reader fall back to the whole body, never to an unchecked answer.

Derived data: a missing or stale index only costs speed; the writer can write it again
from the snapshot (:func:`write_index`).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import msgspec

from trustlog.core.encoding import canonical_bytes, decode_canonical
from trustlog.core.errors import EncodingError, TrustlogError
from trustlog.core.keys import PublicKey, SigningKey
from trustlog.core.state import RepoState

from .signed_file import read_signed_header, write_signed_file
from .snapshot_body import decode_repo

MAGIC: Final = b"TLSIDX01"
CONTEXT: Final = b"trustlog snapshot index v1\n"
CHUNK_BYTES: Final = 1 << 20
SUFFIX: Final = ".sidx"
_BODY_PREFIX: Final = b"\x81\xa5repos"  # msgpack of the snapshot body's {"repos": [...]}


class IndexHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: int
    snapshot_offset: int
    body_len: int
    body_sha256: bytes
    chunk_bytes: int
    chunks: list[bytes]
    entries_len: int
    entries_sha256: bytes


class SignedIndexHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    header: bytes
    keyid: str
    sig: bytes


class _RawBody(msgspec.Struct, frozen=True):
    repos: list[msgspec.Raw]


class _RepoName(msgspec.Struct, frozen=True):
    name: str


_raw_body = msgspec.msgpack.Decoder(_RawBody)
_repo_name = msgspec.msgpack.Decoder(_RepoName)
_entries = msgspec.msgpack.Decoder(list[tuple[str, int, int]])


class SnapshotIndexError(TrustlogError):
    """The index cannot be used (the reader then loads the whole snapshot body)."""


def index_path(snapshot_path: Path) -> Path:
    return snapshot_path.with_suffix(SUFFIX)


def _array_header_len(body: bytes, at: int) -> int:
    b = body[at]
    if 0x90 <= b <= 0x9F:
        return 1
    if b == 0xDC:
        return 3
    if b == 0xDD:
        return 5
    raise EncodingError("the snapshot body does not hold an array of repositories")


def write_index(snapshot_path: Path, body: bytes, offset: int, key: SigningKey) -> Path:
    """Write the index of the snapshot at ``snapshot_path`` whose body is ``body``."""
    if not body.startswith(_BODY_PREFIX):
        raise EncodingError("the snapshot body does not start with its repositories")
    pos = len(_BODY_PREFIX) + _array_header_len(body, len(_BODY_PREFIX))
    entries = []
    for raw in _raw_body.decode(body).repos:
        n = len(memoryview(raw))
        entries.append((_repo_name.decode(raw).name, pos, pos + n))
        pos += n
    if pos != len(body):
        raise EncodingError(f"the repositories end at byte {pos} of a body of {len(body)}")
    blob = msgspec.msgpack.encode(entries)
    mv = memoryview(body)
    header = IndexHeader(
        format=1, snapshot_offset=offset, body_len=len(body), body_sha256=hashlib.sha256(body).digest(),
        chunk_bytes=CHUNK_BYTES,
        chunks=[hashlib.sha256(mv[i:i + CHUNK_BYTES]).digest() for i in range(0, len(body), CHUNK_BYTES)],
        entries_len=len(blob), entries_sha256=hashlib.sha256(blob).digest())
    hb = canonical_bytes(header)
    signed = canonical_bytes(SignedIndexHeader(hb, key.keyid, key.sign(CONTEXT + hb)))
    path = index_path(snapshot_path)
    write_signed_file(path, MAGIC, signed, blob)
    return path


def load_repos(snapshot_path: Path, body_start: int, body_len: int, body_sha256: bytes, offset: int,
               key: PublicKey, names: Iterable[str]) -> dict[str, RepoState]:
    """The repositories ``names`` (those the snapshot has) from the snapshot at
    ``snapshot_path`` (whose signed header says ``body_len``, ``body_sha256``, ``offset``;
    its body starts at byte ``body_start``), through its index. Raises
    :class:`SnapshotIndexError` when the index is missing or does not check out."""
    path = index_path(snapshot_path)
    try:
        with open(path, "rb") as f:
            raw, _ = read_signed_header(f, MAGIC, "snapshot index", 16 << 20)
            signed = decode_canonical(raw, SignedIndexHeader)
            if signed.keyid != key.keyid:
                raise SnapshotIndexError(f"{path.name}: signed by another key than the log key")
            key.verify(CONTEXT + signed.header, signed.sig)
            h = decode_canonical(signed.header, IndexHeader)
            if (h.snapshot_offset, h.body_len, h.body_sha256) != (offset, body_len, body_sha256):
                raise SnapshotIndexError(f"{path.name}: belongs to another snapshot")
            blob = f.read(h.entries_len)
    except FileNotFoundError:
        raise SnapshotIndexError(f"{path.name}: no index") from None
    except OSError as e:
        raise SnapshotIndexError(f"{path.name}: {e}") from e
    except TrustlogError as e:
        raise SnapshotIndexError(f"{path.name}: {e}") from e
    if len(blob) != h.entries_len or hashlib.sha256(blob).digest() != h.entries_sha256:
        raise SnapshotIndexError(f"{path.name}: entries do not match their digest")
    if h.chunk_bytes <= 0 or len(h.chunks) != -(-h.body_len // h.chunk_bytes):
        raise SnapshotIndexError(f"{path.name}: chunk table does not cover the body")
    want = set(names)
    ranges = sorted((s, e, name) for name, s, e in _entries.decode(blob) if name in want)
    out: dict[str, RepoState] = {}
    cb = h.chunk_bytes
    verified: dict[int, bytes] = {}  # chunk index -> its checked bytes (ranges are visited in order)
    with open(snapshot_path, "rb") as f:
        for s, e, name in ranges:
            if not 0 <= s < e <= h.body_len:
                raise SnapshotIndexError(f"{path.name}: range of {name!r} is outside the body")
            c0, c1 = s // cb, (e - 1) // cb
            for c in [c for c in verified if c < c0]:
                del verified[c]
            parts = []
            for c in range(c0, c1 + 1):
                chunk = verified.get(c)
                if chunk is None:
                    f.seek(body_start + c * cb)
                    chunk = f.read(min(cb, h.body_len - c * cb))
                    if hashlib.sha256(chunk).digest() != h.chunks[c]:
                        raise SnapshotIndexError(f"{snapshot_path.name}: chunk {c} does not match its digest")
                    verified[c] = chunk
                parts.append(chunk)
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            try:
                repo = decode_repo(memoryview(data)[s - c0 * cb:e - c0 * cb])
            except (msgspec.ValidationError, msgspec.DecodeError, TrustlogError) as err:
                raise SnapshotIndexError(f"{path.name}: {name!r} does not decode: {err}") from err
            if repo.name != name:
                raise SnapshotIndexError(f"{path.name}: the range of {name!r} holds {repo.name!r}")
            out[name] = repo
    return out
