"""Following a Notary v1 server: trustlog's changefeed import beside the naive way.

    python benchmarks/import_notary.py [--repos 300] [--tags 5] [--changed 20] [--url URL] [--json]

The server: ``--url``, else the one ``scripts/notary/notary.sh start`` runs (started
here if it is not running; memory storage, so a restart starts empty). In one run:

1. **generate**: ``--repos`` repositories made with the real ``notary`` client
   (``init``, ``--tags`` tags staged and published), so the changefeed holds one or more
   changes per repository;
2. **initial import**: a fresh log follows the changefeed to its end
   (``NotaryFollower``: fetch what changed, verify with Notary's keys and signatures,
   snapshot checks, fold, append + fsync) — changes/s and targets/s;
   beside it the **naive initial load**: fetch root, timestamp, snapshot and targets of
   every repository (8 fetches in parallel, as the follower does) and verify every
   signature (no log) — repositories/s;
3. **a poll after ``--changed`` publishes**: ``--changed`` repositories get one more tag;
   the follower reads only those changes; the naive poller fetches and verifies every
   repository again. The ratio naive/follower is the figure that matters for a
   registry: the follower's cost is the size of the change, the naive one's the size
   of the registry.

Medians over ``--rounds`` polls for step 3. ``--json`` ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
PASS = {f"NOTARY_{r}_PASSPHRASE": "bench" for r in ("ROOT", "TARGETS", "SNAPSHOT", "DELEGATION")}


def server_url(arg: str | None, stack: ExitStack) -> str:
    """--url, the notary-server notary.sh runs, or one started here (and stopped when
    the benchmark ends: ``stack``)."""
    if arg:
        return arg
    from started import service  # benchmarks/started.py

    return stack.enter_context(service(REPO / "scripts" / "notary" / "notary.sh", "url", "notary-server", 600))


def notary(url: str, trust: Path, *args: str) -> None:
    p = subprocess.run(["notary", "-s", url, "-d", str(trust), *args], capture_output=True, text=True,
                       env={**os.environ, **PASS})
    if p.returncode != 0:
        raise RuntimeError(f"notary {' '.join(args)}: {p.stderr}")


def make_repo(url: str, work: Path, gun: str, tags: int) -> None:
    trust = work / "trust" / gun.replace("/", "_")
    f = work / "file"
    notary(url, trust, "init", gun, "-p")
    for t in range(tags):
        notary(url, trust, "add", gun, f"v{t}", str(f))
    notary(url, trust, "publish", gun)


def add_tag(url: str, work: Path, gun: str, tag: str) -> None:
    trust = work / "trust" / gun.replace("/", "_")
    notary(url, trust, "add", gun, tag, str(work / "file"), "-p")


def naive_poll(url: str, guns: list[str]) -> tuple[int, int]:
    """Fetch and verify every repository's metadata anew: (repositories, targets)."""
    from trustlog.core.keys import key_material_id
    from trustlog.core.tuf_format import parse_root, parse_snapshot_or_timestamp, parse_targets
    from trustlog.ingest.tuf_import import NotaryClient, NotarySource
    from trustlog.verifier.batch import default_crypto

    crypto = default_crypto()
    client = NotaryClient(url)
    names = ("root.json", "timestamp.json", "snapshot.json", "targets.json")

    def fetch_all(gun: str) -> dict[str, bytes]:
        src = NotarySource(client, gun)
        return {n: src.fetch(n) for n in names}

    with ThreadPoolExecutor(8) as ex:     # fetched in parallel, like the follower's prefetch
        files = list(ex.map(fetch_all, guns))
    n_targets = 0
    for f in files:
        root = parse_root(f["root.json"])
        metas = [("root", root.meta),
                 ("timestamp", parse_snapshot_or_timestamp(f["timestamp.json"], "timestamp").meta_signed),
                 ("snapshot", parse_snapshot_or_timestamp(f["snapshot.json"], "snapshot").meta_signed)]
        t = parse_targets(f["targets.json"])
        metas.append(("targets", t.meta))
        items, need = [], []
        for role, m in metas:
            rk = root.roles[role]
            for s in m.signatures:
                k = root.keys.get(s.keyid)
                if s.keyid in rk.keyids and k is not None and k.key is not None:
                    items.append((k.key.alg, k.key.public, m.message, s.sig))
                    need.append((role, key_material_id(k.key)))
        ok = crypto(items)
        good: dict[str, set] = {}
        for (role, mat), v in zip(need, ok):
            if v == 1:
                good.setdefault(role, set()).add(mat)
        if all(len(good.get(r, ())) >= root.roles[r].threshold for r, _ in metas):
            n_targets += len(t.targets)
    return len(guns), n_targets


