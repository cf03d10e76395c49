"""A compact per-tag store: the signed tags of one repository in flat columns.

``RepoState.tags`` is a ``dict[str, TagEntry]``: one ``TagEntry`` object per tag, with a
71-character digest string, two large ints (log time, offset), a payload ``bytes`` and
a tuple of ``(keyid, sig)`` tuples beside it: about 900 bytes a tag in CPython. A
:class:`TagStore` has the same mapping interface but keeps each tag as one row of
flat columns:

* the integers (size, expiry, log time, offset, version, arena start) in one
  ``array('q')``, six per row; grant id, role, payload and signature lengths in one
  ``array('i')``, four per row;
* the digest as its 32 raw bytes (a canonical ``sha256:<64 hex>`` digest, which the
  fold requires, round-trips exactly);
* the role and the key ids of the signatures as small ints into per-store tables
  (a repository has a handful of roles and keys, shared by all its tags);
* payload and signatures in one ``bytearray`` arena: ``payload | (u16 key index, u32
  length, signature bytes)*``. An overwritten or deleted tag leaves dead bytes,
  copied away once they outnumber the live ones (so the arena stays at most twice
  the live bytes, and compaction costs amortised O(1) per write).

A :class:`TagEntry` is made on access (``store[tag]``, ``get``, ``values``, ``items``):
it is a *copy*, equal to the one stored but not the same object, so a change is made
by storing a new entry (``store[tag] = entry``), never by assigning to a field of one
read back. Nothing in trustlog mutates a ``TagEntry`` in place.

An entry the columns cannot hold exactly (a field of another type or outside its
column's range, a digest that is not canonical, a ``tag`` field other than its key:
nothing the fold makes, but a mapping must return what it was given) is kept verbatim
in a side table, so the store behaves exactly like a ``dict`` for every value.

:meth:`TagStore.dump` and :meth:`TagStore.load` turn the columns into a few byte
strings and back with bulk copies (``array.frombytes``), no Python work per tag
beyond the name table.

The module also defines the snapshot section of a native repository's tags
(:class:`SnapColumns`, snapshot format 3: see the comment above :data:`SNAP_ROW`) and
its pure-Python reference codec (:func:`columns_of`, :func:`entries_from_columns`);
the compiled store exports and imports the same bytes in C in one pass. The module does
no I/O (``core/``).
"""
from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import ItemsView, Iterable, Iterator, Mapping, MutableMapping, ValuesView
from operator import add
from typing import Final, NamedTuple

import msgspec

from .errors import EncodingError
from .tag_entry import TagEntry

_Q: Final = 6          # int64 columns per row: size, expires, log_time, offset, version, arena start
_I: Final = 4          # int32 columns per row: grant_id, role index, payload length, signatures length
_DG: Final = 32        # raw digest bytes per row
_PREFIX: Final = "sha256:"
_SIG: Final = struct.Struct("<HI")   # key index, signature length
_I64 = (-(1 << 63), (1 << 63) - 1)
_I32 = (-(1 << 31), (1 << 31) - 1)
_MAX_TABLE: Final = 1 << 16          # key ids per store (u16 index)
_SCAN: Final = 8                     # strings looked up by a scan before the store makes an index
# Row numbers as shared int objects: CPython caches only -5..256, so a store of 10,000
# tags would otherwise hold 10,000 int objects (32 B each) as its index's values; row k
# of every store is the same object here.
_ROWS: list[int] = list(range(1024))
_COMPACT_MIN: Final = 1 << 16        # dead arena bytes tolerated before compaction is considered


class TagColumns(NamedTuple):
    """The columns of a :class:`TagStore`, as :meth:`TagStore.dump` writes them: rows
    in iteration order, arrays little-endian, the arena holding live rows only."""

    names: list[str]
    q: bytes
    i: bytes
    digests: bytes
    arena: bytes
    strings: list[str]             # the roles and key ids the rows refer to by index
    verbatim: list[TagEntry]       # entries kept as they are (their names are in ``names``)


def _fits(x: object, lo_hi: tuple[int, int]) -> bool:
    return type(x) is int and lo_hi[0] <= x <= lo_hi[1]


