"""Loading a snapshot of the compact state: format 3 (tags as columns, imported in C in one
pass) against format 2 (tags as a map of entries, decoded and then packed into the store),
same state, same process, alternating runs.

    python benchmarks/snapshot_load.py [--tags 100000,1000000] [--tags-per-repo 20] [--repeat 3] [--json]
    python benchmarks/snapshot_load.py --log DIR [--repeat 3] [--json]

For each size the state is folded once (``benchmarks/state_memory.py``'s builder: one
``RepoCreated`` and ``--tags-per-repo`` ``ImageSigned`` per repository, into the compiled
compact store), written as a signed snapshot in each format (``SnapshotStore.write``),
and loaded ``--repeat`` times per format, the formats alternating:
``SnapshotStore.load`` (read, body digest, decode into the selected store). The format-2
load is the baseline: it runs the decoder of the previous release (``RepoState``s of
``TagEntry`` maps, then ``tagstore_backend.adopt``), which is what every snapshot took
before format 3. Figures: snapshot bytes per tag, load seconds (median) and µs per tag,
so the two sizes show whether the load is proportional to the size.

``--log DIR``: open an existing log (``TrustLog``, e.g. one ``benchmarks/replay.py``
generated, which leaves a snapshot at its end) from a snapshot at its end in each format,
alternating; the log's own snapshots are set aside and put back. With ``--json`` the
last line is one JSON object.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import msgspec  # noqa: E402

from state_memory import build  # noqa: E402
from trustlog.core import tagstore_backend  # noqa: E402
from trustlog.core.keys import SigningKey  # noqa: E402
from trustlog.core.state import TrustState  # noqa: E402
from trustlog.ingest import snapshot_body, snapshots  # noqa: E402

_legacy = msgspec.msgpack.Decoder(snapshot_body._Body)   # the format-2 decoder of the previous release


def load_legacy(store: snapshots.SnapshotStore, snap: snapshots.Snapshot) -> TrustState:
    """``SnapshotStore.load`` as it was before format 3 (read, digest, decode, adopt)."""
    body = store.check_body(snap)
    gc.disable()
    try:
        decoded = _legacy.decode(body)
    finally:
        gc.enable()
    st = TrustState()
    st.repos = {r.name: tagstore_backend.adopt(r) for r in decoded.repos}
    st.version = snap.header.offset
    return st


def _timed(fn) -> float:
    gc.collect()
    t0 = time.perf_counter()
    st = fn()
    dt = time.perf_counter() - t0
    assert sum(len(r.tags) for r in st.repos.values()) > 0
    del st
    gc.collect()
    return dt


def measure(n_tags: int, per_repo: int, repeat: int, say) -> dict:
    state, fold_s = build(n_tags, per_repo, say, "compact")
    tags = sum(len(r.tags) for r in state.repos.values())
    say(f"{tags:,} tags folded in {fold_s:.1f} s")
    key = SigningKey.from_seed(b"snapshot-load-bench")
    with tempfile.TemporaryDirectory(prefix="h5-snapload-") as d:
        paths = {}
        for fmt in (2, 3):
            saved = snapshots.SNAPSHOT_FORMAT
            snapshots.SNAPSHOT_FORMAT = fmt    # type: ignore[misc]
            try:
                store = snapshots.SnapshotStore(Path(d) / f"f{fmt}", key)
                t0 = time.perf_counter()
                paths[fmt] = store.write(state, root=bytes(32), last_log_time=1)
                say(f"format {fmt}: written in {time.perf_counter() - t0:.2f} s, "
                    f"{paths[fmt].stat().st_size:,} bytes")
            finally:
                snapshots.SNAPSHOT_FORMAT = saved   # type: ignore[misc]
        want = snapshots.encode_state(state)
        del state
        gc.collect()
        stores = {fmt: snapshots.SnapshotStore(Path(d) / f"f{fmt}", key.public_key) for fmt in (2, 3)}
        snaps = {fmt: stores[fmt].list()[0] for fmt in (2, 3)}
        # both load the same state (checked once, outside the timings)
        for fmt, fn in ((3, lambda: stores[3].load(snaps[3])), (2, lambda: load_legacy(stores[2], snaps[2]))):
            assert snapshots.encode_state(fn()) == want, fmt
        runs: dict[int, list[float]] = {2: [], 3: []}
        for _ in range(repeat):
            runs[3].append(_timed(lambda: stores[3].load(snaps[3])))
            runs[2].append(_timed(lambda: load_legacy(stores[2], snaps[2])))
            say(f"  load: format 3 {runs[3][-1]:.3f} s, format 2 {runs[2][-1]:.3f} s")
        sizes = {fmt: paths[fmt].stat().st_size for fmt in (2, 3)}
    med = {fmt: statistics.median(v) for fmt, v in runs.items()}
    return {
        "tags": tags, "tags_per_repo": per_repo,
        "load_s": round(med[3], 3), "load_runs_s": [round(x, 3) for x in runs[3]],
        "load_us_per_tag": round(med[3] / tags * 1e6, 3),
        "bytes_per_tag": round(sizes[3] / tags, 1),
        "baseline_format2_load_s": round(med[2], 3), "baseline_format2_load_runs_s": [round(x, 3) for x in runs[2]],
        "baseline_format2_load_us_per_tag": round(med[2] / tags * 1e6, 3),
        "baseline_format2_bytes_per_tag": round(sizes[2] / tags, 1),
        "speedup": round(med[2] / med[3], 2),
    }


def open_ab(d: Path, repeat: int, say) -> dict:
    """Open the log at ``d`` from a snapshot at its end, format 3 and format 2 alternating."""
    import trustlog.verifier  # noqa: F401  (registers the signature check TrustLog needs)
    from trustlog.ingest.pipeline import TrustLog

    snaps, saved = d / "snapshots", d / "snapshots.bench-saved"
    if not snaps.is_dir() or not list(snaps.glob("*.snap")):
        sys.exit(f"{d} has no snapshot to open from (benchmarks/replay.py leaves one at the end of its log)")
    os.replace(snaps, saved)
    try:
        for fmt in (2, 3):
            shutil.copytree(saved, snaps)       # opened from the snapshot there; one in format fmt replaces it
            snapshots.SNAPSHOT_FORMAT = fmt     # type: ignore[misc]
            try:
                tl = TrustLog(d, snapshot_every=None)
                n = tl.log.next_offset
                tl.snapshot()
                tl.close()
            finally:
                snapshots.SNAPSHOT_FORMAT = 3   # type: ignore[misc]
            os.replace(snaps, d / f"snapshots.f{fmt}")
        size = {f: sum(p.stat().st_size for p in (d / f"snapshots.f{f}").glob("*.snap")) for f in (2, 3)}
        runs: dict[int, list[float]] = {2: [], 3: []}
        want, tags = None, 0
        for _ in range(repeat):
            for fmt in (3, 2):
                os.replace(d / f"snapshots.f{fmt}", snaps)
                try:
                    gc.collect()
                    t0 = time.perf_counter()
                    tl = TrustLog(d, snapshot_every=None)
                    runs[fmt].append(time.perf_counter() - t0)
                    assert tl.opened_with["snapshot"] == n, tl.opened_with
                    body = snapshots.encode_state(tl.state)
                    assert want is None or body == want, fmt
                    want = body
                    tags = sum(len(r.tags) for r in tl.state.repos.values())
                    tl.close()
                finally:
                    os.replace(snaps, d / f"snapshots.f{fmt}")
                say(f"  open from format {fmt}: {runs[fmt][-1]:.3f} s")
    finally:
        for f in (2, 3):
            shutil.rmtree(d / f"snapshots.f{f}", ignore_errors=True)
        shutil.rmtree(snaps, ignore_errors=True)
        os.replace(saved, snaps)
    med = {f: statistics.median(v) for f, v in runs.items()}
    return {"log": str(d), "events": n, "tags": tags,
            "open_snapshot_s": round(med[3], 3), "open_snapshot_runs_s": [round(x, 3) for x in runs[3]],
            "bytes_per_tag": round(size[3] / tags, 1),
            "baseline_format2_open_snapshot_s": round(med[2], 3),
            "baseline_format2_open_snapshot_runs_s": [round(x, 3) for x in runs[2]],
            "baseline_format2_bytes_per_tag": round(size[2] / tags, 1), "speedup": round(med[2] / med[3], 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tags", default="100000,1000000", help="comma-separated sizes (default 100000,1000000)")
    p.add_argument("--tags-per-repo", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--log", type=Path, help="open this log from a snapshot in each format instead")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if tagstore_backend.BACKEND != "compact":
        sys.exit("snapshot_load.py measures the compiled compact store: build it (pip install -e .) and do not "
                 "set TRUSTLOG_PUREPYTHON / TRUSTLOG_TAG_STORE")

    def say(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    out: dict = {"load_avg": os.getloadavg()[0]}
    if args.log is not None:
        out.update(open_ab(args.log, args.repeat, say))
        say(f"{out['tags']:,} tags, {out['events']:,} events: open from format 3 {out['open_snapshot_s']} s "
            f"({out['bytes_per_tag']} B/tag) vs format 2 {out['baseline_format2_open_snapshot_s']} s "
            f"({out['baseline_format2_bytes_per_tag']} B/tag): {out['speedup']}x")
        out["load_avg_end"] = os.getloadavg()[0]
        if args.json:
            print(json.dumps(out))
        return
    out["sizes"] = []
    for n in (int(x) for x in args.tags.split(",")):
        r = measure(n, args.tags_per_repo, args.repeat, say)
        out["sizes"].append(r)
        say(f"{r['tags']:,} tags: format 3 {r['load_s']} s ({r['load_us_per_tag']} µs/tag, {r['bytes_per_tag']} B/tag)"
            f" vs format 2 {r['baseline_format2_load_s']} s ({r['baseline_format2_load_us_per_tag']} µs/tag, "
            f"{r['baseline_format2_bytes_per_tag']} B/tag): {r['speedup']}x")
    out["load_avg_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
