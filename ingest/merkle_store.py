"""On-disk RFC 9162 Merkle tree for one log directory, and its signed checkpoints.

Layout (all append-only, 32-byte hashes, no headers)::

    leaves.hashes      level 0: leaf hash i at byte 32*i
    level-01.hashes    level k: hash of the aligned perfect subtree of 2**k leaves
    level-02.hashes             covering leaves [i << k, (i + 1) << k), at byte 32*i
    ...
    checkpoints.log    frames: u32 length, u32 CRC32C, canonical SignedCheckpoint

Level ``k`` holds exactly ``size >> k`` hashes, so all levels together take about twice
the leaf file. Appends compute the new perfect subtrees incrementally (one hash per leaf
on average); any root or proof is then O(log² n) positioned reads (``core.merkle``).

Recovery on :meth:`MerkleStore.open`: a torn partial hash at the end of a file is cut;
``size`` is the number of whole leaf hashes, which the log compares with its own record
count and re-appends what is missing. A level file shorter than ``size >> k`` is rebuilt
from the level below (ultimately from the leaf hashes), a longer one is cut. What was
repaired is listed in :attr:`MerkleStore.repairs`.
"""
from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import crc32c
from trustlog.core.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    decode_signed_checkpoint,
    encode_signed_checkpoint,
)
from trustlog.core.encoding import decode_canonical
from trustlog.core.errors import EncodingError, LogCorruptionError, LogError
from trustlog.core.merkle import (
    HASH_SIZE,
    CompactRange,
    TreeRangeError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    subtree_root,
)

LEAVES_FILE: Final = "leaves.hashes"
CHECKPOINTS_FILE: Final = "checkpoints.log"
_LEVEL_RE: Final = re.compile(r"level-([0-9]{2})\.hashes")
_FRAME: Final = struct.Struct(">II")  # payload length, CRC32C of payload
MAX_CHECKPOINT_BYTES: Final = 64 * 1024
_REBUILD_CHUNK: Final = 1 << 16  # nodes per read while rebuilding a level