def _raw_digest(digest: object) -> bytes | None:
    """The 32 bytes of a canonical ``sha256:<64 lowercase hex>`` digest, else None."""
    if type(digest) is not str or len(digest) != 71 or not digest.startswith(_PREFIX):
        return None
    try:
        raw = bytes.fromhex(digest[7:])
    except ValueError:
        return None
    return raw if len(raw) == _DG and raw.hex() == digest[7:] else None  # fromhex takes spaces and A-F


class _Items(ItemsView[str, TagEntry]):
    __slots__ = ()

    def __iter__(self) -> Iterator[tuple[str, TagEntry]]:
        return self._mapping._pairs()  # type: ignore[attr-defined, no-any-return]


class _Values(ValuesView[TagEntry]):
    __slots__ = ()

    def __iter__(self) -> Iterator[TagEntry]:
        return (e for _, e in self._mapping._pairs())  # type: ignore[attr-defined]


class TagStore(MutableMapping[str, TagEntry]):
    """``dict[str, TagEntry]`` in flat columns (see the module docstring)."""

    # A repository holds a few tags or millions; the containers a small one does not need
    # (free rows, verbatim entries, the string index) are made when first needed.
    __slots__ = ("_index", "_q", "_i", "_dg", "_arena", "_dead", "_free", "_verbatim", "_strs", "_strs_ix")

    def __init__(self, entries: Mapping[str, TagEntry] | Iterable[tuple[str, TagEntry]] = ()) -> None:
        self._index: dict[str, int] = {}          # tag -> row
        self._q = array("q")
        self._i = array("i")
        self._dg = bytearray()
        self._arena = bytearray()
        self._dead = 0                            # arena bytes of rows no longer live
        self._free: list[int] | None = None               # rows to reuse
        self._verbatim: dict[int, TagEntry] | None = None  # row -> entry the columns cannot hold
        self._strs: list[str] = []                        # roles and key ids, by index
        self._strs_ix: dict[str, int] | None = None       # their index, once there are more than a few
        if entries:
            self.update(entries)

    # -- the mapping --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __contains__(self, tag: object) -> bool:
        return tag in self._index

    def __getitem__(self, tag: str) -> TagEntry:
        return self._entry(tag, self._index[tag])

    def get(self, tag: str, default: TagEntry | None = None) -> TagEntry | None:  # type: ignore[override]
        row = self._index.get(tag)
        return default if row is None else self._entry(tag, row)

    def __setitem__(self, tag: str, entry: TagEntry) -> None:
        row = self._index.get(tag)
        if row is None:
            row = self._new_row()
        else:
            self._release(row)
        self._write(row, tag, entry)
        self._index[tag] = row   # an existing key keeps its place in the iteration order, as in a dict
        if self._dead:
            self._maybe_compact()

    def __delitem__(self, tag: str) -> None:
        row = self._index.pop(tag)
        self._release(row)
        if self._free is None:
            self._free = []
        self._free.append(row)
        if not self._index:
            self.clear()         # nothing left: give the memory back
        else:
            self._maybe_compact()

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def items(self) -> ItemsView[str, TagEntry]:
        """(tag, entry) pairs, each entry made as it is reached."""
        return _Items(self)

    def values(self) -> ValuesView[TagEntry]:
        return _Values(self)

    def _pairs(self) -> Iterator[tuple[str, TagEntry]]:
        entry = self._entry
        for tag, row in self._index.items():
            yield tag, entry(tag, row)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return len(self) == len(other) and all(k in other and other[k] == v for k, v in self._pairs())

    __hash__ = None  # type: ignore[assignment]  # mutable, like dict

    def __repr__(self) -> str:
        return f"TagStore({len(self)} tags, {self.nbytes():,} bytes)"

    def copy(self) -> TagStore:
        return TagStore(self._pairs())

    # -- rows ---------------------------------------------------------------------------

    def _new_row(self) -> int:
        if self._free:
            return self._free.pop()
        row = len(self._dg) // _DG
        if row >= len(_ROWS):
            _ROWS.extend(range(len(_ROWS), 2 * row + 1))
        row = _ROWS[row]
        self._q.extend((0,) * _Q)
        self._i.extend((0,) * _I)
        self._dg.extend(bytes(_DG))
        return row

    def _release(self, row: int) -> None:
        if self._verbatim is None or self._verbatim.pop(row, None) is None:
            i = self._i
            self._dead += i[row * _I + 2] + i[row * _I + 3]
            i[row * _I + 2] = i[row * _I + 3] = 0

    def _intern(self, s: str) -> int | None:
        """The index of role or key id ``s`` in the store's string table (None: full)."""
        table, ix = self._strs, self._strs_ix
        if ix is None:
            for k, t in enumerate(table):  # a handful: a scan beats a dict and its 200+ bytes
                if t == s:
                    return k
            if len(table) >= _SCAN:
                ix = self._strs_ix = {t: k for k, t in enumerate(table)}
        else:
            got = ix.get(s)
            if got is not None:
                return got
        if len(table) >= _MAX_TABLE:
            return None
        if ix is not None:
            ix[s] = len(table)
        table.append(s)
        return len(table) - 1

    def _write(self, row: int, tag: str, e: TagEntry) -> None:
        packed = self._pack(tag, e)
        if packed is None:
            if self._verbatim is None:
                self._verbatim = {}
            self._verbatim[row] = e
            self._i[row * _I + 1] = -1     # marks the row verbatim in dump()
            self._q[row * _Q + 5] = 0      # no arena bytes: a reused row's old start may be past a compacted arena
            return
        raw, role, blob, plen = packed
        q, i, b = self._q, self._i, row * _Q
        q[b] = e.size
        q[b + 1] = e.expires
        q[b + 2] = e.log_time
        q[b + 3] = e.offset
        q[b + 4] = e.version
        q[b + 5] = len(self._arena)
        b = row * _I
        i[b] = e.grant_id
        i[b + 1] = role
        i[b + 2] = plen
        i[b + 3] = len(blob) - plen
        self._dg[row * _DG:(row + 1) * _DG] = raw
        self._arena += blob

    def _pack(self, tag: str, e: TagEntry) -> tuple[bytes, int, bytes, int] | None:
        """The column values of ``e``, or None when they cannot hold it exactly."""
        if type(e) is not TagEntry or type(tag) is not str or type(e.tag) is not str or e.tag != tag:
            return None
        if not (_fits(e.size, _I64) and _fits(e.expires, _I64) and _fits(e.log_time, _I64)
                and _fits(e.offset, _I64) and _fits(e.version, _I64) and _fits(e.grant_id, _I32)):
            return None
        raw = _raw_digest(e.digest)
        if raw is None or type(e.role) is not str or type(e.payload) is not bytes or type(e.signatures) is not tuple:
            return None
        role = self._intern(e.role)
        if role is None:
            return None
        parts = [e.payload]
        for item in e.signatures:
            if type(item) is not tuple or len(item) != 2:
                return None
            keyid, sig = item
            if type(keyid) is not str or type(sig) is not bytes:
                return None
            k = self._intern(keyid)
            if k is None:
                return None
            parts.append(_SIG.pack(k, len(sig)))
            parts.append(sig)
        blob = b"".join(parts)
        if len(blob) > _I32[1] or len(self._arena) + len(blob) > _I64[1]:
            return None
        return raw, role, blob, len(e.payload)

    def _entry(self, tag: str, row: int) -> TagEntry:
        if self._verbatim:
            v = self._verbatim.get(row)
            if v is not None:
                return v
        q, i, b, c = self._q, self._i, row * _Q, row * _I
        start = q[b + 5]
        plen = i[c + 2]
        end = start + plen + i[c + 3]
        arena = self._arena
        sigs: list[tuple[str, bytes]] = []
        at = start + plen
        while at < end:
            k, n = _SIG.unpack_from(arena, at)
            at += _SIG.size
            sigs.append((self._strs[k], bytes(arena[at:at + n])))
            at += n
        return TagEntry(tag, _PREFIX + self._dg[row * _DG:(row + 1) * _DG].hex(), q[b], q[b + 1],
                        self._strs[i[c + 1]], i[c], q[b + 2], q[b + 3], q[b + 4],
                        bytes(arena[start:start + plen]), tuple(sigs))

    def _maybe_compact(self) -> None:
        if self._dead > _COMPACT_MIN and self._dead > len(self._arena) - self._dead:
            self.compact()

    def compact(self) -> None:
        """Copy the live arena bytes into a fresh arena (row numbers stay)."""
        old, q, i = self._arena, self._q, self._i
        new = bytearray()
        for row in self._index.values():
            if self._verbatim and row in self._verbatim:
                continue
            start, n = q[row * _Q + 5], i[row * _I + 2] + i[row * _I + 3]
            q[row * _Q + 5] = len(new)
            new += old[start:start + n]
        self._arena = new
        self._dead = 0

    # -- size and snapshots -------------------------------------------------------------

    def nbytes(self) -> int:
        """Bytes held by the columns and the arena (not the name table)."""
        return (self._q.itemsize * len(self._q) + self._i.itemsize * len(self._i) + len(self._dg)
                + len(self._arena))

    def dump(self) -> TagColumns:
        """The columns as byte strings, rows in iteration order, the arena compacted."""
        src = self
        if self._free or self._dead or list(self._index.values()) != list(range(len(self._index))):
            src = TagStore()
            src._strs = self._strs
            src._verbatim = verbatim_rows = {}
            old_verbatim = self._verbatim or {}
            for tag, row in self._index.items():
                new = src._new_row()
                v = old_verbatim.get(row)
                if v is not None:
                    verbatim_rows[new] = v
                    src._i[new * _I + 1] = -1
                else:
                    src._q[new * _Q:(new + 1) * _Q] = self._q[row * _Q:(row + 1) * _Q]
                    src._i[new * _I:(new + 1) * _I] = self._i[row * _I:(row + 1) * _I]
                    src._dg[new * _DG:(new + 1) * _DG] = self._dg[row * _DG:(row + 1) * _DG]
                    start, n = self._q[row * _Q + 5], self._i[row * _I + 2] + self._i[row * _I + 3]
                    src._q[new * _Q + 5] = len(src._arena)
                    src._arena += self._arena[start:start + n]
                src._index[tag] = new
        q, i = array("q", src._q), array("i", src._i)
        if sys.byteorder == "big":
            q.byteswap()
            i.byteswap()
        kept = src._verbatim or {}
        verbatim = [kept[row] for row in sorted(kept)]
        return TagColumns(list(src._index), q.tobytes(), i.tobytes(), bytes(src._dg), bytes(src._arena),
                          list(src._strs), verbatim)

    @classmethod
    def load(cls, cols: TagColumns) -> TagStore:
        """A store from :meth:`dump`'s columns, checked so that every row reads back
        inside its arena and tables (a snapshot is checked where it is used)."""
        n = len(cols.names)
        q, i = array("q"), array("i")
        try:
            q.frombytes(cols.q)
            i.frombytes(cols.i)
        except ValueError as e:
            raise EncodingError(f"tag columns do not decode: {e}") from e
        if sys.byteorder == "big":
            q.byteswap()
            i.byteswap()
        if len(q) != n * _Q or len(i) != n * _I or len(cols.digests) != n * _DG:
            raise EncodingError(f"tag columns of {n} rows have {len(q)}, {len(i)} and {len(cols.digests)} values")
        if len(set(cols.names)) != n:
            raise EncodingError("tag columns name a tag twice")
        st = cls()
        st._q, st._i, st._dg, st._arena = q, i, bytearray(cols.digests), bytearray(cols.arena)
        st._strs = list(cols.strings)
        ix = {t: k for k, t in enumerate(st._strs)}
        if len(ix) != len(st._strs) or len(ix) > _MAX_TABLE or not all(type(t) is str for t in st._strs):
            raise EncodingError("the string table of the tag columns repeats an entry or is too long")
        if len(ix) > _SCAN:
            st._strs_ix = ix
        if n > len(_ROWS):
            _ROWS.extend(range(len(_ROWS), n))
        st._index = dict(zip(cols.names, _ROWS[:n]))
        if n:  # bounds of every row, checked with C-level passes over the columns
            roles, plens, slens, starts = i[1::_I], i[2::_I], i[3::_I], q[5::_Q]
            n_verbatim = roles.count(-1)
            if n_verbatim != len(cols.verbatim):
                raise EncodingError(f"tag columns mark {n_verbatim} rows verbatim but carry {len(cols.verbatim)}")
            if min(roles) < -1 or max(roles) >= len(st._strs) or min(plens) < 0 or min(slens) < 0 or min(starts) < 0:
                raise EncodingError("tag columns hold a negative length or an unknown role")
            if max(map(add, map(add, starts, plens), slens)) > len(st._arena):
                raise EncodingError("a row of the tag columns points past the end of its arena")
            row = -1
            verbatim: dict[int, TagEntry] = {}
            for entry in cols.verbatim:
                row = roles.index(-1, row + 1)
                verbatim[row] = entry
            st._verbatim = verbatim or None
        elif cols.verbatim or cols.arena:
            raise EncodingError("empty tag columns carry entries")
        return st


