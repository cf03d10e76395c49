"""End-to-end verification throughput, side by side, on the same signatures.

    python benchmarks/verify.py [--n 1000000] [--alg ed25519|ecdsa-p256] [--naive-n 200000 | --skip-naive]
                                [--repeat 1] [--threads 0] [--cache-dir .cache/bench] [--json]

The data: ``--n`` tags in repositories of 100 tags, each tag signed once by its
repository's delegated signer ``targets/ci``; 16 signer keys (``--alg``) are shared by
all repositories. Keys and events are deterministic; the signatures (ECDSA ones are
randomised) are generated once on every core and cached under ``--cache-dir`` keyed by
algorithm and n, so later runs reuse them. The state is the fold of those events
(``TrustState.apply``; the fold's own signature checks are skipped, since the verifier
under test checks every tag signature itself and the cold run must find them all valid).

Contenders, each over the same tags:

(a) naive loop  — one signature at a time in Python: PyNaCl ``VerifyKey(pk).verify``
                  (Ed25519), or cryptography's ``from_encoded_point(...).verify`` with the
                  raw r||s re-encoded to DER (P-256); on the first ``--naive-n`` tags.
(b) raw limit   — ``_cverify.raw_verify_loop`` (one signature checked over and over in C,
                  GIL released) on ``--threads`` threads at once: the ceiling of the crypto.
(c) cold        — ``BatchVerifier.sweep()`` on a new verifier with an empty SigCache:
                  compile the state, hash every signature, verify every one on all cores,
                  evaluate every key chain. Verdicts must all be VALID.
(d) warm        — the same verifier after one ``KeyCompromised`` (the shared signer key
                  reported in one more repository, since the middle of its history): the
                  delta is applied and every tag re-evaluated; crypto comes from the
                  verifier's validity bytes. Median over ``--warm-repeat`` reports.

Also shown: a new verifier sharing the warm SigCache (compile + hash + cache hits), the
Verdict-object path (``verify()`` over requests, warm), and memory: SigCache bytes per
cached signature, compiled-state bytes per tag, peak RSS. Rates are medians; raw-limit
runs are interleaved with the cold runs so that load from other processes hits both.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cryptography
import msgspec
import nacl
import nacl.signing
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from trustlog.core.evaluate import Request
from trustlog.core.events import (
    Envelope, ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, Signature, encode_event, sign_event,
)
from trustlog.core.keys import SigningKey, raw_to_der
from trustlog.core.state import TrustState
from trustlog.verifier import _cverify

from rawloop import raw_loop_rate  # benchmarks/rawloop.py (this script's folder is on sys.path)
from trustlog.verifier.batch import BatchVerifier, backend_name

SEED = "trustlog-bench-verify"
POOL = 16                       # signer keys shared by every repository
TAGS_PER_REPO = 100
FAR = 4_102_444_800             # 2100-01-01
REF = 1_900_000_000             # the runs' reference time (seconds)
T0 = 1_700_000_000_000_000_000  # log time of the first event (ns); +1,000 ns per event
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ALGS = {"ed25519": 1, "ecdsa-p256": 2}
FORMAT = 1                      # bump when the generated data changes
SPT = 1                         # signatures per tag (--sigs-per-tag); set in main()


# -- deterministic data ----------------------------------------------------------------

def pool_key(alg: str, i: int) -> SigningKey:
    seed = f"{SEED}/ci/{i}".encode()
    if alg == "ed25519":
        return SigningKey.from_seed(seed)
    d = int.from_bytes(hashlib.sha256(seed).digest(), "big") % (P256_ORDER - 1) + 1
    return SigningKey("ecdsa-p256", ec.derive_private_key(d, ec.SECP256R1()))


def repo_keys(r: int) -> tuple[SigningKey, SigningKey]:
    return SigningKey.from_seed(f"{SEED}/{r}/root".encode()), SigningKey.from_seed(f"{SEED}/{r}/targets".encode())


def repo_name(r: int) -> str:
    return f"registry.example.com/team{r % 100}/app{r}"


def tag_event(i: int) -> ImageSigned:
    """Tag i (global index) of repository i // TAGS_PER_REPO, its version 3 + i % TAGS_PER_REPO."""
    r, j = divmod(i, TAGS_PER_REPO)
    digest = "sha256:" + hashlib.sha256(f"{r}:{j}".encode()).hexdigest()
    return ImageSigned(repo_name(r), 3 + j, 1_700_000_000 + j, "targets/ci", f"build-{j}", digest, 1000 + j, FAR)


