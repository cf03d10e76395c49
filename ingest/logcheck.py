"""`trustlog log verify`: an offline audit of a whole log directory that trusts nothing
on disk and changes nothing.

Every record is re-read from the segment files (CRC of every frame), decoded in its
canonical form, checked for strictly increasing log time, hashed into the RFC 9162 tree
(compared with the stored tree's leaves and with the root of EVERY signed checkpoint,
whose signatures are checked with the log key), every signature by a key the repository
knows is re-verified in batches with the batch verifier's crypto, and every state
transition is replayed by the validating fold. Signed snapshots are compared with the
state folded at their offset.

The scan stops at the first hard failure; the report names the first inconsistency by
offset, segment and byte position, and what is wrong there.

Derived files (the Merkle levels and ``sums.dat``, the index files, the segments'
``.idx`` files) are then compared with what the records give; each one that differs is
reported in :attr:`VerifyReport.derived` by file, with what the next writer open (or
``trustlog log repair``) does about it. A derived file never makes a record look altered:
a stored leaf that differs from its record counts against the record only where no
signed checkpoint vouches for the record.
"""
from __future__ import annotations

import hashlib
import os
import re
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crc32c

from trustlog.core.checkpoint import Checkpoint, SignedCheckpoint, decode_signed_checkpoint, verify_checkpoint
from trustlog.core.errors import EncodingError, InputError, TrustlogError
from trustlog.core.events import Envelope, Event, decode_envelope, decode_event
from trustlog.core.keys import PublicKey
from trustlog.core.merkle import CompactRange, MemoryNodeStore, consistency_proof, leaf_hash, verify_consistency
from trustlog.core.state import RejectedEventError, TrustState
from trustlog.core.crypto_hook import CryptoFn, default_crypto
from trustlog.core.sigcache import CachedSigCheck, CryptoCache, remember

from . import precheck
from .logindex import LogIndex, event_postings
from .pinpolicy import PinPolicy
from .records import LogRecord, decode_record
from .snapshots import SnapshotStore, encode_state, pins_key
from .transparency import origin_for

_SEG_RE = re.compile(r"([0-9]{20})\.seg")
_HEADER = struct.Struct(">II")
_CP_FRAME = struct.Struct(">II")
CHUNK = 2048


@dataclass
class Finding:
    """One inconsistency: where (log offset, segment file, byte position) and what."""

    check: str
    what: str
    offset: int | None = None
    segment: str | None = None
    position: int | None = None

    def describe(self) -> str:
        where = []
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if self.segment is not None:
            where.append(f"segment {self.segment}" + (f" byte {self.position}" if self.position is not None else ""))
        return f"[{self.check}] " + (", ".join(where) + ": " if where else "") + self.what


@dataclass
class VerifyReport:
    directory: str
    log_key: str
    log_key_source: str
    records: int = 0
    segments: int = 0
    checkpoints: int = 0
    checkpoints_verified: int = 0
    signatures_verified: int = 0
    snapshots_verified: int = 0
    witnessed_verified: int = 0
    witnesses: list[dict[str, Any]] = field(default_factory=list)
    rejects: int = 0
    root: str = ""
    first: Finding | None = None
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    derived: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """The evidence (records, checkpoints, signatures, transitions) checks out."""
        return self.first is None

    @property
    def derived_ok(self) -> bool:
        """Every derived file matches the records."""
        return not self.derived

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "directory": self.directory, "log_key": self.log_key,
            "log_key_source": self.log_key_source, "records": self.records, "segments": self.segments,
            "checkpoints": self.checkpoints, "checkpoints_verified": self.checkpoints_verified,
            "signatures_verified": self.signatures_verified, "snapshots_verified": self.snapshots_verified,
            "witnessed_verified": self.witnessed_verified, "witnesses": self.witnesses,
            "rejects": self.rejects,
            "root": self.root, "first_inconsistency": None if self.first is None else vars(self.first),
            "findings": [vars(f) for f in self.findings], "warnings": self.warnings,
            "derived_ok": self.derived_ok, "derived": [vars(f) for f in self.derived],
            "seconds": round(self.seconds, 3),
        }


class _Stop(Exception):
    pass


@dataclass
class _Rec:
    offset: int
    segment: str
    position: int
    body: bytes