# -- the snapshot section of a native repository's tags -------------------------------
#
# A snapshot (ingest/snapshots.py, format 3) holds the tags of each native repository as
# the columns below, not as a map of entries. They are canonical: a function of the
# mapping's values only (its iteration order included), so a dict of TagEntry and the
# compiled store (core/_tagstore_c.pyx: CTagStore.export_columns / from_columns, the C
# twin of columns_of / entries_from_columns here) write the same bytes, and decoding
# and encoding again gives the same bytes. Everything is little-endian:
#
# * ``names``: the tag names (each a tag by core.names.is_tag: ASCII, 1..128 bytes),
#   concatenated; ``ends``: u32 end offset of each name (so ``n = len(ends) / 4`` rows);
# * ``rows``: ``n`` records of :data:`SNAP_ROW` (92 bytes): size, expires, log time,
#   offset, version, issued_at (int64 each), the 32 raw digest bytes, grant id (int32),
#   role (int32 index into ``strings``; -1: the row's entry is in ``verbatim`` and every
#   other field is 0) and the length of its signatures (u32) in ``sigs``;
# * ``sigs``: each column row's signatures, in row order, as ``(u16 index of the key id
#   in strings, u32 length, signature bytes)*``;
# * ``strings``: the roles and key ids, in the order the rows first use them (role, then
#   key ids), each used;
# * ``verbatim``: the entries the rows cannot re-derive exactly (the payload is not the
#   canonical ImageSigned of the row and the repository, a field of another type or
#   range...), in row order;
# * ``absent``: the tags (sorted) of column rows whose scope has no version although
#   the row implies one (a tag's scope version is its row's version unless said
#   otherwise: the other versions of tag scopes are in the repository's ``versions``).
#
# No payload is stored: a column row's payload is re-derived from the row and the
# repository name (the same canonical MessagePack as core.encoding writes).

