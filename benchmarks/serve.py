"""`trustlog serve` under a real HTTP load generator, beside `trustlog verify` from a file.

    python benchmarks/serve.py [--tags 1000000] [--sample 20000] [--duration 10] [--json]

The log (``--tags`` signed tags in ``tags/20`` repositories, each with its own root and
targets keys and a delegated CI signer; 22 events per repository) is generated once and
kept in the cache directory (default ``$TRUSTLOG_BENCH_CACHE`` or ``/tmp/trustlog-bench``),
with a snapshot at its end. Every event is really signed (Ed25519); generation skips
verification at ingest (the signatures are made right there), everything else — fold,
Merkle tree, checkpoints, indexes, snapshot — is the real pipeline.

Then, against one ``trustlog serve`` process (started here, stopped at the end):

* ``single``: ``GET /v1/repositories/{repo}/tags/{tag}`` through ``wrk`` (Debian's
  package, installed when missing), concurrency ``--connections`` (64), over
  ``--sample`` distinct tags drawn at random (their signatures were checked once by a
  warm-up request: a served lookup is then trust evaluation, no crypto) — requests/s,
  p50 and p99 latency as wrk measures them;
* ``batched``: ``POST /v1/verify`` with ``--batch`` requests per call, same tags —
  verdicts/s;
* baseline: the same sample of lookups through ``trustlog verify FILE`` (a process that
  opens the log read-only from its snapshot, verifies, exits) — verdicts/s, and the wall
  time of ``trustlog verify`` for a single request (the "one request on a big log" figure);
* memory: the server's resident set after the runs, per tag.

With ``--json`` the last line is one JSON object with at least tags, single_per_s,
single_p50_ms, single_p99_ms, batched_per_s, baseline_per_s.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the sibling benchmark's log writer (benchmarks run as `python benchmarks/NAME.py`, so
# this directory is on sys.path)
from replay import FAR, TAGS_PER_REPO, BatchedIngest, trust_all
FORMAT = "serve-v1"
PY = sys.executable
CLI = [PY, "-m", "trustlog.cli.main"]


def repo_name(i: int) -> str:
    return f"registry.example.com/org{i % 97}/app{i}"


def tag_name(k: int) -> str:
    return f"build-{k}" if k % 4 else f"v1.{k}"


def generate(d: Path, tags: int, progress: bool) -> dict:
    """Write a log of ``tags`` signed tags in ``d`` (and a snapshot); its description."""
    import hashlib

    from trustlog.core.events import ImageSigned, RepoCreated, RoleKeysSet, sign_event
    from trustlog.core.keys import SigningKey
    from trustlog.ingest.pipeline import TrustLog

    n_repos = max(1, tags // TAGS_PER_REPO)
    seed = f"serve-bench/{tags}"
    n_ci = max(2, n_repos // 20)
    ci = [SigningKey.from_seed(f"{seed}/ci/{i}".encode()) for i in range(n_ci)]
    t0 = time.perf_counter()
    with TrustLog(d, crypto=trust_all, checkpoint_every=200_000, snapshot_every=None) as tl:
        emit = BatchedIngest(tl, 100_000 if progress else 0)

        for i in range(n_repos):
            name = repo_name(i)
            root = SigningKey.from_seed(f"{seed}/{i}/root".encode())
            targets = SigningKey.from_seed(f"{seed}/{i}/targets".encode())
            signer = ci[i % n_ci]
            emit(sign_event(RepoCreated(name, 1, 1_700_000_000, [root.public_key], 1, [targets.public_key], 1,
                                        FAR), [root]))
            emit(sign_event(RoleKeysSet(name, 2, 1_700_000_000, "targets/ci", [signer.public_key], 1, FAR,
                                        ["build-*"]), [targets]))
            for k in range(TAGS_PER_REPO):
                v = 3 + k
                digest = "sha256:" + hashlib.sha256(f"{name}:{k}".encode()).hexdigest()
                role, key = ("targets/ci", signer) if k % 4 else ("targets", targets)
                emit(sign_event(ImageSigned(name, v, 1_700_000_000 + v, role, tag_name(k), digest, 1000 + k, FAR),
                                [key]))
        emit.flush()
        tl.snapshot()
        events = tl.log.next_offset
    info = {"format": FORMAT, "tags": n_repos * TAGS_PER_REPO, "repos": n_repos, "events": events,
            "generate_s": round(time.perf_counter() - t0, 1),
            "log_bytes": sum(f.stat().st_size for f in (d / "log").glob("*.seg"))}
    (d / "bench.json").write_text(json.dumps(info))
    return info


def cached_log(cache: Path, tags: int, progress: bool) -> tuple[Path, dict]:
    d = cache / f"serve-{tags}"
    meta = d / "bench.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("format") == FORMAT:
            return d, info
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    if progress:
        print(f"generating a log of {tags:,} tags in {d} (once; kept for later runs)", file=sys.stderr)
    return d, generate(d, tags, progress)


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian package)", file=sys.stderr)
        if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, check=True)
        wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("benchmarks/serve.py needs wrk (apt-get install wrk)")
    return wrk


def _ms(s: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    if not m:
        raise ValueError(f"wrk latency {s!r}")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def run_wrk(wrk: str, url: str, script: Path, connections: int, duration: int, threads: int) -> dict:
    out = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
                          url], capture_output=True, text=True, timeout=duration + 60)
    text = out.stdout
    if out.returncode != 0 or "Requests/sec" not in text:
        raise SystemExit(f"wrk failed: {out.stderr or text}")
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {"per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
            "p50_ms": _ms(lat["50"]), "p99_ms": _ms(lat["99"]),
            "requests": int(re.search(r"(\d+) requests in", text).group(1)),
            "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(1) if errors else None}


def lua_list(items: list[str]) -> str:
    return "{" + ",".join(json.dumps(s) for s in items) + "}"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_post(url: str, body: bytes) -> dict:
    import urllib.request

    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tags", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=20_000, help="distinct tags the load draws from")
    ap.add_argument("--batch", type=int, default=1000, help="requests per POST /v1/verify")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    ap.add_argument("--cache", default=os.environ.get("TRUSTLOG_BENCH_CACHE", "/tmp/trustlog-bench"))
    ap.add_argument("--server-args", default="", metavar="ARGS",
                    help="more arguments for trustlog serve, e.g. --server-args=--no-fast-path (aiohttp's handlers only)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    wrk = ensure_wrk()
    d, info = cached_log(Path(args.cache), args.tags, progress=True)
    tags = info["tags"]
    rnd = random.Random(7)
    picks = [(repo_name(rnd.randrange(info["repos"])), tag_name(rnd.randrange(TAGS_PER_REPO)))
             for _ in range(args.sample)]
    work = Path(tempfile.mkdtemp(prefix="trustlog-serve-bench-"))
    from trustlog.verifier.batch import backend_name

    # -- baseline: the same lookups through `trustlog verify FILE` ---------------------------
    reqs = work / "requests.jsonl"
    reqs.write_text("".join(json.dumps({"repo": r, "tag": t}) + "\n" for r, t in picks))
    one = work / "one.jsonl"
    one.write_text(json.dumps({"repo": picks[0][0], "tag": picks[0][1]}) + "\n")
    one_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([*CLI, "verify", str(one), "--log", str(d), "-o", str(work / "one.out"), "--json"],
                       check=True, capture_output=True)
        one_s.append(time.perf_counter() - t0)
    import resource

    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([*CLI, "verify", str(reqs), "--log", str(d), "-o", str(work / "base.out"), "--json"],
                   check=True, capture_output=True)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    base_s = time.perf_counter() - t0
    base_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    baseline_per_s = len(picks) / base_s

    # -- the server -------------------------------------------------------------------------
    t0 = time.perf_counter()
    srv = subprocess.Popen([*CLI, "serve", "--log", str(d), "--listen", f"127.0.0.1:{args.port}",
                            "--max-items", str(max(args.batch, 10_000)), *shlex.split(args.server_args)],
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = srv.stderr.readline()
        m = re.search(r"http://([\d.]+):(\d+)", line)
        if not m:
            raise SystemExit(f"trustlog serve did not start: {line}")
        start_s = time.perf_counter() - t0
        url = f"http://{m.group(1)}:{m.group(2)}"
        # warm-up: every sampled tag once (its signature checked once, then cached by content)
        t0 = time.perf_counter()
        codes: dict[str, int] = {}
        for i in range(0, len(picks), 5000):
            body = json.dumps({"requests": [{"repo": r, "tag": t} for r, t in picks[i:i + 5000]]}).encode()
            for v in http_post(url + "/v1/verify", body)["verdicts"]:
                codes[v["code"]] = codes.get(v["code"], 0) + 1
        warm_s = time.perf_counter() - t0

        single_lua = work / "single.lua"
        single_lua.write_text(f"local paths = {lua_list([f'/v1/repositories/{r}/tags/{t}' for r, t in picks])}\n"
                              "local n = #paths\nrequest = function()\n"
                              "  return wrk.format('GET', paths[math.random(n)])\nend\n")
        c0 = cpu_seconds(srv.pid)
        single = run_wrk(wrk, url, single_lua, args.connections, args.duration, args.threads)
        single_cpu = cpu_seconds(srv.pid) - c0

        bodies = []
        for _ in range(16):
            chunk = rnd.sample(picks, min(args.batch, len(picks)))
            bodies.append(json.dumps({"requests": [{"repo": r, "tag": t} for r, t in chunk]}))
        batch_lua = work / "batch.lua"
        batch_lua.write_text(f"local bodies = {lua_list(bodies)}\nlocal n = #bodies\n"
                             "wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n"
                             "request = function()\n  return wrk.format(nil, nil, nil, bodies[math.random(n)])\nend\n")
        c0 = cpu_seconds(srv.pid)
        batched = run_wrk(wrk, url + "/v1/verify", batch_lua, args.connections, args.duration, args.threads)
        batched_cpu = cpu_seconds(srv.pid) - c0
        rss = rss_bytes(srv.pid)
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
        shutil.rmtree(work, ignore_errors=True)

    batch_n = min(args.batch, len(picks))
    res = {
        "tags": tags, "events": info["events"], "repos": info["repos"], "backend": backend_name(),
        "connections": args.connections, "sample": len(picks), "batch": batch_n,
        "single_per_s": round(single["per_s"], 1), "single_p50_ms": round(single["p50_ms"], 3),
        "single_p99_ms": round(single["p99_ms"], 3), "single_non_2xx": single["non_2xx"],
        "batched_requests_per_s": round(batched["per_s"], 1),
        "batched_per_s": round(batched["per_s"] * batch_n, 1),
        "batched_p50_ms": round(batched["p50_ms"], 3), "batched_p99_ms": round(batched["p99_ms"], 3),
        "batched_non_2xx": batched["non_2xx"],
        # load-independent: what one CPU-second of the server process yields (the machine is shared)
        "single_per_cpu_s": round(single["requests"] / max(single_cpu, 1e-9), 1),
        "batched_per_cpu_s": round(batched["requests"] * batch_n / max(batched_cpu, 1e-9), 1),
        "server_cpu_share": round((single_cpu + batched_cpu) / (2 * args.duration), 2),
        "load_average": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "baseline_per_s": round(baseline_per_s, 1), "baseline_per_cpu_s": round(len(picks) / max(base_cpu, 1e-9), 1), "baseline_s": round(base_s, 3),
        "verify_one_s": round(sorted(one_s)[1], 3),
        "serve_start_s": round(start_s, 3), "warmup_s": round(warm_s, 3), "warm_verdicts": codes,
        "server_rss_mb": round(rss / 2**20, 1), "server_bytes_per_tag": round(rss / max(tags, 1), 1),
        "single_vs_baseline": round(single["per_s"] / baseline_per_s, 2),
        "batched_vs_baseline": round(batched["per_s"] * batch_n / baseline_per_s, 2),
        "goals": {"single_p99_under_5ms": single["p99_ms"] < 5.0,
                  "batched_at_least_100k_per_s": batched["per_s"] * batch_n >= 100_000},
        "wrk_threads": args.threads, "duration_s": args.duration, "server_args": args.server_args,
    }
    print(f"log: {tags:,} tags, {info['events']:,} events ({info['repos']:,} repositories), backend {res['backend']}")
    print(f"single GET  : {res['single_per_s']:>10,.0f} lookups/s   p50 {res['single_p50_ms']} ms  "
          f"p99 {res['single_p99_ms']} ms  (c={args.connections})")
    print(f"batched POST: {res['batched_per_s']:>10,.0f} verdicts/s  ({batch_n}/request, "
          f"p50 {res['batched_p50_ms']} ms, p99 {res['batched_p99_ms']} ms)")
    print(f"baseline    : {res['baseline_per_s']:>10,.0f} verdicts/s  (trustlog verify of {len(picks):,} requests "
          f"from a file: {res['baseline_s']} s; of one request: {res['verify_one_s']} s)")
    print(f"server CPU  : {res['single_per_cpu_s']:,.0f} lookups and {res['batched_per_cpu_s']:,.0f} batched verdicts "
          f"per CPU-second; baseline {res['baseline_per_cpu_s']:,.0f} (the server got {res['server_cpu_share']} of a core; load average {res['load_average']} "
          f"on {res['cpus']} CPUs)")
    print(f"ratio       : single {res['single_vs_baseline']}x, batched {res['batched_vs_baseline']}x the baseline")
    print(f"server      : {res['server_rss_mb']} MB resident, {res['server_bytes_per_tag']} bytes per tag; "
          f"start {res['serve_start_s']} s, warm-up {res['warmup_s']} s")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
