"""Replay and audit at scale: rebuild the trust state from a log of N events, and answer
a key-compromise audit, side by side with the naive way.

    python benchmarks/replay.py --n 1000000 [--json] [--cache DIR]

The log is generated once per N and kept in the cache directory (default
``$TRUSTLOG_BENCH_CACHE`` or ``/tmp/trustlog-bench``): a registry of N/200 repositories,
each with its own root and targets keys and a CI signer drawn from a shared pool (one
CI key per ~20 repositories), tags re-signed over time (20 tags per repository). Every
event is really signed (Ed25519), by ``--sign-workers`` processes beside this one; the
envelopes go into the log through its own parts (:class:`TrustedAppend`: the trusted
fold, the same records, Merkle leaves, index entries and signed checkpoints as ingest
writes) without re-verifying the signatures just made, so 10M events take minutes. The
result is an ordinary log: ``trustlog log verify --log DIR`` passes on it
(``tests/test_bench_generate.py``). ``--generate-only`` makes the log and stops.

Figures, each against its baseline:

* ``replay_per_s``: the state rebuilt from the whole log by the trusted fold (no
  signature re-verification; integrity is the Merkle tree's), events per second, on the
  compiled fold; ``replay_py_per_s`` the pure-Python ``TrustedFold`` in the same run
  (their states must be equal) and ``replay_ratio`` the speed-up;
  ``verified_replay_per_s``: the validating fold that re-verifies every signature
  (measured on a prefix), for comparison;
* ``open_*_s``: opening the log (TrustLog) from no snapshot (median of ``--repeat``;
  ``open_outside_fold_s`` the part of it outside ``fold_segments``) and from a snapshot;
* ``audit_ms``: the audit of one CI key (what it signed, split at the compromise
  point, blast radius, what-if verdicts) from the indexes; ``audit_scan_ms``: the naive
  way, a full scan of the log for that key's signatures.

Before every timed fold and open the process-wide key caches are emptied
(:func:`trustlog.core.keys.clear_key_caches`: Ed25519 point checks, key identities), so each
run pays what a fresh process pays, not the run before it.

With ``--json`` the last line is one JSON object with these figures.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

from trustlog.core.events import ImageSigned, RepoCreated, RoleKeysSet, sign_event
from trustlog.core.keys import SigningKey

FAR = 4_102_444_800
TAGS_PER_REPO = 20
REPO_EVENTS = 200          # events per repository on average
CI_SHARE = 20              # repositories per CI key
FORMAT = "v2"               # the record format written (ingest/record_v2.py); --format v1 for the old one


def trust_all(items):
    """The signature check of a generated log: every signature was made right here."""
    return [1] * len(items)


class BatchedIngest:
    """Envelopes into the open log ``tl`` in batches of 4,096 (every one must be
    accepted), with a progress line on stderr every ``progress_every`` events; shared
    with ``benchmarks/serve.py``, whose generator writes the same way."""

    def __init__(self, tl, progress_every: int = 0, total: int | None = None) -> None:
        self.tl, self.progress_every, self.total = tl, progress_every, total
        self.batch: list[tuple[bytes, None]] = []
        self.made = 0
        self.t0 = time.perf_counter()

    def __call__(self, env) -> None:
        self.batch.append((env.to_bytes(), None))
        self.made += 1
        if len(self.batch) >= 4096:
            self.flush()
            if self.progress_every and self.made % self.progress_every < 4096:
                of = f"/{self.total:,}" if self.total else ""
                rate = self.made / (time.perf_counter() - self.t0)
                print(f"  generated {self.made:,}{of} events ({rate:,.0f}/s)", file=sys.stderr)

    def flush(self) -> None:
        if self.batch:
            r = self.tl.ingest_batch(self.batch)
            assert r.accepted == len(self.batch), r
            self.batch.clear()


class Plan:
    """The benchmark's registry: event ``i`` of a log of ``n`` as a function of ``i``
    alone, so that signing can be split between processes and the log is the same
    whoever signed which part. ``2 * repos`` set-up events (each repository's
    ``RepoCreated`` and its CI ``RoleKeysSet``), then rounds over the repositories, each
    re-signing one of its tags (3 in 4 by the CI signer, 1 in 4 by the targets key)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.repos = max(10, n // REPO_EVENTS)
        self.seed = f"bench/{n}"
        self.ci = [SigningKey.from_seed(f"{self.seed}/ci/{i}".encode()) for i in range(max(2, self.repos // CI_SHARE))]
        self._targets: dict[int, SigningKey] = {}

    def name(self, r: int) -> str:
        return f"registry.example.com/org{r % 97}/app{r}"

    def targets(self, r: int) -> SigningKey:
        k = self._targets.get(r)
        if k is None:
            k = self._targets[r] = SigningKey.from_seed(f"{self.seed}/{r}/targets".encode())
        return k

    def envelope(self, i: int):
        """The signed envelope of event ``i``."""
        if i < 2 * self.repos:
            r, second = divmod(i, 2)
            name, targets, signer = self.name(r), self.targets(r), self.ci[r % len(self.ci)]
            if not second:
                root = SigningKey.from_seed(f"{self.seed}/{r}/root".encode())
                return sign_event(RepoCreated(name, 1, 1_700_000_000, [root.public_key], 1, [targets.public_key], 1,
                                              FAR), [root])
            return sign_event(RoleKeysSet(name, 2, 1_700_000_000, "targets/ci", [signer.public_key], 1, FAR,
                                          ["build-*"]), [targets])
        rnd, r = divmod(i - 2 * self.repos, self.repos)
        name = self.name(r)
        v = rnd + 3
        k = (rnd * 7 + v) % TAGS_PER_REPO
        digest = "sha256:" + hashlib.sha256(f"{name}:{v}".encode()).hexdigest()
        if v % 4:
            ev = ImageSigned(name, v, 1_700_000_000 + v, "targets/ci", f"build-{k}", digest, 1000 + v, FAR)
            return sign_event(ev, [self.ci[r % len(self.ci)]])
        ev = ImageSigned(name, v, 1_700_000_000 + v, "targets", f"v1.{k}", digest, 1000 + v, FAR)
        return sign_event(ev, [self.targets(r)])


_plan: Plan | None = None


def _init_signer(n: int) -> None:
    global _plan
    _plan = Plan(n)


def _sign_range(lo: int, hi: int) -> list[bytes]:
    """Events ``[lo, hi)`` as canonical envelope bytes (in a signing process)."""
    assert _plan is not None
    return [_plan.envelope(i).to_bytes() for i in range(lo, hi)]


def signed_envelopes(n: int, workers: int, chunk: int = 8192):
    """The ``n`` envelopes of :class:`Plan` in order, as canonical bytes, signed by
    ``workers`` processes (0: in this one) a bounded number of chunks ahead."""
    if workers <= 0:
        _init_signer(n)
        for lo in range(0, n, chunk):
            yield from _sign_range(lo, min(n, lo + chunk))
        return
    import collections
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, initializer=_init_signer, initargs=(n,)) as pool:
        ahead: collections.deque = collections.deque()
        starts = iter(range(0, n, chunk))
        for lo in starts:
            ahead.append(pool.submit(_sign_range, lo, min(n, lo + chunk)))
            if len(ahead) >= 4 * workers:
                break
        while ahead:
            out = ahead.popleft().result()
            lo = next(starts, None)
            if lo is not None:
                ahead.append(pool.submit(_sign_range, lo, min(n, lo + chunk)))
            yield from out


class TrustedAppend:
    """Appends envelopes made right here to an open :class:`TrustLog` through its own
    parts: each is folded by the trusted fold (every rule but the signature check:
    these signatures were just made) and written as ingest writes an accepted event
    (the same log record, Merkle leaf, repository index entry and log time), with a
    signed checkpoint every ``checkpoint_every`` records and at close. No validating
    fold, batch pre-check or duplicate bookkeeping: that is what makes generation fast.
    The result is an ordinary log (``trustlog log verify`` re-checks every signature
    and rule; ``tests/test_bench_generate.py`` does so on a small one)."""

    def __init__(self, tl, checkpoint_every: int = 100_000, record_format: str = FORMAT) -> None:
        from trustlog.ingest.records import encode_record, encode_record_v1
        from trustlog.ingest.replay import TrustedFold

        self.tl, self.checkpoint_every = tl, checkpoint_every
        self.encode = (lambda rec, _env, _event: encode_record_v1(rec)) if record_format == "v1" else encode_record
        self.fold = TrustedFold(tl.state)
        self.last_checkpoint = tl.log.next_offset

    def extend(self, raws: list[bytes]) -> None:
        from trustlog.core.merkle import leaf_hash
        from trustlog.ingest.logindex import event_postings
        from trustlog.ingest.records import LogRecord
        from trustlog.ingest.replay import _envelope_decoder, _event_decoder

        tl = self.tl
        state, log, index, clock, apply = tl.state, tl.log, tl.index, tl.clock, self.fold.apply
        edec, vdec, encode_record = _envelope_decoder.decode, _event_decoder.decode, self.encode
        leaves = []
        for raw in raws:
            env = edec(raw)
            event = vdec(env.payload)
            log_time = clock.next()
            body = encode_record(LogRecord(log_time, raw, None), env, event)
            postings = event_postings(state, env, event)
            offset = log.next_offset
            apply(env, event, log_time, offset)  # raises RejectedEventError: the generator is wrong
            log.append(body)
            leaves.append(leaf_hash(body))
            index.add_event(offset, log_time, event, *postings)
        log.flush()
        tl.tree.merkle.append(leaves)
        tl.tree.merkle.flush(fsync=False)
        index.flush()
        if log.next_offset - self.last_checkpoint >= self.checkpoint_every:
            tl.checkpoint()
            self.last_checkpoint = log.next_offset


def generate(d: Path, n: int, progress: bool, workers: int | None = None, batch: int = 16_384,
             record_format: str = FORMAT) -> dict:
    """Write a log of ``n`` events in ``d`` (see :class:`Plan`, :class:`TrustedAppend`);
    returns its description. ``workers``: signing processes (default: one per CPU
    beyond this one, at least one); ``record_format``: ``v2`` (what ingest writes) or
    ``v1`` (what logs written before v2 hold)."""
    from trustlog.ingest.pipeline import TrustLog

    if workers is None:
        workers = max(1, (os.cpu_count() or 2) - 1)
    plan = Plan(n)
    t0 = time.perf_counter()
    since = None
    made = 0
    with TrustLog(d, crypto=trust_all, checkpoint_every=None, snapshot_every=None) as tl:
        app = TrustedAppend(tl, record_format=record_format)
        pending: list[bytes] = []
        for raw in signed_envelopes(n, workers):
            if made == n // 2:
                app.extend(pending)
                pending = []
                since = tl.clock.last + 1  # the audit's compromise point: half the log before it
            pending.append(raw)
            made += 1
            if len(pending) >= batch:
                app.extend(pending)
                pending = []
                if progress and made % 1_000_000 < batch:
                    print(f"  generated {made:,}/{n:,} events ({made / (time.perf_counter() - t0):,.0f}/s)",
                          file=sys.stderr)
        app.extend(pending)
        events = tl.log.next_offset
    assert events == n, (events, n)
    info = {"format": record_format, "events": events, "repos": plan.repos, "ci_keys": len(plan.ci), "since": since,
            "audit_key": plan.ci[1].keyid, "generate_s": round(time.perf_counter() - t0, 1), "sign_workers": workers,
            "log_bytes": sum(f.stat().st_size for f in (d / "log").glob("*.seg"))}
    (d / "bench.json").write_text(json.dumps(info))
    return info


def verified_fold_rate(d: Path, limit: int) -> tuple[int, float]:
    """The validating fold (canonical decode, every signature re-verified in batches
    through the batch verifier's crypto, every rule) on the first ``limit`` records."""
    from trustlog.core.events import decode_envelope, decode_event
    from trustlog.core.state import TrustState
    from trustlog.ingest.logcheck import VerifyReport
    from trustlog.ingest.records import decode_record
    from trustlog.ingest.segment_log import SegmentLog
    from trustlog.verifier.batch import default_crypto
    from trustlog.core.sigcache import CachedSigCheck, CryptoCache

    crypto = default_crypto()
    log = SegmentLog.open(d / "log", create=False, read_only=True)
    st, cache = TrustState(), CryptoCache()
    rep = VerifyReport("", "", "")
    sigcheck = CachedSigCheck(cache, crypto)

    t0 = time.perf_counter()
    chunk = []
    done = 0
    try:
        for off, body in log.scan(0):
            if off >= limit:
                break
            rec = decode_record(body)
            env = decode_envelope(rec.envelope, max_bytes=1 << 30)
            chunk.append((off, rec, env, decode_event(env.payload)))
            if len(chunk) == 4096:
                _fold_verified(st, chunk, cache, crypto, rep, sigcheck)
                done += len(chunk)
                chunk = []
        _fold_verified(st, chunk, cache, crypto, rep, sigcheck)
        done += len(chunk)
    finally:
        log.close()
    return done, time.perf_counter() - t0


def _fold_verified(st, chunk, cache, crypto, rep, sigcheck) -> None:
    from trustlog.ingest.logcheck import _precheck

    _precheck(st, [(env, ev) for _, _, env, ev in chunk], cache, crypto, rep)
    for off, rec, env, ev in chunk:
        st.apply(env, log_time=rec.log_time, offset=off, sigcheck=sigcheck, event=ev)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500_000,
                   help="events in the log (default 500,000, a few minutes; the goals are stated at 10,000,000)")
    p.add_argument("--cache", default=os.environ.get("TRUSTLOG_BENCH_CACHE", "/tmp/trustlog-bench"),
                   help="where generated logs are kept and reused")
    p.add_argument("--verified-sample", type=int, default=50_000,
                   help="records the validating fold is timed on (default 50,000)")
    p.add_argument("--repeat", type=int, default=3, help="runs of the full rebuild and of the open (median)")
    p.add_argument("--audit-repeat", type=int, default=5, help="runs of each audit (median; the first is cold)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    p.add_argument("--sign-workers", type=int, default=None,
                   help="processes that sign the generated events (default: one per CPU beyond this one; 0: none)")
    p.add_argument("--format", choices=["v1", "v2"], default=FORMAT,
                   help=f"the record format of the generated log (default {FORMAT}, what ingest writes)")
    p.add_argument("--read-only", action="store_true",
                   help="write nothing into the cache (a log made elsewhere, shared): the opens are read-only and no "
                        "snapshot is written, so the open from a snapshot is not measured (the audit runs on a log "
                        "opened without one)")
    p.add_argument("--generate-only", action="store_true",
                   help="make (or find) the cached log of --n events and stop (for profiling the open)")
    args = p.parse_args(argv)

    from trustlog.core.keys import clear_key_caches
    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.replay import fold_log
    from trustlog.services.audit import audit_key, audit_scan
    from trustlog.verifier.batch import backend_name

    d = Path(args.cache) / f"n{args.n}-{args.format}"
    info_path = d / "bench.json"
    if args.read_only and not info_path.is_file():
        p.error(f"--read-only: no generated log in {d}")
    if args.read_only and any((d / "snapshots").glob("*.snap")):
        p.error(f"--read-only: {d} has snapshots, which a read-only run cannot set aside to time the open without one")
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        print(f"using the cached log in {d} ({info['events']:,} events, generated in {info['generate_s']} s)",
              file=sys.stderr)
    else:
        if d.exists():
            import shutil
            shutil.rmtree(d)
        d.mkdir(parents=True)
        print(f"generating {args.n:,} signed events in {d} (once; reused next time) ...", file=sys.stderr)
        info = generate(d, args.n, progress=True, workers=args.sign_workers, record_format=args.format)
    if args.generate_only:
        print(f"log of {info['events']:,} events in {d} ({info['generate_s']} s to generate)", file=sys.stderr)
        return 0
    n = info["events"]
    out: dict = {"events": n, "format": info.get("format", "v1"), "repos": info["repos"], "log_bytes": info["log_bytes"],
                 "log_bytes_per_event": round(info["log_bytes"] / n, 1), "backend": backend_name(),
                 "cpus": os.cpu_count()}

    # 1. full rebuild, trusted fold (median of --repeat): the selected (compiled) fold, and
    # the pure-Python TrustedFold as the baseline, alternating in the same run
    from trustlog.ingest import fold_backend
    from trustlog.ingest.snapshots import encode_state

    times: dict[str, list[float]] = {"c": [], "py": []}
    backends = ["c", "py"] if fold_backend.BACKEND == "c" else ["py"]
    digests = {}
    for _ in range(args.repeat):
        for b in backends:
            fold_backend.BACKEND = b
            gc.collect()
            clear_key_caches()  # each run pays the key checks a fresh process pays
            t0 = time.perf_counter()
            st = fold_log(d)
            times[b].append(time.perf_counter() - t0)
            assert st.version == n
            tags = sum(len(r.tags) for r in st.repos.values())
            if b not in digests:
                digests[b] = hashlib.sha256(encode_state(st)).hexdigest()
            del st
    fold_backend.BACKEND = backends[0]
    assert len(set(digests.values())) == 1, f"the compiled and the Python fold disagree: {digests}"
    out["fold_backend"] = backends[0]
    out["replay_s"] = round(statistics.median(times[backends[0]]), 3)
    out["replay_per_s"] = round(n / statistics.median(times[backends[0]]))
    out["replay_py_per_s"] = round(n / statistics.median(times["py"]))
    out["replay_ratio"] = round(out["replay_per_s"] / out["replay_py_per_s"], 2)
    out["tags"] = tags
    # 2. the validating fold on a prefix
    k, secs = verified_fold_rate(d, min(n, args.verified_sample))
    out["verified_replay_per_s"] = round(k / secs)
    out["verified_sample"] = k
    # 3. opening the log: from scratch (no snapshot), then from a snapshot at the end
    snaps = d / "snapshots"
    hidden = d / "snapshots.hidden"
    if snaps.exists() and not args.read_only:
        snaps.rename(hidden)
    try:
        # median of --repeat opens; the time inside fold_segments (the compiled fold and
        # the records it hands to TrustedFold) is measured apart, the rest is the open's own
        from trustlog.ingest import pipeline

        folding = [0.0]
        real_fold = pipeline.fold_segments

        def timed_fold(*a, **kw):
            t = time.perf_counter()
            try:
                return real_fold(*a, **kw)
            finally:
                folding[0] += time.perf_counter() - t

        pipeline.fold_segments = timed_fold
        opens, outside = [], []
        try:
            for i in range(args.repeat):
                gc.collect()
                clear_key_caches()
                folding[0] = 0.0
                t0 = time.perf_counter()
                tl = TrustLog(d, snapshot_every=None, read_only=args.read_only)
                opens.append(time.perf_counter() - t0)
                outside.append(opens[-1] - folding[0])
                assert tl.opened_with["verified"] == 0, tl.opened_with
                if i == args.repeat - 1 and not args.read_only:
                    tl.snapshot()
                tl.close()
        finally:
            pipeline.fold_segments = real_fold
        out["open_no_snapshot_s"] = round(statistics.median(opens), 3)
        out["open_no_snapshot_runs_s"] = [round(t, 3) for t in opens]
        out["open_outside_fold_s"] = round(statistics.median(outside), 3)
    finally:
        if hidden.exists():
            import shutil
            shutil.rmtree(hidden)
    gc.collect()
    t0 = time.perf_counter()
    tl = TrustLog(d, snapshot_every=None, read_only=args.read_only)
    if not args.read_only:
        out["open_snapshot_s"] = round(time.perf_counter() - t0, 3)
        out["snapshot_bytes"] = sum(f.stat().st_size for f in snaps.glob("*.snap"))
    try:
        assert tl.opened_with["snapshot"] == (0 if args.read_only else n), tl.opened_with
        # 4. the audit, from the indexes (median; the first run is with a cold page cache for the key's records)
        key, since = info["audit_key"], info["since"]
        times, rep = [], None
        for _ in range(args.audit_repeat):
            t0 = time.perf_counter()
            rep = audit_key(tl, key, since, ref_time=1_900_000_000)
            times.append(time.perf_counter() - t0)
        assert rep is not None
        out["audit_ms"] = round(statistics.median(times) * 1000, 1)
        out["audit_first_ms"] = round(times[0] * 1000, 1)
        out["audit_key_events"] = len(rep.signed)
        out["audit_blast_radius"] = len(rep.blast_radius)
        out["audit_verdict_changes"] = len(rep.verdict_changes)
        out["audit_breakdown_s"] = rep.seconds
    finally:
        tl.close()
    # 5. the naive way: scan the whole log for the key (audit_scan opens the log as a
    # writer, taking its lock: not with --read-only)
    if not args.read_only:
        t0 = time.perf_counter()
        scan = audit_scan(str(d), key, since)
        out["audit_scan_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        assert [(o, a) for o, _, a in scan] == [(e.offset, e.after) for e in rep.signed], "index and scan disagree"

    w = max(len(k) for k in out)
    print(f"\nreplay benchmark: {n:,} events, {out['repos']:,} repositories, {out['tags']:,} tags "
          f"({out['log_bytes'] / 1e6:,.0f} MB of log, {out['log_bytes_per_event']} B/event), crypto backend "
          f"{out['backend']}, {out['cpus']} CPUs")
    rows = [
        (f"rebuild state, trusted fold ({out['fold_backend']}; no signature re-verification)",
         f"{out['replay_per_s']:,} events/s", f"{out['replay_s']} s, {out['replay_ratio']}x the Python fold"),
        ("  baseline: the pure-Python TrustedFold", f"{out['replay_py_per_s']:,} events/s", ""),
        ("  baseline: validating fold, every signature re-verified", f"{out['verified_replay_per_s']:,} events/s",
         f"on {k:,} records"),
        ("open the log, no snapshot (fold + leaf check + ids; median)", f"{out['open_no_snapshot_s']} s",
         f"{out['open_outside_fold_s']} s of it outside fold_segments"),
        ("open the log from a snapshot", f"{out['open_snapshot_s']} s", f"{out['snapshot_bytes'] / 1e6:,.0f} MB")
        if "open_snapshot_s" in out else ("open the log from a snapshot", "not measured", "--read-only"),
        ("audit one key from the indexes (median; first run)", f"{out['audit_ms']} ms ({out['audit_first_ms']})",
         f"{out['audit_key_events']:,} events signed, blast radius {out['audit_blast_radius']:,}, "
         f"{out['audit_verdict_changes']:,} verdicts change"),
        ("  baseline: full scan of the log for the key", f"{out['audit_scan_ms']} ms" if "audit_scan_ms" in out
         else "not measured", "" if "audit_scan_ms" in out else "--read-only"),
    ]
    for a, b, c in rows:
        print(f"  {a:<62} {b:>18}  {c}")
    del w
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