def level_file_name(level: int) -> str:
    return LEAVES_FILE if level == 0 else f"level-{level:02d}.hashes"


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _HashFile:
    """One append-only file of 32-byte hashes with a write buffer in front of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.on_disk, self.torn_bytes = divmod(os.fstat(self.fd).st_size, HASH_SIZE)
        self.pending = bytearray()
        if self.torn_bytes:
            os.ftruncate(self.fd, self.on_disk * HASH_SIZE)

    @property
    def count(self) -> int:
        return self.on_disk + len(self.pending) // HASH_SIZE

    def get(self, index: int) -> bytes:
        if index < self.on_disk:
            h = os.pread(self.fd, HASH_SIZE, index * HASH_SIZE)
            if len(h) != HASH_SIZE:
                raise LogError(f"{self.path} ends before hash {index}: was it truncated while open?")
            return h
        off = (index - self.on_disk) * HASH_SIZE
        return bytes(self.pending[off:off + HASH_SIZE])

    def read_range(self, start: int, count: int) -> bytes:
        """``count`` consecutive hashes from ``start`` (for rebuilds)."""
        if start + count <= self.on_disk:
            return os.pread(self.fd, count * HASH_SIZE, start * HASH_SIZE)
        return b"".join(self.get(i) for i in range(start, start + count))

    def truncate(self, count: int) -> None:
        if count >= self.on_disk:
            del self.pending[(count - self.on_disk) * HASH_SIZE:]
        else:
            self.pending.clear()
            os.ftruncate(self.fd, count * HASH_SIZE)
            self.on_disk = count

    def write_pending(self) -> None:
        if self.pending:
            os.lseek(self.fd, self.on_disk * HASH_SIZE, os.SEEK_SET)
            _write_all(self.fd, self.pending)
            self.on_disk += len(self.pending) // HASH_SIZE
            self.pending.clear()

    def close(self) -> None:
        os.close(self.fd)


class MerkleStore:
    """The Merkle tree of one log, persisted per level. Not thread-safe: one writer.

    It is a ``core.merkle.NodeSource``: :meth:`node` answers ``(level, index)`` from
    the level files (or the unflushed buffer), so proofs never touch more than
    O(log² n) hashes.
    """

    def __init__(self, directory: Path, levels: list[_HashFile], repairs: list[str]) -> None:
        self.directory = directory
        self._levels = levels
        self._range = CompactRange.from_peaks(levels[0].count, self._peaks(levels[0].count))
        self.checkpoints = CheckpointStore.open(directory / CHECKPOINTS_FILE)
        self.repairs: tuple[str, ...] = tuple(repairs) + self.checkpoints.repairs

    # --- opening and recovery -----------------------------------------------------

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> MerkleStore:
        """Open (creating if needed) the tree in ``directory`` and repair torn tails."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        repairs: list[str] = []
        levels = [_HashFile(path / LEAVES_FILE)]
        if levels[0].torn_bytes:
            repairs.append(f"{LEAVES_FILE}: cut a torn partial hash of {levels[0].torn_bytes} bytes")
        size = levels[0].count
        top = max([size.bit_length() - 1, *cls._existing_levels(path)])
        for level in range(1, top + 1):
            levels.append(cls._open_level(path, level, levels[level - 1], size >> level, repairs))
        while len(levels) > 1 and levels[-1].count == 0:  # keep no empty top levels open
            levels.pop().close()
        for f in levels:
            f.write_pending()
            if repairs:
                os.fsync(f.fd)
        return cls(path, levels, repairs)

    @staticmethod
    def _existing_levels(path: Path) -> list[int]:
        found = (_LEVEL_RE.fullmatch(p.name) for p in path.iterdir())
        return [int(m.group(1)) for m in found if m]

    @staticmethod
    def _open_level(path: Path, level: int, below: _HashFile, expected: int, repairs: list[str]) -> _HashFile:
        f = _HashFile(path / level_file_name(level))
        name = f.path.name
        if f.torn_bytes:
            repairs.append(f"{name}: cut a torn partial hash of {f.torn_bytes} bytes")
        if f.count > expected:
            repairs.append(f"{name}: cut {f.count - expected} hashes beyond the {expected} the leaves support")
            f.truncate(expected)
        elif f.count < expected:
            repairs.append(f"{name}: rebuilt {expected - f.count} missing hashes from level {level - 1}")
            _rebuild(f, below, expected)
        return f

    def _peaks(self, size: int) -> list[bytes]:
        """The perfect subtrees of ``MTH(D[size])``, largest first (for CompactRange)."""
        return [self.node(b, (size >> b) - 1) for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]

    # --- appending ----------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._range.size

    def append(self, leaf_hashes: Iterable[bytes] | bytes | bytearray | memoryview) -> int:
        """Append leaf hashes (already ``leaf_hash``-ed); return the new size.

        A single bytes-like object is taken as packed hashes, 32 bytes each, so both
        ``append(h)`` and ``append(b"".join(hs))`` work. Nothing is durable before
        :meth:`flush`.
        """
        hashes = _as_hash_list(leaf_hashes)
        pending = self._levels[0].pending
        add = self._range.append
        on_node = self._store_node
        for h in hashes:
            pending += h
            add(h, on_node)
        return self.size

    def append_leaves(self, entries: Iterable[bytes]) -> int:
        """Hash each entry as an RFC 9162 leaf and append it; return the new size."""
        return self.append(leaf_hash(e) for e in entries)

    def _store_node(self, level: int, h: bytes) -> None:
        if level == len(self._levels):
            self._levels.append(_HashFile(self.directory / level_file_name(level)))
        self._levels[level].pending += h

    def flush(self, fsync: bool = True) -> None:
        """Write buffered hashes, leaves first; with ``fsync`` make them durable."""
        for f in self._levels:
            f.write_pending()
        if fsync:
            for f in self._levels:
                os.fsync(f.fd)

    def truncate(self, size: int) -> None:
        """Forget leaves from ``size`` on, for recovery when the log itself lost a torn
        tail. Refused below the latest signed checkpoint: that would fork the log."""
        latest = self.checkpoints.latest_checkpoint()
        if latest is not None and size < latest.tree_size:
            raise LogError(
                f"refusing to cut the Merkle tree to {size} leaves: checkpoint at {latest.tree_size} "
                "was signed over them. Restore the log from a replica instead."
            )
        if not 0 <= size <= self.size:
            raise TreeRangeError(f"cannot truncate a tree of {self.size} leaves to {size}")
        for level, f in enumerate(self._levels):
            f.truncate(size >> level)
        self._range = CompactRange.from_peaks(size, self._peaks(size))

    # --- reading ------------------------------------------------------------------

    def node(self, level: int, index: int) -> bytes:
        """Hash of the aligned perfect subtree ``(level, index)``."""
        if not (0 <= level < len(self._levels) and 0 <= index < self._levels[level].count):
            raise TreeRangeError(
                f"no complete subtree ({level}, {index}) in a tree of {self._levels[0].count} leaves"
            )
        return self._levels[level].get(index)

    def leaf_hash(self, index: int) -> bytes:
        return self.node(0, index)

    def leaf_hashes(self, start: int, count: int) -> bytes:
        """``count`` consecutive leaf hashes from ``start``, packed (bulk reads)."""
        if not (0 <= start and 0 <= count and start + count <= self.size):
            raise TreeRangeError(f"leaves [{start}, {start + count}) are outside a tree of {self.size} leaves")
        return self._levels[0].read_range(start, count)

    def root(self) -> bytes:
        """``MTH(D[size])`` of the whole tree (RFC 9162 §2.1.1)."""
        return self._range.root()

    def root_at(self, size: int) -> bytes:
        """``MTH(D[size])`` of the first ``size`` leaves."""
        if not 0 <= size <= self.size:
            raise TreeRangeError(f"tree size {size} is outside 0..{self.size}")
        return subtree_root(0, size, self)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1 audit path of leaf ``index`` in the tree of ``size``
        (default: the whole tree) leaves."""
        return inclusion_proof(index, self.size if size is None else size, self)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4.1 proof that ``new_size`` (default: now) extends ``old_size``."""
        return consistency_proof(old_size, self.size if new_size is None else new_size, self)

    def verify_integrity(self) -> None:
        """Recompute every level from the leaf hashes and compare (O(n) hashes).

        Raises :class:`LogCorruptionError` at the first stored hash that differs.
        """
        for level in range(1, len(self._levels)):
            below, f = self._levels[level - 1], self._levels[level]
            for start in range(0, f.count, _REBUILD_CHUNK):
                n = min(_REBUILD_CHUNK, f.count - start)
                want = _parents(below.read_range(2 * start, 2 * n))
                got = f.read_range(start, n)
                if want != got:
                    bad = start + _first_difference(want, got)
                    raise LogCorruptionError(
                        f.path.name, bad * HASH_SIZE,
                        f"subtree hash ({level}, {bad}) is not the hash of its two children in "
                        f"{level_file_name(level - 1)}: one of the two files is damaged",
                    )

    # --- checkpoints --------------------------------------------------------------

    def add_checkpoint(self, signed: SignedCheckpoint) -> Checkpoint:
        """Store a signed checkpoint after checking that it commits to this tree (its
        root is ``root_at(tree_size)``). The signature is the signer's business: check it
        with ``verify_checkpoint`` where the key is known.

        The tree is flushed with fsync first, so a durable checkpoint never names
        leaves that are not durable.
        """
        cp = decode_canonical(signed.checkpoint, Checkpoint)
        if cp.tree_size > self.size:
            raise LogError(f"checkpoint names {cp.tree_size} leaves; the tree has {self.size}")
        if cp.root_hash != self.root_at(cp.tree_size):
            raise LogError(f"checkpoint root for size {cp.tree_size} does not match the stored tree")
        self.flush(fsync=True)
        self.checkpoints.append(signed)
        return cp

    def close(self, fsync: bool = True) -> None:
        self.flush(fsync)
        for f in self._levels:
            f.close()
        self.checkpoints.close()

    def __enter__(self) -> MerkleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_hash_list(leaf_hashes: Iterable[bytes] | bytes | bytearray | memoryview) -> list[bytes]:
    """Validate every hash before any is appended, so a bad one appends nothing."""
    if isinstance(leaf_hashes, (bytes, bytearray, memoryview)):
        packed = bytes(leaf_hashes)
        if len(packed) % HASH_SIZE:
            raise TreeRangeError(f"packed leaf hashes must be a multiple of {HASH_SIZE} bytes, got {len(packed)}")
        return [packed[i:i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)]
    hashes = [bytes(h) for h in leaf_hashes]
    for i, h in enumerate(hashes):
        if len(h) != HASH_SIZE:
            raise TreeRangeError(
                f"leaf hash [{i}] is {len(h)} bytes, not {HASH_SIZE}; use append_leaves() for entry data"
            )
    return hashes


