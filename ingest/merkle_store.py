"""On-disk RFC 9162 Merkle tree for one log directory, and its signed checkpoints.

Layout (all append-only, 32-byte hashes, no headers)::

    leaves.hashes      level 0: leaf hash i at byte 32*i
    level-01.hashes    level k: hash of the aligned perfect subtree of 2**k leaves
    level-02.hashes             covering leaves [i << k, (i + 1) << k), at byte 32*i
    ...
    checkpoints.log    frames: u32 length, u32 CRC32C, canonical SignedCheckpoint
    sums.dat           the checksum of every level file: the tree size at the last
                       checkpoint and, per level, the CRC-32C of its first size >> k hashes

Level ``k`` holds exactly ``size >> k`` hashes, so all levels together take about twice
the leaf file. Appends compute the new perfect subtrees incrementally (one hash per leaf
on average); any root or proof is then O(log² n) positioned reads (``core.merkle``).

Recovery on :meth:`MerkleStore.open`: a torn partial hash at the end of a file is cut;
``size`` is the number of whole leaf hashes, which the log compares with its own record
count and re-appends what is missing. A level file shorter than ``size >> k`` is rebuilt
from the level below (ultimately from the leaf hashes), a longer one is cut. What was
repaired is listed in :attr:`MerkleStore.repairs`.

The level files carry their checksums in ``sums.dat`` (written with every checkpoint;
each level's CRC is kept running as hashes are appended). :meth:`MerkleStore.check`
compares them, so a flipped or edited hash anywhere, a leaf or an inner node that is no
peak, is found on open; the caller rebuilds the tree from the segments
(:meth:`MerkleStore.rebuild`). ``read_only`` opens repair in memory only and write nothing.

A checkpoint frame is torn only when it is the last one and incomplete (short header,
short payload) or zero-filled (written space a crash left unfilled): the writer cuts it.
A complete last frame that fails its CRC or does not decode is tampering and is kept:
the store refuses to open (:class:`~trustlog.core.errors.LogCorruptionError`).
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
    decode_checkpoint,
    decode_signed_checkpoint,
    encode_signed_checkpoint,
)
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

from . import fold_backend
from .closing import Closing

LEAVES_FILE: Final = "leaves.hashes"
CHECKPOINTS_FILE: Final = "checkpoints.log"
SUMS_FILE: Final = "sums.dat"
_SUMS_HEAD: Final = struct.Struct(">8sQI")  # magic, tree size, number of levels
_SUMS_MAGIC: Final = b"TLMSUM01"
_LEVEL_RE: Final = re.compile(r"level-([0-9]{2})\.hashes")
_FRAME: Final = struct.Struct(">II")  # payload length, CRC32C of payload
MAX_CHECKPOINT_BYTES: Final = 64 * 1024
_REBUILD_CHUNK: Final = 1 << 16  # nodes per read while rebuilding a level


def level_file_name(level: int) -> str:
    return LEAVES_FILE if level == 0 else f"level-{level:02d}.hashes"


def _write_all(fd: int, data: bytes | bytearray | memoryview, path: Path | None = None) -> None:
    """Write everything; an error names ``path`` (a full disk must say where)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as e:
        if path is None or e.filename:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e