SNAP_ROW: Final = struct.Struct("<6q32siiI")
SNAP_VERBATIM: Final = -1
_U32: Final = struct.Struct("<I")
_SIG_LE: Final = struct.Struct("<HI")
_P0: Final = b"\x89\xa4kind\xabImageSigned\xa4repo"
_MAX_NAMES_LEN: Final = 0xFFFFFFFF          # the compiled store's arenas are limited to 4 GiB
_MAX_ROWS: Final = 0x7FFFFFFF


class SnapColumns(NamedTuple):
    """One native repository's tags as a snapshot holds them (see above)."""

    names: bytes
    ends: bytes
    rows: bytes
    sigs: bytes
    strings: list[str]
    verbatim: list[TagEntry]
    absent: list[str]


def _mp_str(b: bytes) -> bytes:
    n = len(b)
    if n < 32:
        return bytes((0xA0 | n,)) + b
    if n < 256:
        return b"\xd9" + bytes((n,)) + b
    if n < 65536:
        return b"\xda" + n.to_bytes(2, "big") + b
    return b"\xdb" + n.to_bytes(4, "big") + b


def _mp_int(x: int) -> bytes:
    if x >= 0:
        if x < 128:
            return bytes((x,))
        for code, nb in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if x < 1 << (8 * nb):
                return bytes((code,)) + x.to_bytes(nb, "big")
    if x >= -32:
        return bytes((x & 0xFF,))
    for code, nb in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        if x >= -(1 << (8 * nb - 1)):
            return bytes((code,)) + x.to_bytes(nb, "big", signed=True)
    raise OverflowError(x)  # pragma: no cover  (callers pass int64s)