def _parents(children: bytes) -> bytes:
    """Hashes of consecutive pairs in a packed run of child hashes."""
    return b"".join(
        node_hash(children[i:i + HASH_SIZE], children[i + HASH_SIZE:i + 2 * HASH_SIZE])
        for i in range(0, len(children), 2 * HASH_SIZE)
    )


def _first_difference(a: bytes, b: bytes) -> int:
    """Index of the first 32-byte hash at which two packed runs differ."""
    for i in range(0, min(len(a), len(b)), HASH_SIZE):
        if a[i:i + HASH_SIZE] != b[i:i + HASH_SIZE]:
            return i // HASH_SIZE
    return min(len(a), len(b)) // HASH_SIZE


def _rebuild(f: _HashFile, below: _HashFile, expected: int) -> None:
    """Append to ``f`` the parents of ``below`` until it holds ``expected`` hashes."""
    for start in range(f.count, expected, _REBUILD_CHUNK):
        n = min(_REBUILD_CHUNK, expected - start)
        f.pending += _parents(below.read_range(2 * start, 2 * n))


class CheckpointStore:
    """Append-only file of signed checkpoints, CRC-framed, tree sizes never decreasing."""

    def __init__(self, path: Path, fd: int, count: int, latest: SignedCheckpoint | None, repairs: list[str]) -> None:
        self.path = path
        self._fd = fd
        self._count = count
        self._latest = latest
        self.repairs = tuple(repairs)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> CheckpointStore:
        """Open (creating) ``path``; cut a torn last frame, refuse a damaged middle one."""
        p = Path(path)
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        count, latest, end, repairs = 0, None, 0, []
        for end, signed in _scan_frames(p, fd, repairs):
            count, latest = count + 1, signed
        if repairs:
            os.ftruncate(fd, end)
            os.fsync(fd)
        return cls(p, fd, count, latest, repairs)

    def __len__(self) -> int:
        return self._count

    def latest(self) -> SignedCheckpoint | None:
        return self._latest

    def latest_checkpoint(self) -> Checkpoint | None:
        """The body of :meth:`latest`, decoded but NOT signature-checked."""
        return None if self._latest is None else decode_canonical(self._latest.checkpoint, Checkpoint)

    def all(self) -> list[SignedCheckpoint]:
        return list(self)

    def __iter__(self) -> Iterator[SignedCheckpoint]:
        for _end, signed in _scan_frames(self.path, self._fd, []):
            yield signed

    def append(self, signed: SignedCheckpoint, fsync: bool = True) -> None:
        """Append ``signed``; its tree size must not be below the latest one's."""
        cp = decode_canonical(signed.checkpoint, Checkpoint)
        prev = self.latest_checkpoint()
        if prev is not None and (cp.tree_size < prev.tree_size or cp.origin != prev.origin):
            raise LogError(
                f"checkpoint ({cp.origin!r}, size {cp.tree_size}) cannot follow "
                f"({prev.origin!r}, size {prev.tree_size}): sizes never decrease within one log"
            )
        payload = encode_signed_checkpoint(signed)
        end = os.fstat(self._fd).st_size
        os.lseek(self._fd, end, os.SEEK_SET)
        _write_all(self._fd, _FRAME.pack(len(payload), crc32c.crc32c(payload)) + payload)
        if fsync:
            os.fsync(self._fd)
        self._count += 1
        self._latest = signed

    def close(self) -> None:
        os.close(self._fd)