def _read_checkpoints(path: Path, report: VerifyReport) -> list[tuple[str, SignedCheckpoint]]:
    out: list[tuple[str, SignedCheckpoint]] = []
    if not path.is_file():
        return out
    from .merkle_store import frame_is_torn

    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        torn = frame_is_torn(data, pos)
        if torn is not None:
            report.warnings.append(f"{path.name}: ends in a torn frame at byte {pos} ({torn}: an interrupted "
                                   "write; ignored, the next writer open cuts it)")
            break
        length, crc = _CP_FRAME.unpack_from(data, pos)
        end = pos + _CP_FRAME.size + length
        payload = data[pos + _CP_FRAME.size:end]
        if crc32c.crc32c(payload) != crc:
            last = "the last frame, complete, " if end == len(data) else ""
            raise _Stop(Finding("checkpoint", f"checkpoints.log frame at byte {pos} ({last}not a torn write) fails "
                                "its CRC: the file was altered; kept as evidence",
                                segment="merkle/checkpoints.log", position=pos))
        try:
            out.append((f"checkpoints.log #{len(out)}", decode_signed_checkpoint(payload)))
        except EncodingError as e:
            raise _Stop(Finding("checkpoint", f"checkpoints.log frame at byte {pos} does not decode: {e}",
                                segment="merkle/checkpoints.log", position=pos)) from e
        pos = end
    return out


def _iter_segments(log_dir: Path, report: VerifyReport) -> Iterator[_Rec]:
    """Every record of every segment, read-only, in offset order; raises _Stop at the
    first damaged frame (a torn last record of the last segment is only a warning)."""
    bases = sorted(int(m.group(1)) for p in log_dir.iterdir() if (m := _SEG_RE.fullmatch(p.name)))
    report.segments = len(bases)
    if not bases:
        return
    offset = 0
    for si, base in enumerate(bases):
        name = f"{base:020d}.seg"
        last = si == len(bases) - 1
        if base != offset:
            raise _Stop(Finding(
                "segments", f"segment starts at offset {base} but the segments before it hold {offset} records: "
                f"records were {'removed' if base > offset else 'inserted'} before it", offset=offset, segment=name))
        data = (log_dir / name).read_bytes()
        pos, size = 0, len(data)
        while pos < size:
            torn = size - pos < _HEADER.size
            if not torn:
                length, crc = _HEADER.unpack_from(data, pos)
                end = pos + _HEADER.size + length
                torn = end > size
            if torn:
                if last:
                    report.warnings.append(f"{name}: ends in a torn record of {size - pos} bytes at byte {pos} "
                                           "(an interrupted write; the next open cuts it)")
                    return
                raise _Stop(Finding("crc", "segment ends inside a record (only the last segment may)",
                                    offset=offset, segment=name, position=pos))
            body = data[pos + _HEADER.size:end]
            if crc32c.crc32c(body, crc32c.crc32c(data[pos:pos + 4])) != crc:
                if last and end == size:
                    report.warnings.append(f"{name}: last record at byte {pos} fails its CRC "
                                           "(an interrupted write; the next open cuts it)")
                    return
                raise _Stop(Finding("crc", f"record frame fails its CRC-32C (length {length})",
                                    offset=offset, segment=name, position=pos))
            yield _Rec(offset, name, pos, body)
            offset += 1
            pos = end