def _mp_read_int(b: bytes, at: int) -> int | None:
    """The MessagePack int at ``b[at:]`` if it is one that fits int64 (any width), else None."""
    if at >= len(b):
        return None
    c = b[at]
    if c < 0x80:
        return c
    if c >= 0xE0:
        return c - 256
    width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}.get(c)
    if width is None or len(b) - at < 1 + width:
        return None
    x = int.from_bytes(b[at + 1:at + 1 + width], "big", signed=c >= 0xD0)
    return x if x <= _I64[1] else None


def _name_bytes(s: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")  # as the compiled store keeps such a str


def _derive_exact(repo_b: bytes, tag_b: bytes, role_b: bytes, digest_raw: bytes, size: int, expires: int,
                  version: int, issued_at: int) -> bytes:
    return b"".join((_P0, _mp_str(repo_b), b"\xa7version", _mp_int(version), b"\xa9issued_at", _mp_int(issued_at),
                     b"\xa4role", _mp_str(role_b), b"\xa3tag", _mp_str(tag_b), b"\xa6digest",
                     _mp_str(b"sha256:" + digest_raw.hex().encode()), b"\xa4size", _mp_int(size), b"\xa7expires",
                     _mp_int(expires)))


_payload_encoder = msgspec.msgpack.Encoder()


def derive_payload(repo: str, tag: str, role: str, digest_raw: bytes, size: int, expires: int, version: int,
                   issued_at: int) -> bytes:
    """The canonical ImageSigned payload of a column row (the twin of ``_derive`` in
    core/_tagstore_c.pyx): ``{kind, repo, version, issued_at, role, tag, digest, size,
    expires}`` as msgspec writes it (msgspec itself writes it; a str msgspec refuses,
    one with a lone surrogate, is written as the compiled store keeps it)."""
    try:
        return _payload_encoder.encode({"kind": "ImageSigned", "repo": repo, "version": version,
                                        "issued_at": issued_at, "role": role, "tag": tag,
                                        "digest": _PREFIX + digest_raw.hex(), "size": size, "expires": expires})
    except UnicodeEncodeError:
        return _derive_exact(_name_bytes(repo), _name_bytes(tag), _name_bytes(role), digest_raw, size, expires,
                             version, issued_at)


def row_of_entry(repo: str, tag: str, e: object) -> tuple[tuple[int, ...], bytes, str, list[tuple[str, bytes]]] | None:
    """``((size, expires, log_time, offset, version, issued_at, grant_id), raw digest, role,
    signatures)`` when a column row re-derives ``e`` exactly, else None (the entry is kept
    verbatim). The same decision as ``CTagStore._pack`` (short of its string table
    filling up, which :func:`columns_of` decides by the snapshot's own table)."""
    if type(e) is not TagEntry or type(e.tag) is not str or e.tag != tag:
        return None
    if not (_fits(e.size, _I64) and _fits(e.expires, _I64) and _fits(e.log_time, _I64)
            and _fits(e.offset, _I64) and _fits(e.version, _I64) and _fits(e.grant_id, _I32)):
        return None
    raw = _raw_digest(e.digest)
    role, payload, sigs = e.role, e.payload, e.signatures
    if raw is None or type(role) is not str or type(payload) is not bytes or type(sigs) is not tuple:
        return None
    total = 0
    for item in sigs:
        if type(item) is not tuple or len(item) != 2 or type(item[0]) is not str or type(item[1]) is not bytes:
            return None
        total += _SIG.size + len(item[1])
    if total > _I32[1]:
        return None
    prefix = b"".join((_P0, _mp_str(_name_bytes(repo)), b"\xa7version", _mp_int(e.version), b"\xa9issued_at"))
    if not payload.startswith(prefix):
        return None
    issued = _mp_read_int(payload, len(prefix))
    if issued is None:
        return None
    if derive_payload(repo, tag, role, raw, e.size, e.expires, e.version, issued) != payload:
        return None
    return (e.size, e.expires, e.log_time, e.offset, e.version, issued, e.grant_id), raw, role, list(sigs)


def _verbatim_canonical(repo: str, tag: str, e: object, table: dict[str, int], seen: int) -> bool:
    """Whether :func:`columns_of` keeps ``e`` verbatim when the string table holds
    ``seen`` strings (``table`` the whole final table): it cannot be a row, or the
    strings it needs no longer fit."""
    got = row_of_entry(repo, tag, e)
    if got is None:
        return True
    new = {s for s in [got[2], *(k for k, _ in got[3])] if table.get(s, _MAX_TABLE) >= seen}
    return seen + len(new) > _MAX_TABLE


def columns_of(repo: str, tags: Mapping[str, TagEntry],
               versions: Mapping[str, int]) -> tuple[SnapColumns, dict[str, int]] | None:
    """The snapshot columns of a native repository's ``tags`` and the versions they do
    not imply (sorted by scope); None when a tag name is not one the fold accepts (the
    repository is then written as a map). The reference twin of
    ``CTagStore.export_columns``."""
    from .names import is_tag

    names, ends, rows, sigs = bytearray(), bytearray(), bytearray(), bytearray()
    strings: list[str] = []
    ix: dict[str, int] = {}
    verbatim: list[TagEntry] = []
    implied: dict[str, int] = {}
    for tag, e in tags.items():
        if not is_tag(tag):
            return None
        names += tag.encode("ascii")
        ends += _U32.pack(len(names))
        got = row_of_entry(repo, tag, e)
        if got is not None:
            need = [got[2], *(k for k, _ in got[3])]
            if len(strings) + len({s for s in need if s not in ix}) > _MAX_TABLE:
                got = None
            else:
                for s in need:
                    if s not in ix:
                        ix[s] = len(strings)
                        strings.append(s)
        if got is None:
            verbatim.append(e)
            rows += SNAP_ROW.pack(0, 0, 0, 0, 0, 0, bytes(_DG), 0, SNAP_VERBATIM, 0)
            continue
        (size, expires, log_time, offset, version, issued, grant_id), raw, role, sig_list = got
        start = len(sigs)
        for keyid, sig in sig_list:
            sigs += _SIG_LE.pack(ix[keyid], len(sig))
            sigs += sig
        rows += SNAP_ROW.pack(size, expires, log_time, offset, version, issued, raw, grant_id, ix[role],
                              len(sigs) - start)
        implied[tag] = version
    if len(names) > _MAX_NAMES_LEN or len(sigs) > _MAX_NAMES_LEN:
        return None
    absent = sorted(t for t in implied if t not in versions)
    # a version the row implies is not written; every other one is (sorted by scope)
    rest = {s: v for s, v in sorted(versions.items()) if not (s in implied and type(v) is int and implied[s] == v)}
    return SnapColumns(bytes(names), bytes(ends), bytes(rows), bytes(sigs), strings, verbatim, absent), rest


def _refuse(repo: str, what: str) -> EncodingError:
    return EncodingError(f"the tag columns of {repo!r} are damaged: {what}")


def entries_from_columns(repo: str, cols: SnapColumns,
                         versions: Mapping[str, int]) -> tuple[dict[str, TagEntry], dict[str, int]]:
    """The tags (a dict, in row order) and versions of a native repository from its
    snapshot columns and the versions they do not imply; every field is checked and
    anything out of place raises :class:`EncodingError` (the reference twin of
    ``CTagStore.from_columns``, which refuses exactly the same columns)."""
    from .names import TAG_RE

    names, ends, rows, sigs = cols.names, cols.ends, cols.rows, cols.sigs
    if len(ends) % 4:
        raise _refuse(repo, f"{len(ends)} bytes of name ends is not a whole number of u32s")
    n = len(ends) // 4
    if n > _MAX_ROWS or len(rows) != n * SNAP_ROW.size:
        raise _refuse(repo, f"{len(rows)} bytes of rows for {n} names")
    if len(names) > _MAX_NAMES_LEN or len(sigs) > _MAX_NAMES_LEN:
        raise _refuse(repo, "an arena is over 4 GiB")
    strings = cols.strings
    if len(strings) > _MAX_TABLE:
        raise _refuse(repo, f"{len(strings)} strings; at most {_MAX_TABLE}")
    table: dict[str, int] = {}
    for k, s in enumerate(strings):
        if type(s) is not str or table.setdefault(s, k) != k:
            raise _refuse(repo, f"string {k} repeats an earlier one")
    tags: dict[str, TagEntry] = {}
    out_versions: dict[str, int] = {}
    implied: dict[str, int] = {}
    seen = 0            # strings first used so far (they must come in that order)
    at = 0              # in sigs
    start = 0           # in names
    n_verbatim = 0
    zero = bytes(_DG)
    for r in range(n):
        (end,) = _U32.unpack_from(ends, 4 * r)
        if not start < end <= len(names) or end - start > 128:
            raise _refuse(repo, f"name {r} ends at {end}, after {start}, in {len(names)} bytes")
        name_b = names[start:end]
        start = end
        name = name_b.decode("latin-1")
        if not name_b.isascii() or TAG_RE.fullmatch(name) is None:
            raise _refuse(repo, f"name {r} {name!r} is not a tag name")
        if name in tags:
            raise _refuse(repo, f"tag {name!r} has two rows")
        size, expires, log_time, offset, version, issued, raw, grant_id, role, sig_len = SNAP_ROW.unpack_from(
            rows, SNAP_ROW.size * r)
        if role == SNAP_VERBATIM:
            if (size, expires, log_time, offset, version, issued, grant_id, sig_len) != (0,) * 8 or raw != zero:
                raise _refuse(repo, f"the verbatim row of {name!r} carries column values")
            if n_verbatim >= len(cols.verbatim):
                raise _refuse(repo, f"{n_verbatim + 1} or more rows are verbatim, {len(cols.verbatim)} entries given")
            e = cols.verbatim[n_verbatim]
            n_verbatim += 1
            if not _verbatim_canonical(repo, name, e, table, seen):
                raise _refuse(repo, f"the verbatim entry of {name!r} is one a row holds")
            tags[name] = e
            continue
        if not 0 <= role <= seen or role >= len(strings):
            raise _refuse(repo, f"row {r} names string {role}, {seen} used so far of {len(strings)}")
        seen += role == seen
        end_sig = at + sig_len
        if end_sig > len(sigs):
            raise _refuse(repo, f"the signatures of row {r} end past the arena ({end_sig} > {len(sigs)})")
        sig_list = []
        while at < end_sig:
            if end_sig - at < _SIG_LE.size:
                raise _refuse(repo, f"a signature header of row {r} is cut off")
            k, m = _SIG_LE.unpack_from(sigs, at)
            at += _SIG_LE.size
            if k > seen or k >= len(strings) or m > end_sig - at:
                raise _refuse(repo, f"a signature of row {r} names string {k} ({seen} used) or overruns its row")
            seen += k == seen
            sig_list.append((strings[k], sigs[at:at + m]))
            at += m
        payload = derive_payload(repo, name, strings[role], raw, size, expires, version, issued)
        tags[name] = TagEntry(name, _PREFIX + raw.hex(), size, expires, strings[role], grant_id, log_time, offset,
                              version, payload, tuple(sig_list))
        implied[name] = version
    if start != len(names) or at != len(sigs):
        raise _refuse(repo, f"the rows use {start} of {len(names)} name bytes and {at} of {len(sigs)} signature bytes")
    if n_verbatim != len(cols.verbatim):
        raise _refuse(repo, f"{n_verbatim} rows are verbatim, {len(cols.verbatim)} entries given")
    if seen != len(strings):
        raise _refuse(repo, f"{len(strings) - seen} of its strings are used by no row")
    absent = cols.absent
    for k, t in enumerate(absent):
        if type(t) is not str or (k and not absent[k - 1] < t) or t not in implied:
            raise _refuse(repo, f"absent version {t!r} is out of order or names no column row")
    gone = set(absent)
    for scope, v in versions.items():
        if scope in gone or (scope in implied and type(v) is int and implied[scope] == v):
            raise _refuse(repo, f"the version of {scope!r} is said twice")
    for t, v in implied.items():
        if t not in gone:
            out_versions[t] = v
    out_versions.update(versions)
    return tags, out_versions
