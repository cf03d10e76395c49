"""Persistent, append-only indexes of one log: key id → offsets, repository → offsets.

An audit ("what did key K sign?") reads only K's postings and the records they name,
never the whole log. Layout of ``DIR/index/``::

    postings.dat   blocks, appended when enough entries are buffered (and at every
                   checkpoint), one per name touched since: header (name id u32, count u32, previous block u64, CRC-32C
                   u32) then ``count`` entries of 24 bytes. A name's blocks form a chain
                   from its newest block backwards, so a lookup reads one chain.
    names.dat      the names, one per line, in id order ("k:" + key id, "r:" + repo).
    heads.dat      written atomically at checkpoints and on close: the log offset the
                   index covers, the sizes of the two files above at that moment, and
                   the newest block of every name (u64 little-endian each), with a CRC-32C.

Both data files are only appended to. On open, ``heads.dat`` says how much of them is
valid: anything after is cut (an unfinished batch), and the caller re-indexes the log
from :attr:`LogIndex.covered` on. A missing or damaged ``heads.dat`` means the index is
rebuilt from offset 0 — it is derived data, never the source of truth.

Entries (``>QQII``): ``offset, log_time, a, b``.

* repository postings: ``a`` is the grant id of the authority that signed the event
  (``NO_GRANT`` for a repository's self-signed creation), ``b`` the event kind code;
* key postings: ``a`` is the name id of the repository, ``b`` is ``flags | kind << 8``
  where flags say whether the key signed the event (:data:`SIGNED`) and/or was given
  authority by it (:data:`GRANTED`).
"""
from __future__ import annotations

import os
import struct
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Final, NamedTuple

import crc32c

from trustlog.core.errors import LogError
from trustlog.core.events import (
    EVENT_KINDS, Envelope, Event, KeyCompromised, MetadataImported, RepoCreated, RoleKeysSet, RoleRemoved,
    RootRotated,
)
from trustlog.core.state import TrustState

POSTINGS_FILE: Final = "postings.dat"
NAMES_FILE: Final = "names.dat"
HEADS_FILE: Final = "heads.dat"

SIGNED: Final = 1
GRANTED: Final = 2
NO_GRANT: Final = 0xFFFFFFFF
KIND_CODE: Final[dict[str, int]] = {k: i for i, k in enumerate(EVENT_KINDS)}

_BLOCK: Final = struct.Struct(">IIQI")      # name id, count, previous block (or NONE), CRC of entries
_ENTRY: Final = struct.Struct(">QQII")
_HEADS_HEAD: Final = struct.Struct(">8sQQQQ")  # magic, covered offset, postings bytes, names count, names bytes
_HEADS_MAGIC: Final = b"TLIDX001"
_NONE: Final = 0xFFFFFFFFFFFFFFFF
FLUSH_ENTRIES: Final = 1 << 18   # entries buffered before blocks are written (bounds memory)


class Posting(NamedTuple):
    offset: int
    log_time: int
    a: int
    b: int

    @property
    def kind(self) -> str:
        return EVENT_KINDS[(self.b >> 8) & 0xFF]


def key_name(keyid: str) -> str:
    return "k:" + keyid


def repo_name(repo: str) -> str:
    return "r:" + repo


def event_postings(state: TrustState, env: Envelope, event: Event) -> tuple[int, list[tuple[str, int]]]:
    """What one event adds to the indexes, computed from the state *before* it is
    applied: the grant id of the authority that signed it, and ``(key id, flags)`` for
    every key that signed it (a signature by a key of the signing authority, which the
    fold verified) or was given authority by it."""
    repo = state.repos.get(event.repo)
    signer_keys: set[str] = set()
    granted: list[str] = []
    grant = NO_GRANT
    roles = repo.roles if repo is not None else {}
    grants = repo.grants if repo is not None else []
    if isinstance(event, MetadataImported):   # signed inside the publisher's metadata
        from trustlog.core.tuf_fold import imported_postings

        gid, signed, granted = imported_postings(state, event)
        flags: dict[str, int] = {k: SIGNED for k in signed}
        for k in granted:
            flags[k] = flags.get(k, 0) | GRANTED
        return (NO_GRANT if gid is None else gid), list(flags.items())
    if isinstance(event, RepoCreated):
        signer_keys = {k.keyid for k in event.root_keys}
        granted = [k.keyid for k in (*event.root_keys, *event.targets_keys)]
    elif isinstance(event, RootRotated):
        gid = roles.get("root")
        if gid is not None:
            grant = gid
            signer_keys = set(grants[gid].keyids)
        signer_keys |= {k.keyid for k in event.root_keys}
        granted = [k.keyid for k in event.root_keys]
    elif isinstance(event, KeyCompromised):
        root, targets = roles.get("root"), roles.get("targets")
        root_keys = set(grants[root].keyids) if root is not None else set()
        sig_ids = {s.keyid for s in env.signatures}
        if root is not None and sig_ids & root_keys:
            grant = root
        elif targets is not None:
            grant = targets
        signer_keys = root_keys | (set(grants[targets].keyids) if targets is not None else set())
    else:
        if isinstance(event, RoleKeysSet):
            parent = "root" if event.role == "targets" else "targets"
            granted = [k.keyid for k in event.keys]
        elif isinstance(event, RoleRemoved):
            parent = "targets"
        else:  # ImageSigned, TagDeleted
            parent = event.role
        gid = roles.get(parent)
        if gid is not None:
            grant = gid
            signer_keys = set(grants[gid].keyids)
    out: dict[str, int] = {}
    for s in env.signatures:
        if s.keyid in signer_keys:
            out[s.keyid] = SIGNED
    for k in granted:
        out[k] = out.get(k, 0) | GRANTED
    return grant, list(out.items())