def verify_log(
    directory: str | os.PathLike[str],
    log_key: PublicKey | None = None,
    *,
    checkpoints: Sequence[SignedCheckpoint] = (),
    witnessed: Sequence[tuple[str, SignedCheckpoint]] = (),
    witnesses: Sequence[Any] = (),
    crypto: CryptoFn | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Audit the log in ``directory``; see the module docstring. ``log_key`` defaults
    to ``DIR/log.pub`` (then the report says so: an independent audit passes the key
    obtained out of band). ``checkpoints`` are extra signed checkpoints (e.g. kept by a
    witness) checked like the stored ones. ``witnessed`` are ``(label, checkpoint)``
    pairs read back from places off the host (``trustlog.ingest.witness``): each is
    checked like a stored one and, in addition, an RFC 9162 consistency proof from its
    size to the log's full tree, built from the re-read records, must verify against
    its signed root and today's root. ``witnesses`` are places
    (:func:`trustlog.ingest.witness.parse_spec`) to read such checkpoints from; one that
    cannot be read, holds none of this log, or lacks a valid cosignature is a finding."""
    from .transparency import load_public_key

    t0 = time.perf_counter()
    d = Path(directory)
    source = "given"
    if log_key is None:
        log_key = load_public_key(d / "log.pub")
        source = f"{d / 'log.pub'} (from the log directory itself; pass --log-key for an independent audit)"
    report = VerifyReport(str(d), log_key.keyid, source)
    witnessed = list(witnessed) + _collect_witnessed(witnesses, log_key, report)
    if source != "given" and any(getattr(p, "kind", "") in ("file", "kafka") for p in witnesses):
        report.warnings.append("the log key came from the log directory: a host that replaced it can publish "
                               "a new identity to file: and kafka: places; pass --log-key for them to count")
    committed: list[tuple[str, Checkpoint]] = []
    try:
        _verify(d, log_key, list(checkpoints), witnessed, crypto or default_crypto(), report, progress, committed)
    except _Stop as stop:
        report.findings.append(stop.args[0])
    _verify_rejects(d, committed, report)
    if report.findings:
        with_offset = [f for f in report.findings if f.offset is not None]
        report.first = min(with_offset, key=lambda f: f.offset) if with_offset else report.findings[0]  # type: ignore[arg-type,return-value]
    report.seconds = time.perf_counter() - t0
    return report


def _collect_witnessed(places: Sequence[Any], key: PublicKey, report: VerifyReport) -> list[tuple[str, SignedCheckpoint]]:
    from .witness import WitnessError, collect

    out: list[tuple[str, SignedCheckpoint]] = []
    for place in places:
        try:
            got = collect(place, key, origin_for(key))
        except InputError:
            raise
        except (WitnessError, TrustlogError) as e:
            report.findings.append(Finding("witness", f"{place.spec}: {e}"))
            report.witnesses.append({"spec": place.spec, "checkpoints": 0, "error": str(e)})
            continue
        if not got:
            report.findings.append(Finding("witness", f"{place.spec} holds no checkpoint of this log "
                                           "(it was never published there, or the log is another one)"))
        sizes = [w.signed for w in got]
        report.witnesses.append({"spec": place.spec, "checkpoints": len(got),
                                 "cosigned": [w.cosigned for w in got if w.cosigned is not None],
                                 "largest": max((_size(s) for s in sizes), default=None)})
        out += [(w.label, w.signed) for w in got]
    return out


def _size(signed: SignedCheckpoint) -> int | None:
    from trustlog.core.checkpoint import decode_checkpoint

    try:
        return decode_checkpoint(signed.checkpoint).tree_size
    except TrustlogError:
        return None


def _verify_rejects(d: Path, committed: list[tuple[str, Checkpoint]], report: VerifyReport) -> None:
    """The rejects log against every checkpoint's commitment to it (size and root)."""
    from trustlog.core.merkle import MemoryNodeStore

    from .segment_log import SegmentLog

    rdir = d / "rejects"
    signed = [(name, cp) for name, cp in committed if cp.rejects_root]
    if not signed:
        if committed:
            report.warnings.append("no checkpoint commits to the rejects log (made by an older version)")
        return
    if not rdir.is_dir():
        name, cp = max(signed, key=lambda c: c[1].rejects_size)
        report.findings.append(Finding("rejects", f"{rdir} is missing, but {name} committed to {cp.rejects_size} "
                                       "rejected inputs: the rejects log was deleted", segment="rejects"))
        return
    tree = MemoryNodeStore()
    try:
        with SegmentLog.open(rdir, read_only=True, verify=True) as seglog:
            for _, body in seglog.scan():
                tree.append(leaf_hash(body))
    except TrustlogError as e:
        report.findings.append(Finding("rejects", f"{rdir}: {e}", segment="rejects"))
        return
    report.rejects = tree.size
    for name, cp in signed:
        if tree.size < cp.rejects_size:
            report.findings.append(Finding("rejects", f"{rdir} holds {tree.size} rejected inputs but {name} committed "
                                           f"to {cp.rejects_size}: rejects were removed", segment="rejects"))
            return
        if tree.root_at(cp.rejects_size) != cp.rejects_root:
            report.findings.append(Finding("rejects", f"the first {cp.rejects_size} rejected inputs in {rdir} do not "
                                           f"hash to the root {name} committed to: the rejects log was replaced or "
                                           "altered", segment="rejects"))
            return


def _verify(d: Path, key: PublicKey, extra: list[SignedCheckpoint], witnessed: list[tuple[str, SignedCheckpoint]],
            crypto: CryptoFn, report: VerifyReport, progress: Callable[[int], None] | None,
            committed: list[tuple[str, Checkpoint]]) -> None:
    if not (d / "log").is_dir():
        raise _Stop(Finding("segments", f"no log at {d / 'log'}"))
    # (1) checkpoints: every signature, before any record is read
    cps = _read_checkpoints(d / "merkle" / "checkpoints.log", report)
    cps += [(f"given checkpoint #{i}", s) for i, s in enumerate(extra)]
    cps += [(f"witnessed checkpoint ({label})", s) for label, s in witnessed]
    witnessed_cps: list[tuple[str, Checkpoint]] = []
    report.checkpoints = len(cps)
    by_size: dict[int, list[tuple[str, Checkpoint]]] = {}
    prev_size = -1
    for name, signed in cps:
        try:
            cp = verify_checkpoint(signed, key, origin=origin_for(key))
        except TrustlogError as e:
            raise _Stop(Finding("checkpoint", f"{name} is not a valid checkpoint of this log: {e}")) from e
        if name.startswith("checkpoints.log"):
            if cp.tree_size < prev_size:
                raise _Stop(Finding("checkpoint", f"{name} (size {cp.tree_size}) follows one of size {prev_size}: "
                                    "checkpoints were reordered"))
            prev_size = cp.tree_size
        by_size.setdefault(cp.tree_size, []).append((name, cp))
        if name.startswith("witnessed"):
            witnessed_cps.append((name, cp))
        committed.append((name, cp))
        report.checkpoints_verified += 1
    if not cps:
        report.warnings.append("no signed checkpoint: the records cannot be tied to anything the log key signed")
    # (2) stored tree leaves: only to localise a difference (the tree files are not trusted)
    stored_leaves = b""
    lp = d / "merkle" / "leaves.hashes"
    if lp.is_file():
        stored_leaves = lp.read_bytes()
    n_stored = len(stored_leaves) // 32
    first_leaf_diff: _Rec | None = None
    leaves = bytearray()
    mem_index = LogIndex(d / "index")
    # (3) snapshots, compared with the fold at their offsets
    snaps = {}
    sstore = SnapshotStore(d / "snapshots", key)
    for s in sstore.list():
        snaps[s.header.offset] = s
    for note in sstore.skipped:
        report.findings.append(Finding("snapshot", f"snapshot {note}"))
    if (d / "snapshots").is_dir():
        for aside in sorted((d / "snapshots").glob("*.damaged")):
            report.warnings.append(f"snapshots/{aside.name}: a damaged snapshot `trustlog log repair` set aside "
                                   "(kept for inspection; not used)")
    # (4) the log's pin policy (signed by the log key, chained); it holds for the whole log
    try:
        policy = PinPolicy.load(d, key)
    except TrustlogError as e:
        raise _Stop(Finding("pins", str(e))) from e
    pins = policy.pins
    # each policy entry names the log's size and Merkle root when it was set
    policy_roots: dict[int, list[tuple[int, str]]] = {}
    for entry in policy.entries:
        policy_roots.setdefault(entry.offset, []).append((entry.version, entry.root))

    def check_policy_roots(size: int, root: bytes) -> None:
        for version, want in policy_roots.pop(size, ()):
            if want != root.hex():
                report.findings.append(Finding(
                    "pins", f"pin-policy entry {version} was set at log size {size} with root {want[:16]}…, but "
                    f"records [0, {size}) hash to {root.hex()[:16]}…: the log or {policy.path.name} was altered",
                    offset=max(size - 1, 0)))
    check_policy_roots(0, CompactRange().root())
    if 0 in snaps:
        _check_snapshot(sstore, snaps.pop(0), TrustState(pins), report)
    # (5) the records
    state = TrustState(pins)
    cache = CryptoCache()
    cr = CompactRange()
    wtree: MemoryNodeStore | None = MemoryNodeStore() if witnessed_cps else None
    last_time = -1
    chunk: list[tuple[_Rec, LogRecord, Envelope, Event]] = []

    def count_verified() -> None:
        report.signatures_verified += 1

    sigcheck = CachedSigCheck(cache, crypto, on_verify=count_verified)

    def fold(items: list[tuple[_Rec, LogRecord, Envelope, Event]]) -> None:
        _precheck(state, [(env, ev) for _, _, env, ev in items], cache, crypto, report)
        for r, rec, env, ev in items:
            postings = event_postings(state, env, ev)
            try:
                state.apply(env, log_time=rec.log_time, offset=r.offset, sigcheck=sigcheck, event=ev)
            except RejectedEventError as e:
                raise _Stop(Finding("fold", f"the fold rejects this record: {e.reason}: {e.message}",
                                    r.offset, r.segment, r.position)) from e
            mem_index.add_event(r.offset, rec.log_time, ev, *postings)
            snap = snaps.pop(r.offset + 1, None)
            if snap is not None:
                _check_snapshot(sstore, snap, state, report)

    try:
        for r in _iter_segments(d / "log", report):
            try:
                rec = decode_record(r.body)
                env = decode_envelope(rec.envelope, max_bytes=1 << 30)
                ev = decode_event(env.payload)
            except EncodingError as e:
                raise _Stop(Finding("decode", f"record is not a canonical LogRecord/Envelope/event: {e}",
                                    r.offset, r.segment, r.position)) from e
            if rec.log_time <= last_time:
                raise _Stop(Finding("order", f"log time {rec.log_time} is not after the previous record's "
                                    f"{last_time}: records were reordered or inserted", r.offset, r.segment, r.position))
            last_time = rec.log_time
            leaf = leaf_hash(r.body)
            leaves += leaf
            if first_leaf_diff is None and r.offset < n_stored and \
                    stored_leaves[32 * r.offset:32 * r.offset + 32] != leaf:
                first_leaf_diff = r
            cr.append(leaf)
            if wtree is not None:
                wtree.append(leaf)
            report.records = r.offset + 1
            if policy_roots:
                check_policy_roots(cr.size, cr.root())
            chunk.append((r, rec, env, ev))
            for name, cp in by_size.get(cr.size, ()):
                if cp.root_hash == cr.root() and first_leaf_diff is not None:
                    # the record is what was signed: the stored leaf is what is wrong
                    report.derived.append(Finding(
                        "derived", f"leaf {first_leaf_diff.offset} is not the hash of record "
                        f"{first_leaf_diff.offset}, which {name} vouches for: the derived file is damaged, not "
                        "the record (the next writer open or `trustlog log repair` rebuilds it from the segments)",
                        first_leaf_diff.offset, "merkle/leaves.hashes", 32 * first_leaf_diff.offset))
                    first_leaf_diff = None
                if cp.root_hash != cr.root():
                    if first_leaf_diff is not None:
                        report.findings.append(Finding(
                            "merkle", "record is not the one the log's Merkle tree holds at this offset (its leaf "
                            "hash differs) and the signed root differs: it was altered, removed, inserted or moved",
                            first_leaf_diff.offset, first_leaf_diff.segment, first_leaf_diff.position))
                    items, chunk = chunk, []
                    try:        # what the fold says about the records read so far
                        fold(items)
                    except _Stop as fold_stop:
                        report.findings.append(fold_stop.args[0])
                    hint = first_leaf_diff
                    raise _Stop(Finding(
                        "checkpoint", f"records [0, {cr.size}) hash to root {cr.root().hex()[:16]}… but {name} "
                        f"signed root {cp.root_hash.hex()[:16]}…: the log or the checkpoint was altered"
                        + (f"; the first record differing from the stored tree is offset {hint.offset}" if hint else ""),
                        hint.offset if hint else r.offset, hint.segment if hint else r.segment,
                        hint.position if hint else r.position))
            if len(chunk) >= CHUNK:
                items, chunk = chunk, []
                fold(items)
                if progress:
                    progress(report.records)
        items, chunk = chunk, []
        fold(items)
    except _Stop as stop:
        if first_leaf_diff is not None and not any(f.check == "merkle" for f in report.findings):
            r = first_leaf_diff
            report.findings.append(Finding(
                "merkle", "record is not the one the log's Merkle tree holds at this offset (its leaf hash "
                "differs), before the scan stopped: it was altered, removed, inserted or moved",
                r.offset, r.segment, r.position))
        # fold what was read before a hard failure: an earlier fold error comes first
        if chunk:
            f = stop.args[0]
            try:
                fold([c for c in chunk if f.offset is None or c[0].offset < f.offset])
            except _Stop as earlier:
                report.findings.append(earlier.args[0])
        raise
    if progress:
        progress(report.records)
    n = report.records
    report.root = cr.root().hex()
    for size in sorted(policy_roots):
        report.findings.append(Finding("pins", f"pin-policy entry {policy_roots[size][0][0]} was set at log size "
                                       f"{size}, but the log holds {n} records: records were removed",
                                       offset=min(size, n)))
    for size in sorted(by_size):
        if size > n:
            for name, _cp in by_size[size]:
                raise _Stop(Finding("checkpoint", f"{name} signed {size} records but the log holds {n}: "
                                    "records were removed from the end", offset=n))
    if wtree is not None:
        _check_witnessed(witnessed_cps, wtree, cr.root(), n, report)
    if first_leaf_diff is not None:
        r = first_leaf_diff
        report.findings.append(Finding(
            "merkle", "record differs from the stored tree's leaf, and no signed checkpoint covers it yet: the "
            "record or merkle/leaves.hashes was changed", r.offset, r.segment, r.position))
    if n_stored > n and first_leaf_diff is None:
        report.findings.append(Finding("merkle", f"the stored tree holds {n_stored} leaves but the log {n} records",
                                       offset=n))
    _check_derived(d, bytes(leaves), mem_index, max((s for s in by_size if s <= n), default=0), report)
    for off, snap in snaps.items():
        report.findings.append(Finding("snapshot", f"{snap.path.name} is at offset {off}, past the log's end ({n})",
                                       offset=min(off, n)))


def _check_witnessed(witnessed: list[tuple[str, Checkpoint]], leaves: MemoryNodeStore, root: bytes, n: int,
                     report: VerifyReport) -> None:
    """A consistency proof from every witnessed checkpoint to today's tree of ``n``
    records (whose roots at the witnessed sizes were already compared on the way)."""
    for name, cp in witnessed:
        try:
            proof = consistency_proof(cp.tree_size, n, leaves) if 0 < cp.tree_size < n else []
            verify_consistency(cp.tree_size, n, cp.root_hash, root, proof)
        except TrustlogError as e:
            raise _Stop(Finding("witness", f"{name}: no consistency from its size {cp.tree_size} to today's "
                                f"tree of {n} records: {e}", offset=min(cp.tree_size, n))) from e
        report.witnessed_verified += 1


def _check_derived(d: Path, leaves: bytes, mem_index: LogIndex, signed: int, report: VerifyReport) -> None:
    """Compare every derived file with what the records give (see the module docstring);
    ``signed``: the largest tree size a checkpoint signed (the tree must hold it)."""
    from .merkle_store import SUMS_FILE, MerkleStore, _parents, level_file_name
    from .segment_log import SegmentLog

    fix = "the next writer open or `trustlog log repair` rebuilds it from the segments"
    n = len(leaves) // 32
    # Merkle levels: every stored hash against the one computed from the records
    level, want = 0, leaves
    mdir = d / "merkle"
    while want:
        name = level_file_name(level)
        got = (mdir / name).read_bytes() if (mdir / name).is_file() else b""
        if level and not any(f.segment == f"merkle/{name}" for f in report.derived):
            limit = min(len(got), len(want)) // 32 * 32
            bad = next((i for i in range(0, limit, 32) if got[i:i + 32] != want[i:i + 32]), None)
            if bad is not None:
                report.derived.append(Finding("derived", f"subtree hash ({level}, {bad // 32}) is not the hash of "
                                              f"its children computed from the records; {fix}",
                                              segment=f"merkle/{name}", position=bad))
        if len(got) // 32 < signed >> level:
            report.derived.append(Finding("derived", f"holds {len(got) // 32} hashes, {signed >> level} are "
                                          f"signed; {fix}", segment=f"merkle/{name}", position=len(got)))
        elif len(got) // 32 < len(want) // 32:
            report.warnings.append(f"merkle/{name} holds {len(got) // 32} of {len(want) // 32} hashes "
                                   "(normal after a crash; the next writer open completes it)")
        if len(want) < 64:
            break
        want, level = _parents(want[:len(want) // 64 * 64]), level + 1
    if (mdir / SUMS_FILE).is_file() and (mdir / "leaves.hashes").is_file():
        store = MerkleStore.open(mdir, read_only=True)
        try:
            latest = store.checkpoints.latest_checkpoint()
            size = latest.tree_size if latest else 0
            if size <= store.size:
                if size < store.size:
                    store.truncate(size)
                level_bad = any((f.segment or "").startswith("merkle/") for f in report.derived)
                problems = store.check(size)
                if store.sums_problem:
                    problems.insert(0, store.sums_problem)
                for p in problems:
                    if p.startswith(SUMS_FILE):
                        report.derived.append(Finding("derived", f"{p}; {fix}", segment=f"merkle/{SUMS_FILE}"))
                    elif not level_bad:   # the level files match the records: the checksum is what is wrong
                        report.derived.append(Finding("derived", f"{p}, but the level file matches the records: "
                                                      f"the checksum is wrong; {fix}", segment=f"merkle/{SUMS_FILE}"))
        except TrustlogError as e:
            report.derived.append(Finding("derived", f"{e}; {fix}", segment="merkle"))
        finally:
            store.close()
    # the index: structure and checksums, then every posting against the records
    if (d / "index").is_dir():
        idx = LogIndex.open(d / "index", read_only=True)
        try:
            if idx.rebuilt_because:
                first = idx.rebuilt_because.split()[0]
                report.derived.append(Finding("derived", f"{idx.rebuilt_because}; {fix}",
                                              segment="index/" + first if first.endswith(".dat") else "index"))
            elif idx.covered > n:
                report.derived.append(Finding("derived", f"covers {idx.covered} records, the log holds {n}; {fix}",
                                              segment="index"))
            elif idx.names != mem_index.names[:len(idx.names)]:
                bad = next((i for i, (a, b) in enumerate(zip(idx.names, mem_index.names)) if a != b),
                           len(mem_index.names))
                report.derived.append(Finding("derived", f"name #{bad} ({idx.names[bad]!r}) is not the one the "
                                              f"records give; {fix}", segment="index/names.dat"))
            else:
                for name in idx.names:
                    stored = idx.postings(name)
                    computed = [p for p in mem_index.postings(name) if p.offset < idx.covered]
                    if stored != computed:
                        report.derived.append(Finding("derived", f"the postings of {name!r} differ from the "
                                                      f"records'; {fix}", segment="index/postings.dat"))
                        break
        except TrustlogError as e:
            report.derived.append(Finding("derived", f"{e}; {fix}", segment="index"))
        finally:
            idx.close()
    # the segments' sparse offset indexes
    for sub in ("log", "rejects"):
        if not (d / sub).is_dir():
            continue
        try:
            with SegmentLog.open(d / sub, read_only=True, verify=False) as seglog:
                for name in seglog.rebuilt_indexes:
                    report.derived.append(Finding("derived", f"missing or does not match its segment; {fix}",
                                                  segment=f"{sub}/{name}"))
        except TrustlogError:
            pass  # damage to the segments themselves is reported by the scan


def _check_snapshot(store: SnapshotStore, snap, state: TrustState, report: VerifyReport) -> None:
    if snap.header.pins != pins_key(state.pins):
        report.warnings.append(f"{snap.path.name} was made under another pin policy; not compared")
        return
    try:
        body_ok = hashlib.sha256(encode_state(state, snap.header.format)).digest() == snap.header.body_sha256
        store.check_body(snap)
    except TrustlogError as e:
        report.findings.append(Finding("snapshot", f"{snap.path.name}: {e}", offset=snap.header.offset))
        return
    if not body_ok:
        report.findings.append(Finding("snapshot", f"{snap.path.name} does not equal the state folded from the "
                                       "log at its offset", offset=snap.header.offset))
        return
    report.snapshots_verified += 1


def _precheck(state: TrustState, decoded: list[tuple[Envelope, Event]], cache: CryptoCache, crypto: CryptoFn,
              report: VerifyReport) -> None:
    """Verify in one batch every signature by a key the repository knows (or that an
    event of this chunk introduces, when valid); the fold then finds them in the cache.
    The same plan, with the same bounds, as ingest (see :mod:`.precheck`)."""
    cks, items = precheck.plan(state, decoded, {}, cache)
    if items:
        remember(cache, cks, crypto(items))  # a failed check is not stored: the fold checks it again
        report.signatures_verified += len(items)
