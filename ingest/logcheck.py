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
from trustlog.core.errors import EncodingError, TrustlogError
from trustlog.core.events import Envelope, Event, RepoCreated, RootRotated, decode_envelope, decode_event
from trustlog.core.keys import PublicKey
from trustlog.core.merkle import CompactRange, leaf_hash
from trustlog.core.state import RejectedEventError, TrustState
from trustlog.verifier.cache import CryptoCache, cache_key

from .pinpolicy import PinPolicy
from .records import LogRecord, decode_record
from .snapshots import SnapshotStore, encode_state, pins_key
from .transparency import origin_for

CryptoFn = Callable[[Sequence[tuple[int, bytes, bytes, bytes]]], Sequence[int]]
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
    root: str = ""
    first: Finding | None = None
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.first is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "directory": self.directory, "log_key": self.log_key,
            "log_key_source": self.log_key_source, "records": self.records, "segments": self.segments,
            "checkpoints": self.checkpoints, "checkpoints_verified": self.checkpoints_verified,
            "signatures_verified": self.signatures_verified, "snapshots_verified": self.snapshots_verified,
            "root": self.root, "first_inconsistency": None if self.first is None else vars(self.first),
            "findings": [vars(f) for f in self.findings], "warnings": self.warnings,
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
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        if len(data) - pos < _CP_FRAME.size:
            report.warnings.append(f"{path.name}: ends in a torn frame at byte {pos} (a crash; ignored)")
            break
        length, crc = _CP_FRAME.unpack_from(data, pos)
        end = pos + _CP_FRAME.size + length
        payload = data[pos + _CP_FRAME.size:end]
        if end > len(data):
            report.warnings.append(f"{path.name}: ends in a torn frame at byte {pos} (a crash; ignored)")
            break
        if crc32c.crc32c(payload) != crc:
            raise _Stop(Finding("checkpoint", f"checkpoints.log frame at byte {pos} fails its CRC: the file was altered",
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
    crypto: CryptoFn | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Audit the log in ``directory``; see the module docstring. ``log_key`` defaults
    to ``DIR/log.pub`` (then the report says so: an independent audit passes the key
    obtained out of band). ``checkpoints`` are extra signed checkpoints (e.g. kept by a
    witness) checked like the stored ones."""
    from .transparency import load_public_key
    from trustlog.verifier.batch import default_crypto

    t0 = time.perf_counter()
    d = Path(directory)
    source = "given"
    if log_key is None:
        log_key = load_public_key(d / "log.pub")
        source = f"{d / 'log.pub'} (from the log directory itself; pass --log-key for an independent audit)"
    report = VerifyReport(str(d), log_key.keyid, source)
    try:
        _verify(d, log_key, list(checkpoints), crypto or default_crypto(), report, progress)
    except _Stop as stop:
        report.findings.append(stop.args[0])
    if report.findings:
        with_offset = [f for f in report.findings if f.offset is not None]
        report.first = min(with_offset, key=lambda f: f.offset) if with_offset else report.findings[0]  # type: ignore[arg-type,return-value]
    report.seconds = time.perf_counter() - t0
    return report


def _verify(d: Path, key: PublicKey, extra: list[SignedCheckpoint], crypto: CryptoFn, report: VerifyReport,
            progress: Callable[[int], None] | None) -> None:
    if not (d / "log").is_dir():
        raise _Stop(Finding("segments", f"no log at {d / 'log'}"))
    # (1) checkpoints: every signature, before any record is read
    cps = _read_checkpoints(d / "merkle" / "checkpoints.log", report)
    cps += [(f"given checkpoint #{i}", s) for i, s in enumerate(extra)]
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
    # (3) snapshots, compared with the fold at their offsets
    snaps = {}
    sstore = SnapshotStore(d / "snapshots", key)
    for s in sstore.list():
        snaps[s.header.offset] = s
    for note in sstore.skipped:
        report.findings.append(Finding("snapshot", f"snapshot {note}"))
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
    last_time = -1
    chunk: list[tuple[_Rec, LogRecord, Envelope, Event]] = []

    def sigcheck(k: PublicKey, message: bytes, signature: bytes) -> bool:
        ck = cache_key(k.alg, k.public, message, signature)
        v = cache.get(ck)
        if v is None:
            v = crypto([(k.alg, k.public, message, signature)])[0] == 1
            cache.put(ck, v)
            report.signatures_verified += 1
        return v

    def fold(items: list[tuple[_Rec, LogRecord, Envelope, Event]]) -> None:
        _precheck(state, [(env, ev) for _, _, env, ev in items], cache, crypto, report)
        for r, rec, env, ev in items:
            try:
                state.apply(env, log_time=rec.log_time, offset=r.offset, sigcheck=sigcheck, event=ev)
            except RejectedEventError as e:
                raise _Stop(Finding("fold", f"the fold rejects this record: {e.reason}: {e.message}",
                                    r.offset, r.segment, r.position)) from e
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
            if first_leaf_diff is None and r.offset < n_stored and \
                    stored_leaves[32 * r.offset:32 * r.offset + 32] != leaf:
                first_leaf_diff = r
                report.findings.append(Finding(
                    "merkle", "record is not the one the log's Merkle tree holds at this offset (its leaf hash "
                    "differs): it was altered, removed, inserted or moved", r.offset, r.segment, r.position))
            cr.append(leaf)
            report.records = r.offset + 1
            if policy_roots:
                check_policy_roots(cr.size, cr.root())
            chunk.append((r, rec, env, ev))
            for name, cp in by_size.get(cr.size, ()):
                if cp.root_hash != cr.root():
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
    if n_stored > n and first_leaf_diff is None:
        report.findings.append(Finding("merkle", f"the stored tree holds {n_stored} leaves but the log {n} records",
                                       offset=n))
    for off, snap in snaps.items():
        report.findings.append(Finding("snapshot", f"{snap.path.name} is at offset {off}, past the log's end ({n})",
                                       offset=min(off, n)))


def _check_snapshot(store: SnapshotStore, snap, state: TrustState, report: VerifyReport) -> None:
    if snap.header.pins != pins_key(state.pins):
        report.warnings.append(f"{snap.path.name} was made under another pin policy; not compared")
        return
    try:
        body_ok = hashlib.sha256(encode_state(state)).digest() == snap.header.body_sha256
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
    """Verify in one batch every signature by a key the repository knows (or that the
    event introduces); signatures the fold then needs come from the cache."""
    items: list[tuple[int, bytes, bytes, bytes]] = []
    cks: list[bytes] = []
    for env, event in decoded:
        repo = state.repos.get(event.repo)
        known = repo.keys if repo is not None else {}
        extra = {}
        if isinstance(event, RepoCreated):
            extra = {k.keyid: k for k in (*event.root_keys, *event.targets_keys)}
        elif isinstance(event, RootRotated):
            extra = {k.keyid: k for k in event.root_keys}
        for s in env.signatures:
            k = known.get(s.keyid) or extra.get(s.keyid)
            if k is None:
                continue
            try:
                alg = k.alg
            except TrustlogError:
                continue
            ck = cache_key(alg, k.public, env.payload, s.sig)
            if ck not in cache:
                cks.append(ck)
                items.append((alg, k.public, env.payload, s.sig))
    if items:
        for ck, ok in zip(cks, crypto(items), strict=True):
            cache.put(ck, ok == 1)
        report.signatures_verified += len(items)