def _scan_frames(path: Path, fd: int, repairs: list[str]) -> Iterator[tuple[int, SignedCheckpoint]]:
    """Yield ``(end offset, checkpoint)`` per good frame. A damaged or incomplete last
    frame is a torn write (noted in ``repairs``); damage before the end is corruption."""
    size = os.fstat(fd).st_size
    off = 0
    while off < size:
        header = os.pread(fd, _FRAME.size, off)
        length, crc = _FRAME.unpack(header) if len(header) == _FRAME.size else (0, 0)
        end = off + _FRAME.size + length
        torn = len(header) < _FRAME.size or end > size or length > MAX_CHECKPOINT_BYTES
        got = "incomplete frame" if torn else _decode_frame(os.pread(fd, length, off + _FRAME.size), crc)
        if isinstance(got, str):
            if torn or end == size:
                repairs.append(f"{path.name}: cut a torn last checkpoint at byte {off} ({got})")
                return
            raise LogCorruptionError(path.name, off, got)
        yield end, got
        off = end


def _decode_frame(payload: bytes, crc: int) -> SignedCheckpoint | str:
    """The checkpoint in a frame, or what is wrong with it."""
    if crc32c.crc32c(payload) != crc:
        return "CRC32C mismatch"
    try:
        return decode_signed_checkpoint(payload)
    except EncodingError as e:
        return f"undecodable checkpoint: {e}"
