"""Persistent, append-only indexes of one log: key id → offsets, repository → offsets.

An audit ("what did key K sign?") reads only K's postings and the records they name,
never the whole log. Layout of ``DIR/index/``::

    postings.dat   blocks, appended when enough entries are buffered (and at every
                   checkpoint), one per name touched since: header (name id u32, count u32, previous block u64, CRC-32C
                   u32) then ``count`` entries of 24 bytes. A name's blocks form a chain
                   from its newest block backwards, so a lookup reads one chain.
    names.dat      the names, one per line, in id order ("k:" + key id, "r:" + repo).
    heads.dat      written atomically at checkpoints and on close: the log offset the
                   index covers, the sizes of the two files above at that moment and the
                   CRC-32C of each, and the newest block of every name (u64 little-endian
                   each), with a CRC-32C of its own.

Both data files are only appended to. On open, ``heads.dat`` says how much of them is
valid: anything after is cut (an unfinished batch), and the caller re-indexes the log
from :attr:`LogIndex.covered` on. A missing or damaged ``heads.dat`` means the index is
rebuilt from offset 0 — it is derived data, never the source of truth. So does a
``names.dat`` or ``postings.dat`` whose CRC differs from the one in ``heads.dat`` (a
flipped byte, a same-length edit): every open checks both files in full (CRC-32C runs at
memory speed) and says why it rebuilt in :attr:`LogIndex.rebuilt_because`. A read-only
open (``read_only=True``) checks the same, cuts nothing and rebuilds in memory.

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
_HEADS_HEAD: Final = struct.Struct(">8sQQQQII")  # magic, covered, postings bytes, names count, names bytes, 2 CRCs
_HEADS_MAGIC: Final = b"TLIDX002"
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
        # the signing authority: root, targets, or the delegated signer reporting its own key
        sig_ids = {s.keyid for s in env.signatures}
        for role in sorted(roles, key=lambda r: (r != "root", r != "targets", r)):
            keys = set(grants[roles[role]].keyids)
            if sig_ids & keys:
                if grant == NO_GRANT:
                    grant = roles[role]
                signer_keys |= keys
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

    def __init__(self, directory: Path, read_only: bool = False) -> None:
        """Use :meth:`open` (or construct directly for an index held only in memory)."""
        self.directory = directory
        self.read_only = read_only
        self.rebuilt_because: str | None = None
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        self.heads = array("Q")
        self.covered = 0            # every record below this offset is indexed
        self._pending: dict[int, list[bytes]] = {}
        self._pending_count = 0
        self._pending_names: list[str] = []
        self._pfd = -1
        self._nfd = -1
        self._psize = 0
        self._nsize = 0
        self._pcrc = 0               # CRC-32C of postings.dat [0, _psize)
        self._ncrc = 0               # CRC-32C of names.dat [0, _nsize)
        self._covered_flushed = 0

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, read_only: bool = False) -> LogIndex:
        d = Path(directory)
        idx = cls(d, read_only)
        if read_only:
            for name, attr in ((POSTINGS_FILE, "_pfd"), (NAMES_FILE, "_nfd")):
                try:
                    setattr(idx, attr, os.open(d / name, os.O_RDONLY | os.O_CLOEXEC))
                except FileNotFoundError:
                    setattr(idx, attr, os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
        else:
            d.mkdir(parents=True, exist_ok=True)
            idx._pfd = os.open(d / POSTINGS_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            idx._nfd = os.open(d / NAMES_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        why = idx._load_heads()
        if why is not None:
            idx._reset()
            idx.rebuilt_because = why
        return idx

    def _load_heads(self) -> str | None:
        """Load ``heads.dat`` and check both data files against it; None when all is
        well, else what is wrong (the index is then rebuilt from the log)."""
        try:
            data = (self.directory / HEADS_FILE).read_bytes()
        except FileNotFoundError:
            if os.fstat(self._pfd).st_size or os.fstat(self._nfd).st_size:
                return f"{HEADS_FILE} is missing"
            return None  # a new (or never saved) index: everything is indexed from the log
        if len(data) < _HEADS_HEAD.size + 4 or crc32c.crc32c(data[:-4]) != struct.unpack(">I", data[-4:])[0]:
            return f"{HEADS_FILE} fails its CRC"
        if data[:8] != _HEADS_MAGIC:
            return f"{HEADS_FILE} is of another format"
        magic, covered, psize, ncount, nsize, pcrc, ncrc = _HEADS_HEAD.unpack_from(data)
        heads = array("Q")
        heads.frombytes(data[_HEADS_HEAD.size:-4])
        if len(heads) != ncount:
            return f"{HEADS_FILE} is inconsistent"
        if os.fstat(self._pfd).st_size < psize:
            return f"{POSTINGS_FILE} is shorter than {HEADS_FILE} says"
        if os.fstat(self._nfd).st_size < nsize:
            return f"{NAMES_FILE} is shorter than {HEADS_FILE} says"
        raw_names = os.pread(self._nfd, nsize, 0) if nsize else b""
        if crc32c.crc32c(raw_names) != ncrc:
            return f"{NAMES_FILE} does not match its CRC in {HEADS_FILE}"
        try:
            names = raw_names.decode()
        except UnicodeDecodeError:
            return f"{NAMES_FILE} is not UTF-8"
        name_list = names.split("\n")[:-1] if names else []
        if len(name_list) != ncount:
            return f"{NAMES_FILE} holds {len(name_list)} names, {HEADS_FILE} says {ncount}"
        if sys.byteorder != "little":  # pragma: no cover - heads are stored little-endian
            heads.byteswap()
        why = _check_postings(self._pfd, psize, pcrc, heads)
        if why is not None:
            return f"{POSTINGS_FILE} {why}"
        if not self.read_only:
            os.ftruncate(self._pfd, psize)
            os.ftruncate(self._nfd, nsize)
        self.names = name_list
        self.ids = {n: i for i, n in enumerate(name_list)}
        self.heads = heads
        self.covered = self._covered_flushed = covered
        self._psize, self._nsize = psize, nsize
        self._pcrc, self._ncrc = pcrc, ncrc
        return None

    def _reset(self) -> None:
        if not self.read_only:
            os.ftruncate(self._pfd, 0)
            os.ftruncate(self._nfd, 0)
        self._pcrc = self._ncrc = 0
        self.names, self.ids, self.heads = [], {}, array("Q")
        self.covered = self._covered_flushed = 0
        self._psize = self._nsize = 0
        self._pending.clear()
        self._pending_names.clear()
        self._pending_count = 0

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
        self.add_postings(offset, log_time, KIND_CODE[type(event).__struct_config__.tag],  # type: ignore[attr-defined]
                          event.repo, grant, keys)

    def add_postings(self, offset: int, log_time: int, kind: int, repo: str, grant: int,
                     keys: list[tuple[str, int]]) -> None:
        """:meth:`add_event` of an event of kind code ``kind`` in repository ``repo``.
        Its compiled twin is ``_fastfold``'s ``_index_add`` (the ingest fold's fast
        path), which must add the very same entries and names."""
        if offset < self.covered:
            return
        rid = self._id(repo_name(repo))
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
        if self.read_only or self._pfd < 0 or (not force and self._pending_count < FLUSH_ENTRIES):
            return
        self._covered_flushed = self.covered
        self._pending_count = 0
        if self._pending_names:
            data = ("\n".join(self._pending_names) + "\n").encode()
            _pwrite_all(self._nfd, data, self._nsize, self.directory / NAMES_FILE)
            self._nsize += len(data)
            self._ncrc = crc32c.crc32c(data, self._ncrc)
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
        _pwrite_all(self._pfd, buf, self._psize, self.directory / POSTINGS_FILE)
        self._psize = pos
        self._pcrc = crc32c.crc32c(buf, self._pcrc)
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
        if self.read_only:
            return
        self.flush(force=True)
        if fsync:
            os.fsync(self._pfd)
            os.fsync(self._nfd)
        body = _HEADS_HEAD.pack(_HEADS_MAGIC, self.covered, self._psize, len(self.names), self._nsize,
                                self._pcrc, self._ncrc)
        heads = self.heads
        if sys.byteorder != "little":  # pragma: no cover
            heads = array("Q", heads)
            heads.byteswap()
        body += heads.tobytes()
        data = body + struct.pack(">I", crc32c.crc32c(body))
        tmp = self.directory / (HEADS_FILE + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, self.directory / HEADS_FILE)
        except OSError as e:
            tmp.unlink(missing_ok=True)   # no leftovers after a full disk
            raise OSError(e.errno, e.strerror, str(self.directory / HEADS_FILE)) from e

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
                               "reopen the log for writing to rebuild the index")
            bid, count, prev, crc = _BLOCK.unpack(head)
            if pos + _BLOCK.size + count * _ENTRY.size > self._psize:
                raise LogError(f"{self.directory / POSTINGS_FILE}: block at byte {pos} claims {count} entries, "
                               "past the end of the file; reopen the log for writing to rebuild the index")
            body = os.pread(self._pfd, count * _ENTRY.size, pos + _BLOCK.size)
            if bid != nid or len(body) != count * _ENTRY.size or crc32c.crc32c(body) != crc:
                raise LogError(f"{self.directory / POSTINGS_FILE}: block at byte {pos} is damaged; "
                               "reopen the log for writing to rebuild the index")
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

    def repo_of(self, posting: Posting) -> str:
        """The repository of a key posting."""
        return self.names[posting.a][2:]

    def close(self) -> None:
        for fd in (self._pfd, self._nfd):
            if fd >= 0:
                os.close(fd)
        self._pfd = self._nfd = -1


def _check_postings(fd: int, size: int, want_crc: int, heads: array) -> str | None:
    """Walk every block of ``postings.dat`` up to ``size``: the CRC of the whole, each
    block's bounds, entry CRC and back link, and that ``heads`` names each name's last
    block. None when all holds, else what is wrong."""
    data = os.pread(fd, size, 0) if size else b""
    if len(data) != size or crc32c.crc32c(data) != want_crc:
        return "does not match its CRC in heads.dat"
    code, pos = _walk_postings(data, heads)
    if code == WALK_OK:
        return None
    if code == WALK_SHORT:
        return f"ends inside a block header at byte {pos}"
    if code == WALK_MALFORMED:
        return f"has a malformed block at byte {pos}"
    if code == WALK_CRC:
        return f"has a block at byte {pos} that fails its CRC"
    return "disagrees with the block chains in heads.dat"


WALK_OK, WALK_SHORT, WALK_MALFORMED, WALK_CRC, WALK_HEADS = range(5)  # as _logscan's


def _walk_postings_py(data: bytes, heads: array) -> tuple[int, int]:
    """``(WALK_*, pos)`` of a walk over every block of the postings ``data``; the twin
    of ``_logscan.walk_postings`` (see there)."""
    size = len(data)
    last = [_NONE] * len(heads)
    pos = 0
    while pos < size:
        if size - pos < _BLOCK.size:
            return WALK_SHORT, pos
        nid, count, prev, crc = _BLOCK.unpack_from(data, pos)
        end = pos + _BLOCK.size + count * _ENTRY.size
        if nid >= len(heads) or end > size or prev != last[nid]:
            return WALK_MALFORMED, pos
        if crc32c.crc32c(data[pos + _BLOCK.size:end]) != crc:
            return WALK_CRC, pos
        last[nid] = pos
        pos = end
    if list(heads) != last:
        return WALK_HEADS, 0
    return WALK_OK, 0


def _compiled_walk():
    from . import fold_backend

    m = fold_backend.logscan()
    return m.walk_postings if m is not None else _walk_postings_py


_walk_postings = _compiled_walk()


def _pwrite_all(fd: int, data: bytes | bytearray, pos: int, path: Path) -> None:
    """Write everything at ``pos``; an error names ``path`` (a full disk must say where)."""
    view = memoryview(data)
    try:
        while view:
            n = os.pwrite(fd, view, pos)
            view = view[n:]
            pos += n
    except OSError as e:
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e