class _HashFile:
    """One append-only file of 32-byte hashes with a write buffer in front of it."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if read_only:
            try:
                self.fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                self.fd = -1
        else:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.on_disk, self.torn_bytes = divmod(os.fstat(self.fd).st_size if self.fd >= 0 else 0, HASH_SIZE)
        self.pending = bytearray()
        if self.torn_bytes and not read_only:
            os.ftruncate(self.fd, self.on_disk * HASH_SIZE)
        self.crc = self._crc_of(self.on_disk)

    def _crc_of(self, count: int) -> int:
        """CRC-32C of the first ``count`` hashes on disk."""
        crc, pos, end = 0, 0, count * HASH_SIZE
        while pos < end:
            chunk = os.pread(self.fd, min(1 << 22, end - pos), pos)
            if not chunk:
                raise LogError(f"{self.path} ends before hash {pos // HASH_SIZE}: was it truncated while open?")
            crc = crc32c.crc32c(chunk, crc)
            pos += len(chunk)
        return crc

    def crc_at(self, count: int) -> int:
        """CRC-32C of the first ``count`` hashes (flushed or pending)."""
        if count == self.on_disk:
            return self.crc
        if count < self.on_disk:
            return self._crc_of(count)
        return crc32c.crc32c(bytes(self.pending[:(count - self.on_disk) * HASH_SIZE]), self.crc)

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
            self.crc = self._crc_of(count)
            if not self.read_only:  # read-only: the hashes past ``count`` are ignored, not cut
                os.ftruncate(self.fd, count * HASH_SIZE)
            self.on_disk = count

    def write_pending(self) -> None:
        if self.pending and not self.read_only:
            os.lseek(self.fd, self.on_disk * HASH_SIZE, os.SEEK_SET)
            _write_all(self.fd, self.pending, self.path)
            self.crc = crc32c.crc32c(bytes(self.pending), self.crc)
            self.on_disk += len(self.pending) // HASH_SIZE
            self.pending.clear()

    def fsync(self) -> None:
        if not self.read_only:
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class MerkleStore(Closing):
    """The Merkle tree of one log, persisted per level. Not thread-safe: one writer.

    It is a ``core.merkle.NodeSource``: :meth:`node` answers ``(level, index)`` from
    the level files (or the unflushed buffer), so proofs never touch more than
    O(log² n) hashes.
    """

    def __init__(self, directory: Path, levels: list[_HashFile], repairs: list[str], read_only: bool = False,
                 checkpoints: CheckpointStore | None = None) -> None:
        self.directory = directory
        self.read_only = read_only
        self._levels = levels
        self._range = CompactRange.from_peaks(levels[0].count, self._peaks(levels[0].count))
        self.checkpoints = checkpoints or CheckpointStore.open(directory / CHECKPOINTS_FILE, read_only=read_only)
        self.repairs: tuple[str, ...] = tuple(repairs) + self.checkpoints.repairs

    # --- opening and recovery -----------------------------------------------------

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, read_only: bool = False) -> MerkleStore:
        """Open (creating if needed) the tree in ``directory`` and repair torn tails
        (with ``read_only``, in memory only: nothing is created or written)."""
        path = Path(directory)
        if not read_only:
            path.mkdir(parents=True, exist_ok=True)
        # Checkpoints first: a writer may be appending (readers take no lock), and the
        # level files read after them hold at least every hash a checkpoint signed.
        checkpoints = CheckpointStore.open(path / CHECKPOINTS_FILE, read_only=read_only)
        repairs: list[str] = []
        levels = [_HashFile(path / LEAVES_FILE, read_only)]
        cut = "ignored" if read_only else "cut"
        if levels[0].torn_bytes:
            repairs.append(f"{LEAVES_FILE}: {cut} a torn partial hash of {levels[0].torn_bytes} bytes")
        size = levels[0].count
        top = max([size.bit_length() - 1, *cls._existing_levels(path)])
        for level in range(1, top + 1):
            levels.append(cls._open_level(path, level, levels[level - 1], size >> level, repairs, read_only))
        while len(levels) > 1 and levels[-1].count == 0:  # keep no empty top levels open
            levels.pop().close()
        for f in levels:
            f.write_pending()
            if repairs:
                f.fsync()
        return cls(path, levels, repairs, read_only, checkpoints)

    @staticmethod
    def _existing_levels(path: Path) -> list[int]:
        if not path.is_dir():
            return []
        found = (_LEVEL_RE.fullmatch(p.name) for p in path.iterdir())
        return [int(m.group(1)) for m in found if m]

    @staticmethod
    def _open_level(path: Path, level: int, below: _HashFile, expected: int, repairs: list[str],
                    read_only: bool = False) -> _HashFile:
        f = _HashFile(path / level_file_name(level), read_only)
        name = f.path.name
        if f.torn_bytes:
            repairs.append(f"{name}: {'ignored' if read_only else 'cut'} a torn partial hash of {f.torn_bytes} bytes")
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
        if _COMPACT is not None and isinstance(leaf_hashes, (bytes, bytearray)):
            return self._append_packed(leaf_hashes)
        hashes = _as_hash_list(leaf_hashes)
        pending = self._levels[0].pending
        add = self._range.append
        on_node = self._store_node
        for h in hashes:
            pending += h
            add(h, on_node)
        return self.size

    def _append_packed(self, packed: bytes | bytearray) -> int:
        """:meth:`append` of packed hashes in one call into C (``_fastfold.compact_append``):
        the same leaves, the same nodes on every level, the same peaks."""
        if len(packed) % HASH_SIZE:
            raise TreeRangeError(f"packed leaf hashes must be a multiple of {HASH_SIZE} bytes, got {len(packed)}")
        peaks = list(self._range.peaks)
        nodes: list[bytearray] = []
        size = _COMPACT.compact_append(peaks, self._range.size, packed, nodes)
        self._levels[0].pending += packed
        for level in range(1, len(nodes)):
            if level == len(self._levels):
                self._levels.append(_HashFile(self.directory / level_file_name(level), self.read_only))
            self._levels[level].pending += nodes[level]
        self._range = CompactRange.from_peaks(size, peaks)
        return size

    def append_leaves(self, entries: Iterable[bytes]) -> int:
        """Hash each entry as an RFC 9162 leaf and append it; return the new size."""
        return self.append(leaf_hash(e) for e in entries)

    def _store_node(self, level: int, h: bytes) -> None:
        if level == len(self._levels):
            self._levels.append(_HashFile(self.directory / level_file_name(level), self.read_only))
        self._levels[level].pending += h

    def flush(self, fsync: bool = True) -> None:
        """Write buffered hashes, leaves first; with ``fsync`` make them durable."""
        for f in self._levels:
            f.write_pending()
        if fsync:
            for f in self._levels:
                f.fsync()

    # --- checksums and rebuilding -------------------------------------------------

    def sums_bytes(self) -> bytes:
        """The content of ``sums.dat`` for the tree as it is now."""
        size = self.size
        body = _SUMS_HEAD.pack(_SUMS_MAGIC, size, len(self._levels))
        body += b"".join(struct.pack(">I", f.crc_at(size >> k)) for k, f in enumerate(self._levels))
        return body + struct.pack(">I", crc32c.crc32c(body))

    def write_sums(self) -> None:
        """Record every level file's checksum (atomically; not fsynced: on a crash the
        next open finds it stale and checks the levels by rehashing instead)."""
        if self.read_only:
            return
        tmp = self.directory / (SUMS_FILE + ".tmp")
        tmp.write_bytes(self.sums_bytes())
        os.replace(tmp, self.directory / SUMS_FILE)

    def check(self, size: int) -> list[str]:
        """What is wrong with the first ``size`` leaves and the levels above them: []
        when every level file matches its checksum in ``sums.dat`` (or, without a usable
        ``sums.dat`` for this size, the hash of its children). Each problem names its file.
        A damaged ``sums.dat`` over level files that match their children is no problem
        of the tree: it is noted in :attr:`sums_problem` (the writer rewrites the file)."""
        problems: list[str] = []
        self.sums_problem = None
        if self.size < size:
            return [f"{LEAVES_FILE} holds {self.size} leaf hashes, {size} are signed"]
        if self.read_only:  # a writer fills missing hashes on open; a reader only in memory
            for k, f in enumerate(self._levels):
                if f.on_disk < size >> k:
                    problems.append(f"{level_file_name(k)} holds {f.on_disk} hashes, {size >> k} are signed")
            if problems:
                return problems
        try:
            data = (self.directory / SUMS_FILE).read_bytes()
        except FileNotFoundError:
            data = b""
        sums: list[int] | None = None
        if len(data) >= _SUMS_HEAD.size + 4 and crc32c.crc32c(data[:-4]) == struct.unpack(">I", data[-4:])[0]:
            magic, sums_size, n = _SUMS_HEAD.unpack_from(data)
            if magic == _SUMS_MAGIC and sums_size == size and len(data) == _SUMS_HEAD.size + 4 * n + 4:
                sums = list(struct.unpack_from(f">{n}I", data, _SUMS_HEAD.size))
        elif data:
            self.sums_problem = f"{SUMS_FILE} fails its own CRC"
        if sums is not None:
            want = size.bit_length()
            for k in range(max(want, len(sums))):
                if k >= len(self._levels) or k >= len(sums):
                    if size >> k:
                        problems.append(f"{level_file_name(k)}: no checksum or no file for level {k}")
                    continue
                if self._levels[k].crc_at(min(size >> k, self._levels[k].count)) != sums[k] or \
                        self._levels[k].count < size >> k:
                    problems.append(f"{level_file_name(k)} does not match its checksum in {SUMS_FILE}")
            return problems
        try:
            self.verify_integrity(size)
        except LogCorruptionError as e:
            problems.append(f"{e.segment}: {e.detail}")
        return problems

    sums_problem: str | None = None
    """Set by :meth:`check`: what is wrong with ``sums.dat`` itself, if anything."""

    def rebuild(self, leaf_hashes: Iterable[bytes]) -> None:
        """Replace the whole tree by one over ``leaf_hashes`` (taken from the segments,
        the truth); with ``read_only``, in memory. The caller checks the new root
        against the signed checkpoints; the checkpoints are kept."""
        for f in self._levels:
            f.truncate(0)
        self._range = CompactRange()
        for chunk in _batched(leaf_hashes, _REBUILD_CHUNK):
            self.append(chunk)
        self.flush(fsync=not self.read_only)
        self.write_sums()

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
        if not (start >= 0 and count >= 0 and start + count <= self.size):
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

    def verify_integrity(self, size: int | None = None) -> None:
        """Recompute every level (of the first ``size`` leaves, default all) from the
        leaf hashes and compare (O(n) hashes).

        Raises :class:`LogCorruptionError` at the first stored hash that differs.
        """
        size = self.size if size is None else size
        for level in range(1, len(self._levels)):
            below, f = self._levels[level - 1], self._levels[level]
            count = min(f.count, size >> level)
            for start in range(0, count, _REBUILD_CHUNK):
                n = min(_REBUILD_CHUNK, count - start)
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
        cp = decode_checkpoint(signed.checkpoint)
        if cp.tree_size > self.size:
            raise LogError(f"checkpoint names {cp.tree_size} leaves; the tree has {self.size}")
        if cp.root_hash != self.root_at(cp.tree_size):
            raise LogError(f"checkpoint root for size {cp.tree_size} does not match the stored tree")
        self.flush(fsync=True)
        self.checkpoints.append(signed)
        if cp.tree_size == self.size:
            self.write_sums()
        return cp

    def close(self, fsync: bool = True) -> None:
        self.flush(fsync and not self.read_only)
        for f in self._levels:
            f.close()
        self.checkpoints.close()


_COMPACT = fold_backend.compiled  # _fastfold.compact_append; None: the Python CompactRange per leaf


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


def _batched(hashes: Iterable[bytes], n: int) -> Iterator[bytes]:
    buf = bytearray()
    for h in hashes:
        buf += h
        if len(buf) >= n * HASH_SIZE:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


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
        self.read_only = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False) -> CheckpointStore:
        """Open (creating) ``path``; cut a torn last frame (read-only: leave it and
        ignore it), refuse a damaged frame that is not a torn write."""
        p = Path(path)
        if read_only:
            try:
                fd = os.open(p, os.O_RDONLY)
            except FileNotFoundError:
                fd = os.open("/dev/null", os.O_RDONLY)
        else:
            fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        count, latest, end, repairs = 0, None, 0, []
        try:
            for end, signed in _scan_frames(p, fd, repairs):  # noqa: B007 - `end` is read after the loop
                count, latest = count + 1, signed
        except BaseException:
            os.close(fd)
            raise
        if repairs and not read_only:
            os.ftruncate(fd, end)
            os.fsync(fd)
        store = cls(p, fd, count, latest, repairs)
        store.read_only = read_only
        return store

    def __len__(self) -> int:
        return self._count

    def latest(self) -> SignedCheckpoint | None:
        return self._latest

    def latest_checkpoint(self) -> Checkpoint | None:
        """The body of :meth:`latest`, decoded but NOT signature-checked."""
        return None if self._latest is None else decode_checkpoint(self._latest.checkpoint)

    def all(self) -> list[SignedCheckpoint]:
        return list(self)

    def __iter__(self) -> Iterator[SignedCheckpoint]:
        for _end, signed in _scan_frames(self.path, self._fd, []):
            yield signed

    def append(self, signed: SignedCheckpoint, fsync: bool = True) -> None:
        """Append ``signed``; its tree size must not be below the latest one's."""
        if self.read_only:
            raise LogError(f"{self.path} is open read-only")
        cp = decode_checkpoint(signed.checkpoint)
        prev = self.latest_checkpoint()
        if prev is not None and (cp.tree_size < prev.tree_size or cp.origin != prev.origin):
            raise LogError(
                f"checkpoint ({cp.origin!r}, size {cp.tree_size}) cannot follow "
                f"({prev.origin!r}, size {prev.tree_size}): sizes never decrease within one log"
            )
        payload = encode_signed_checkpoint(signed)
        end = os.fstat(self._fd).st_size
        os.lseek(self._fd, end, os.SEEK_SET)
        _write_all(self._fd, _FRAME.pack(len(payload), crc32c.crc32c(payload)) + payload, self.path)
        if fsync:
            os.fsync(self._fd)
        self._count += 1
        self._latest = signed

    def close(self) -> None:
        os.close(self._fd)