class LogIndex:
    """The two indexes of one log directory. Not thread-safe: one writer."""

    def __init__(self, directory: Path) -> None:
        """Use :meth:`open`."""
        self.directory = directory
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        self.heads = array("Q")
        self.covered = 0            # every record below this offset is indexed
        self.rebuilt_from: int | None = None
        self._pending: dict[int, list[bytes]] = {}
        self._pending_count = 0
        self._pending_names: list[str] = []
        self._pfd = -1
        self._nfd = -1
        self._psize = 0
        self._nsize = 0
        self._covered_flushed = 0

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> LogIndex:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        idx = cls(d)
        idx._pfd = os.open(d / POSTINGS_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        idx._nfd = os.open(d / NAMES_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if not idx._load_heads():
            idx._reset()
        return idx

    def _load_heads(self) -> bool:
        try:
            data = (self.directory / HEADS_FILE).read_bytes()
        except FileNotFoundError:
            return False
        if len(data) < _HEADS_HEAD.size + 4 or crc32c.crc32c(data[:-4]) != struct.unpack(">I", data[-4:])[0]:
            return False
        magic, covered, psize, ncount, nsize = _HEADS_HEAD.unpack_from(data)
        heads = array("Q")
        heads.frombytes(data[_HEADS_HEAD.size:-4])
        if magic != _HEADS_MAGIC or len(heads) != ncount:
            return False
        if os.fstat(self._pfd).st_size < psize or os.fstat(self._nfd).st_size < nsize:
            return False
        names = os.pread(self._nfd, nsize, 0).decode() if nsize else ""
        name_list = names.split("\n")[:-1] if names else []
        if len(name_list) != ncount:
            return False
        os.ftruncate(self._pfd, psize)
        os.ftruncate(self._nfd, nsize)
        if sys.byteorder != "little":  # pragma: no cover - heads are stored little-endian
            heads.byteswap()
        self.names = name_list
        self.ids = {n: i for i, n in enumerate(name_list)}
        self.heads = heads
        self.covered = self._covered_flushed = covered
        self._psize, self._nsize = psize, nsize
        return True

    def _reset(self) -> None:
        os.ftruncate(self._pfd, 0)
        os.ftruncate(self._nfd, 0)
        self.names, self.ids, self.heads = [], {}, array("Q")
        self.covered = self._covered_flushed = 0
        self._psize = self._nsize = 0
        self._pending.clear()
        self._pending_names.clear()
        self._pending_count = 0
        self.rebuilt_from = 0

    # -- writing ---------------------------------------------------------------------

    def _id(self, name: str) -> int:
        i = self.ids.get(name)
        if i is None:
            if "\n" in name:
                raise LogError(f"cannot index a name with a line break: {name!r}")
            i = len(self.names)
            self.ids[name] = i
            self.names.append(name)
            self._pending_names.append(name)
            self.heads.append(_NONE)
        return i

    def add_event(self, offset: int, log_time: int, event: Event, grant: int, keys: list[tuple[str, int]]) -> None:
        """Index one record at ``offset`` (offsets must be added in order)."""
        if offset < self.covered:
            return
        kind = KIND_CODE[type(event).__struct_config__.tag]  # type: ignore[attr-defined]
        rid = self._id(repo_name(event.repo))
        pend = self._pending
        entry = _ENTRY.pack
        lst = pend.get(rid)
        if lst is None:
            lst = pend[rid] = []
        lst.append(entry(offset, log_time, grant, kind))
        kb = kind << 8
        for keyid, flags in keys:
            kid = self._id(key_name(keyid))
            lst = pend.get(kid)
            if lst is None:
                lst = pend[kid] = []
            lst.append(entry(offset, log_time, rid, flags | kb))
        self._pending_count += 1 + len(keys)
        self.covered = offset + 1

    def flush(self, force: bool = False) -> None:
        """Append the pending blocks and names (not fsynced: see :meth:`save_heads`).

        Unless ``force``, entries are kept buffered until :data:`FLUSH_ENTRIES` have
        accumulated, so a name's entries over many batches land in one block and a
        lookup reads few blocks. (Buffered entries are also answered by lookups; what
        a crash loses is re-indexed from the log on open.)"""
        if not force and self._pending_count < FLUSH_ENTRIES:
            return
        self._covered_flushed = self.covered
        self._pending_count = 0
        if self._pending_names:
            data = ("\n".join(self._pending_names) + "\n").encode()
            os.pwrite(self._nfd, data, self._nsize)
            self._nsize += len(data)
            self._pending_names.clear()
        if not self._pending:
            return
        buf = bytearray()
        pos = self._psize
        heads = self.heads
        for nid, entries in self._pending.items():
            body = b"".join(entries)
            buf += _BLOCK.pack(nid, len(entries), heads[nid], crc32c.crc32c(body))
            buf += body
            heads[nid] = pos
            pos += _BLOCK.size + len(body)
        _pwrite_all(self._pfd, buf, self._psize)
        self._psize = pos
        self._pending.clear()

    def discard_pending(self) -> None:
        """Forget what was added since the last flush (the batch did not reach disk)."""
        for name in self._pending_names:
            del self.ids[name]
        if self._pending_names:
            del self.names[len(self.names) - len(self._pending_names):]
            del self.heads[len(self.heads) - len(self._pending_names):]
        self._pending_names.clear()
        self._pending.clear()
        self._pending_count = 0
        self.covered = self._covered_flushed

    def save_heads(self, fsync: bool = True) -> None:
        """Make the index durable up to :attr:`covered` (flush, fsync, write heads)."""
        self.flush(force=True)
        if fsync:
            os.fsync(self._pfd)
            os.fsync(self._nfd)
        body = _HEADS_HEAD.pack(_HEADS_MAGIC, self.covered, self._psize, len(self.names), self._nsize)
        heads = self.heads
        if sys.byteorder != "little":  # pragma: no cover
            heads = array("Q", heads)
            heads.byteswap()
        body += heads.tobytes()
        data = body + struct.pack(">I", crc32c.crc32c(body))
        tmp = self.directory / (HEADS_FILE + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.directory / HEADS_FILE)

    # -- reading ---------------------------------------------------------------------

    def postings(self, name: str) -> list[Posting]:
        """Every entry of ``name`` in offset order (flushed and pending)."""
        nid = self.ids.get(name)
        if nid is None:
            return []
        blocks: list[bytes] = []
        pos = self.heads[nid]
        while pos != _NONE:
            head = os.pread(self._pfd, _BLOCK.size, pos)
            if len(head) != _BLOCK.size:
                raise LogError(f"{self.directory / POSTINGS_FILE}: block at byte {pos} is cut short; "
                               "delete the index directory to rebuild it")
            bid, count, prev, crc = _BLOCK.unpack(head)
            body = os.pread(self._pfd, count * _ENTRY.size, pos + _BLOCK.size)
            if bid != nid or len(body) != count * _ENTRY.size or crc32c.crc32c(body) != crc:
                raise LogError(f"{self.directory / POSTINGS_FILE}: block at byte {pos} is damaged; "
                               "delete the index directory to rebuild it")
            blocks.append(body)
            pos = prev
        blocks.reverse()
        out = [Posting(*e) for body in blocks for e in _ENTRY.iter_unpack(body)]
        out.extend(Posting(*_ENTRY.unpack(e)) for e in self._pending.get(nid, ()))
        return out

    def key_postings(self, keyid: str) -> list[Posting]:
        return self.postings(key_name(keyid))

    def repo_postings(self, repo: str) -> list[Posting]:
        return self.postings(repo_name(repo))

    def name_of(self, nid: int) -> str:
        return self.names[nid]

    def repo_of(self, posting: Posting) -> str:
        """The repository of a key posting."""
        return self.names[posting.a][2:]

    def iter_names(self, prefix: str) -> Iterator[str]:
        return (n[len(prefix):] for n in self.names if n.startswith(prefix))

    def close(self) -> None:
        for fd in (self._pfd, self._nfd):
            if fd >= 0:
                os.close(fd)
        self._pfd = self._nfd = -1


def _pwrite_all(fd: int, data: bytes | bytearray, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view = view[n:]
        pos += n