def signers_of(keys: list[SigningKey], r: int, spt: int) -> list[SigningKey]:
    """The delegated signer keys of repository r: spt pool keys, threshold spt."""
    return [keys[(r + k) % POOL] for k in range(spt)]


def _sign_range(args: tuple[str, int, int, int]) -> bytes:
    alg, spt, lo, hi = args
    keys = [pool_key(alg, k) for k in range(POOL)]
    out = bytearray()
    for i in range(lo, hi):
        payload = encode_event(tag_event(i))
        for k in signers_of(keys, i // TAGS_PER_REPO, spt):
            sig = k.sign(payload)
            if len(sig) != 64:
                raise AssertionError(f"{alg} signature of {len(sig)} bytes")
            out += sig
    return bytes(out)


def signatures(alg: str, n: int, cache_dir: Path, workers: int, say) -> tuple[bytes, float, bool]:
    """64 bytes per signature, generated on every core once, then read from the cache."""
    path = cache_dir / f"verify-{alg}-n{n}-spt{SPT}-f{FORMAT}.sig"
    if path.exists() and path.stat().st_size == 64 * n:
        t = time.perf_counter()
        data = path.read_bytes()
        return data, time.perf_counter() - t, True
    say(f"signing {n:,} signatures ({SPT} a tag) with {alg} on {workers} processes (cached in {path}) ...")
    t = time.perf_counter()
    step = 20_000
    tags = n // SPT
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(_sign_range, [(alg, SPT, lo, min(tags, lo + step)) for lo in range(0, tags, step)]))
    data = b"".join(parts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data, time.perf_counter() - t, False


class Registry:
    """The folded state, and the next compromise report to fold."""

    def __init__(self, alg: str, n_tags: int, sigs: bytes, spt: int = 1) -> None:
        self.alg, self.n = alg, n_tags
        self.pool = [pool_key(alg, k) for k in range(POOL)]
        self.state = TrustState()
        self.clock = T0
        self.offset = 0
        n = n_tags
        self.n_repos = -(-n // TAGS_PER_REPO)
        self.tag_log_time: dict[int, int] = {}
        self.reports = 0
        trust = lambda key, message, signature: True  # noqa: E731 - see the module docstring
        apply = self.state.apply
        for r in range(self.n_repos):
            root, targets = repo_keys(r)
            signers = signers_of(self.pool, r, spt)
            name = repo_name(r)
            ev = RepoCreated(name, 1, 1_700_000_000, [root.public_key], 1, [targets.public_key], 1, FAR)
            self._apply(sign_event(ev, [root]), ev, trust)
            ev2 = RoleKeysSet(name, 2, 1_700_000_000, "targets/ci", [k.public_key for k in signers], spt, FAR, ["*"])
            self._apply(sign_event(ev2, [targets]), ev2, trust)
            keyids = [k.keyid for k in signers]
            for i in range(r * TAGS_PER_REPO, min(n, (r + 1) * TAGS_PER_REPO)):
                tev = tag_event(i)
                at = 64 * spt * i
                env = Envelope(encode_event(tev), [Signature(kid, sigs[at + 64 * k:at + 64 * k + 64])
                                                   for k, kid in enumerate(keyids)])
                self.clock += 1_000
                apply(env, log_time=self.clock, offset=self.offset, sigcheck=trust, event=tev)
                self.offset += 1
                if i % TAGS_PER_REPO == TAGS_PER_REPO // 2:
                    self.tag_log_time[r] = self.clock

    def _apply(self, env: Envelope, ev, check) -> None:
        self.clock += 1_000
        self.state.apply(env, log_time=self.clock, offset=self.offset, sigcheck=check, event=ev)
        self.offset += 1

    def report_compromise(self) -> tuple[str, int]:
        """Fold one KeyCompromised: signer 0, in the next repository it signs for, since
        the middle of that repository's tags. Returns (repository, tags that fall)."""
        r = self.reports * POOL
        if r >= self.n_repos:
            raise RuntimeError("no repository left to report in")
        self.reports += 1
        name = repo_name(r)
        repo = self.state.repos[name]
        ev = KeyCompromised(name, repo.version + 1, 1_700_000_500, self.pool[0].keyid, self.tag_log_time[r],
                            "benchmark: CI key leaked")
        self._apply(sign_event(ev, [repo_keys(r)[1]]), ev, lambda *a: True)
        falls = sum(1 for e in repo.tags.values() if e.log_time >= self.tag_log_time[r])
        return name, falls

    def items(self, limit: int) -> list[tuple[bytes, bytes, bytes]]:
        out = []
        for repo in self.state.repos.values():
            for e in repo.tags.values():
                for keyid, sig in e.signatures:
                    out.append((repo.keys[keyid].public, e.payload, sig))
                    if len(out) >= limit:
                        return out
        return out


# -- contenders --------------------------------------------------------------------------

def naive(alg: str, items: list[tuple[bytes, bytes, bytes]]) -> float:
    t = time.perf_counter()
    if alg == "ed25519":
        for pk, msg, sig in items:
            nacl.signing.VerifyKey(pk).verify(msg, sig)
    else:
        curve, algo = ec.SECP256R1(), ec.ECDSA(hashes.SHA256())
        for pk, msg, sig in items:
            ec.EllipticCurvePublicKey.from_encoded_point(curve, pk).verify(raw_to_der(sig), msg, algo)
    return len(items) / (time.perf_counter() - t)


def raw_limit(alg: str, item: tuple[bytes, bytes, bytes], threads: int, count: int) -> float:
    return raw_loop_rate((ALGS[alg], *item), threads, count)


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def versions() -> dict[str, str]:
    from cryptography.hazmat.backends.openssl.backend import backend as ossl
    return {"python": platform.python_version(), "pynacl": nacl.__version__ + " (bundled libsodium)",
            "cryptography": cryptography.__version__ + f" ({ossl.openssl_version_text()})",
            "_cverify libcrypto": _cverify.openssl_version(), "cython": _version_of("Cython"),
            "msgspec": msgspec.__version__, "cpu": _cpu_model()}


def _version_of(dist: str) -> str:
    """A distribution's version, or a note: a plain `pip install .` has no Cython at run time."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed (only needed to build)"


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="signatures to verify")
    ap.add_argument("--sigs-per-tag", type=int, choices=(1, 2), default=1,
                    help="2: tags signed by a 2-of-2 delegated role (n/2 tags)")
    ap.add_argument("--alg", choices=sorted(ALGS), default="ed25519")
    ap.add_argument("--naive-n", type=int, default=200_000, help="tags for the naive loop (its rate is per tag)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="cores to use (0: all this process may run on)")
    ap.add_argument("--repeat", type=int, default=1, help="cold runs (each with a new verifier and cache)")
    ap.add_argument("--warm-repeat", type=int, default=5, help="warm runs, each after one more report")
    ap.add_argument("--no-objects", action="store_true", help="skip the Verdict-object (requests) timing")
    ap.add_argument("--cache-dir", default=str(Path(__file__).resolve().parent.parent / ".cache" / "bench"))
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    ap.add_argument("--generate-only", action="store_true", help="only generate (and cache) the signatures")
    a = ap.parse_args()
    threads = a.threads or _cverify.default_threads()
    err = sys.stderr
    global SPT
    SPT = a.sigs_per_tag
    if a.n % SPT:
        raise SystemExit("--n must be a multiple of --sigs-per-tag")
    n_tags = a.n // SPT

    def say(msg: str) -> None:
        print(msg, file=err, flush=True)

    gc.disable()   # millions of long-lived objects: nothing to collect, everything to scan
    t_all = time.perf_counter()
    sigs, sig_s, cached = signatures(a.alg, a.n, Path(a.cache_dir), threads, say)
    say(f"{'read' if cached else 'generated'} {a.n:,} signatures in {sig_s:.1f} s")
    if a.generate_only:
        return 0
    say("folding the state ...")
    t = time.perf_counter()
    reg = Registry(a.alg, n_tags, sigs, SPT)
    fold_s = time.perf_counter() - t
    del sigs
    gc.freeze()
    say(f"folded {reg.offset:,} events ({reg.n_repos:,} repositories) in {fold_s:.1f} s; peak RSS {peak_rss_mb():,.0f} MB")

    rows: list[tuple[str, int, float, float, float | None]] = []   # name, items, seconds, rate, CPU seconds
    load_before = os.getloadavg()
    first = reg.items(1)[0]
    raw_count = max(2_000, min(40_000, a.n // threads))

    # (a) naive loop
    naive_rate = None
    naive_n = 0
    if not a.skip_naive:
        items = reg.items(min(a.n, a.naive_n))
        naive_n = len(items)
        say(f"(a) naive loop over {naive_n:,} signatures ...")
        c0 = cpu_s()
        naive_rate = naive(a.alg, items)
        rows.append(("(a) naive loop, 1 thread", naive_n, naive_n / naive_rate, naive_rate, cpu_s() - c0))
        del items

    # (b) + (c): raw limit interleaved with cold runs
    raw_rates: list[float] = []
    raw1_rates: list[float] = []
    raw_cpu: list[float] = []
    cold_cpu: list[float] = []
    cold_times: list[float] = []
    stages: list[dict[str, float]] = []
    v = cache = None
    def raw() -> None:
        raw1_rates.append(raw_limit(a.alg, first, 1, raw_count))
        c0 = cpu_s()
        raw_rates.append(raw_limit(a.alg, first, threads, raw_count))
        raw_cpu.append(cpu_s() - c0)

    for k in range(a.repeat):
        raw()
        if v is not None:
            del v, cache
            gc.collect()
        cache = _cverify.SigCache()
        v = BatchVerifier(reg.state, ref_time=REF, engine="c", cache=cache, nthreads=threads)
        say(f"(c) cold run {k + 1}/{a.repeat}: {a.n:,} signatures, {n_tags:,} tags on {threads} threads ...")
        timings: dict[str, float] = {}
        c0 = cpu_s()
        t = time.perf_counter()
        sw = v.sweep(timings)
        cold_times.append(time.perf_counter() - t)
        cold_cpu.append(cpu_s() - c0)
        stages.append(timings)
        counts = sw.counts
        if counts != {"VALID": n_tags}:
            raise SystemExit(f"cold run: expected {n_tags} VALID, got {counts}")
        del sw
        raw()
    raw_rate = statistics.median(raw_rates)
    raw1_rate = statistics.median(raw1_rates)
    cold_s = statistics.median(cold_times)
    cold_rate = a.n / cold_s
    stage = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
    rows.append(("(b) raw limit, raw_verify_loop, 1 thread", raw_count, raw_count / raw1_rate, raw1_rate, None))
    rows.append((f"(b) raw limit, {threads} threads at once", threads * raw_count, threads * raw_count / raw_rate,
                 raw_rate, statistics.median(raw_cpu)))
    rows.append((f"(c) trustlog cold, {threads} threads", a.n, cold_s, cold_rate, statistics.median(cold_cpu)))
    ct = v._compiled.ct
    cache_bps = cache.nbytes / max(1, len(cache))
    compiled_bpt = ct.nbytes / max(1, ct.live_rows)

    # (d) warm: one KeyCompromised, then everything re-evaluated
    warm_times: list[float] = []
    warm_stages: list[dict[str, float]] = []
    fallen = 0
    fold_report_s = []
    for _ in range(a.warm_repeat):
        t = time.perf_counter()
        name, falls = reg.report_compromise()
        fold_report_s.append(time.perf_counter() - t)
        fallen += falls
        verified = ct.verified
        timings = {}
        t = time.perf_counter()
        sw = v.sweep(timings)
        warm_times.append(time.perf_counter() - t)
        warm_stages.append(timings)
        expect = {"VALID": n_tags - fallen, "KEY_COMPROMISED": fallen}
        if sw.counts != {k2: c for k2, c in expect.items() if c}:
            raise SystemExit(f"warm run: expected {expect}, got {sw.counts}")
        if ct.verified != verified:
            raise SystemExit("warm run verified signatures again; the crypto should come from the cache")
        del sw
    warm_s = statistics.median(warm_times)
    warm_rate = n_tags / warm_s
    rows.append(("(d) trustlog warm, after 1 KeyCompromised (tags)", n_tags, warm_s, warm_rate, None))

    # extras: a new verifier on the warm SigCache; the Verdict-object path
    v2 = BatchVerifier(reg.state, ref_time=REF, engine="c", cache=cache, nthreads=threads)
    t = time.perf_counter()
    sw = v2.sweep()
    newv_s = time.perf_counter() - t
    if v2._compiled.ct.verified != 0:
        raise SystemExit("a verifier sharing the SigCache verified signatures again")
    del sw, v2
    rows.append(("new verifier, shared SigCache (all hits)", a.n, newv_s, a.n / newv_s, None))
    obj_rate = None
    if not a.no_objects:
        reqs = [Request(r.name, tag) for r in reg.state.repos.values() for tag in r.tags]
        t = time.perf_counter()
        n_obj = sum(1 for _ in v.verify(reqs))
        obj_s = time.perf_counter() - t
        obj_rate = n_obj / obj_s
        rows.append(("warm, Verdict objects via verify(requests)", n_obj, obj_s, obj_rate, None))
        del reqs
    total_s = time.perf_counter() - t_all
    load_after = os.getloadavg()
    peak = peak_rss_mb()

    # -- report ---------------------------------------------------------------------------
    ver = versions()
    from rich.console import Console
    from rich.table import Table

    con = Console(file=err if a.json else sys.stdout, width=150)
    tab = Table(title=f"trustlog verify: {a.n:,} {a.alg} signatures, {threads} threads, backend {backend_name()}")
    for col in ("contender", "items", "seconds", "per second", "µs each", "per CPU-second"):
        tab.add_column(col, justify="left" if col == "contender" else "right")
    for name, n, sec, rate, cpu in rows:
        tab.add_row(name, f"{n:,}", f"{sec:,.2f}", f"{rate:,.0f}", f"{1e6 / rate:,.2f}",
                    f"{n / cpu:,.0f}" if cpu else "")
    con.print(tab)
    ratios = [f"cold / raw limit ({threads} threads at once) = {cold_rate / raw_rate:.3f}",
              f"cold / (raw 1 thread x {threads}) = {cold_rate / (raw1_rate * threads):.3f}"]
    if naive_rate:
        ratios.append(f"cold / naive = {cold_rate / naive_rate:.2f}x")
    ratios.append(f"warm = {warm_rate:,.0f} verdicts/s")
    con.print("ratios: " + ";  ".join(ratios))
    con.print("cold stages (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in stage.items())
              + ";  warm stages: " + ", ".join(f"{k} {statistics.median(s[k] for s in warm_stages) * 1e3:.1f} ms"
                                                 for k in warm_stages[0]))
    con.print(f"memory: SigCache {cache_bps:.1f} B per cached signature ({len(cache):,} entries); compiled state "
              f"{compiled_bpt:.0f} B per tag; peak RSS {peak:,.0f} MB")
    con.print(f"data: signatures {'read from cache' if cached else 'generated'} in {sig_s:.1f} s, fold {fold_s:.1f} s, "
              f"report fold {statistics.median(fold_report_s) * 1e3:.2f} ms; raw-limit runs {[round(r) for r in raw_rates]} "
              f"(1 thread: {[round(r) for r in raw1_rates]}); "
              f"cold runs {[round(s, 2) for s in cold_times]} s; warm runs {[round(s, 3) for s in warm_times]} s; "
              f"total {total_s:.0f} s")
    con.print("versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()) + f"; cores {os.cpu_count()}")
    con.print(f"load average (1/5/15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, after "
              f"{', '.join(f'{x:.2f}' for x in load_after)}: other processes share these cores, so wall-clock "
              f"rates vary with their load; per-CPU-second rates do not")
    if a.json:
        print(json.dumps({
            "algorithm": a.alg, "n": a.n, "tags": n_tags, "sigs_per_tag": SPT, "threads": threads,
            "backend": backend_name(), "load_before": load_before, "load_after": load_after,
            "naive_cpu_s": rows[0][4] if naive_rate else None, "cold_cpu_s": statistics.median(cold_cpu),
            "raw_cpu_s": statistics.median(raw_cpu), "raw_items": threads * raw_count,
            "naive_per_s": naive_rate, "naive_n": naive_n, "raw_limit_per_s": raw_rate,
            "raw_single_thread_per_s": raw1_rate, "cold_over_raw_single_x_threads": cold_rate / (raw1_rate * threads),
            "cold_per_s": cold_rate,
            "warm_per_s": warm_rate, "cold_s": cold_s, "warm_s": warm_s, "cold_stages_s": stage,
            "new_verifier_shared_cache_per_s": a.n / newv_s, "verdict_objects_per_s": obj_rate,
            "cold_over_raw": cold_rate / raw_rate, "cold_over_naive": cold_rate / naive_rate if naive_rate else None,
            "cache_bytes_per_sig": cache_bps, "compiled_bytes_per_tag": compiled_bpt, "peak_rss_mb": peak,
            "fold_s": fold_s, "signatures_cached": cached, "total_s": total_s, "versions": ver,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