def frame_is_torn(data: bytes, off: int) -> str | None:
    """Why the frame at byte ``off`` of a checkpoints file ``data`` is the remains of
    an interrupted write, or None when it is not. Only the last frame can be torn: it is
    incomplete (short header or payload; a length past the end) or every byte from its
    payload on is zero (space a crash left unwritten). A complete frame with other bytes
    that fails its CRC was altered: that is tampering, and it is kept as evidence."""
    size = len(data)
    if size - off < _FRAME.size:
        return f"a {size - off}-byte partial frame header"
    length, _crc = _FRAME.unpack_from(data, off)
    end = off + _FRAME.size + length
    if end > size:
        return f"a frame of {length} bytes cut at {size - off - _FRAME.size}"
    if end == size and data.count(0, off + _FRAME.size) == size - off - _FRAME.size:
        return "a zero-filled last frame"
    return None


def _scan_frames(path: Path, fd: int, repairs: list[str]) -> Iterator[tuple[int, SignedCheckpoint]]:
    """Yield ``(end offset, checkpoint)`` per good frame. A torn last frame (see
    :func:`frame_is_torn`) is noted in ``repairs``; any other bad frame raises."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0) if size else b""
    off = 0
    while off < size:
        torn = frame_is_torn(data, off)
        if torn is not None:
            repairs.append(f"{path.name}: a torn last checkpoint at byte {off} ({torn}; an interrupted write)")
            return
        length, crc = _FRAME.unpack_from(data, off)
        end = off + _FRAME.size + length
        got = "impossible length" if length > MAX_CHECKPOINT_BYTES else _decode_frame(
            data[off + _FRAME.size:end], crc)
        if isinstance(got, str):
            where = "the last checkpoint frame" if end == size else "a checkpoint frame"
            raise LogCorruptionError(
                f"{path.parent.name}/{path.name}", off,
                f"{where} is complete but {got}: the file was altered (a crash leaves a short or zero-filled "
                "frame, not this); it is kept as evidence — run `trustlog log verify`")
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