def main() -> int:
    with ExitStack() as stack:  # stops a notary-server started here
        return _main(stack)


def _main(stack: ExitStack) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repos", type=int, default=300)
    ap.add_argument("--tags", type=int, default=5)
    ap.add_argument("--changed", type=int, default=20, help="repositories publishing between two polls")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--url", default=None)
    ap.add_argument("--workers", type=int, default=2, help="parallel notary clients while generating")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.tuf_import import IMPORT_MAX_EVENT_BYTES, ImportResult, NotaryClient, NotaryFollower
    from trustlog.verifier.batch import backend_name

    url = server_url(a.url, stack)
    work = Path(tempfile.mkdtemp(prefix="trustlog-bench-notary-"))
    (work / "file").write_bytes(b"an image manifest stand-in\n")
    prefix = f"bench.example.com/{uuid.uuid4().hex[:8]}"
    guns = [f"{prefix}/repo{i:05d}" for i in range(a.repos)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(a.workers) as ex:
        list(ex.map(lambda g: make_repo(url, work, g, a.tags), guns))
    gen_s = time.perf_counter() - t0
    print(f"generated {a.repos} repositories x {a.tags} tags with the notary client in {gen_s:.1f}s",
          file=sys.stderr)

    def drain(fol) -> tuple[ImportResult, int, float]:
        total, changes = ImportResult(), 0
        t = time.perf_counter()
        while True:
            res, n = fol.poll()
            total.add(res)
            changes += n
            if n == 0:
                return total, changes, time.perf_counter() - t

    try:
        with TrustLog(work / "log", max_event_bytes=IMPORT_MAX_EVENT_BYTES) as log:
            fol = NotaryFollower(log, NotaryClient(url), f"{prefix}/*", page=500)
            res, _, init_s = drain(fol)
            changes = sum(1 for c in NotaryClient(url).changefeed(0, 1_000_000) if c["GUN"].startswith(prefix + "/"))
            assert res.rejected == 0, res.rejects[:3]
            t = time.perf_counter()
            _, naive_targets = naive_poll(url, guns)
            naive_init_s = time.perf_counter() - t
            poll_s, naive_s, inc_changes = [], [], []
            for r in range(a.rounds):
                for g in guns[r * a.changed % len(guns):][:a.changed]:
                    add_tag(url, work, g, f"round{r}")
                _, n, s = drain(fol)
                poll_s.append(s)
                inc_changes.append(n)   # changes read (this run's publishes)
                t = time.perf_counter()
                naive_poll(url, guns)
                naive_s.append(time.perf_counter() - t)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "repos": a.repos, "tags": a.tags, "changed_per_poll": a.changed, "backend": backend_name(),
        "initial_changes": changes, "initial_targets": res.targets, "initial_s": round(init_s, 3),
        "initial_changes_per_s": round(changes / init_s, 1), "initial_targets_per_s": round(res.targets / init_s, 1),
        "naive_initial_s": round(naive_init_s, 3), "naive_repos_per_s": round(a.repos / naive_init_s, 1),
        "naive_targets": naive_targets,
        "poll_median_s": round(statistics.median(poll_s), 4), "naive_poll_median_s": round(statistics.median(naive_s), 4),
        "poll_changes_median": statistics.median(inc_changes),
        "ratio_naive_over_follower": round(statistics.median(naive_s) / statistics.median(poll_s), 1),
        "python": platform.python_version(), "generate_s": round(gen_s, 1),
    }
    print(f"{'':32}{'trustlog follower':>20}{'naive (all, every poll)':>26}")
    print(f"{'initial load':32}{out['initial_s']:>18.2f} s{out['naive_initial_s']:>24.2f} s")
    print(f"{'  changes/s | repos/s':32}{out['initial_changes_per_s']:>20}{out['naive_repos_per_s']:>26}")
    print(f"{'  targets/s':32}{out['initial_targets_per_s']:>20}")
    print(f"{f'poll after {a.changed} publishes (median)':32}{out['poll_median_s']:>18.3f} s"
          f"{out['naive_poll_median_s']:>24.3f} s")
    print(f"ratio naive / follower per poll: {out['ratio_naive_over_follower']}x  "
          f"(backend {out['backend']}, Python {out['python']}, {a.repos} repositories)")
    if a.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
