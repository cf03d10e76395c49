"""Kafka ingest throughput against the real broker, side by side with a bare consumer.

    python benchmarks/ingest.py [--n 200000] [--bootstrap HOST:PORT] [--json] [--profile]

The broker: ``--bootstrap``, else ``$TRUSTLOG_KAFKA_BOOTSTRAP``, else the one
``scripts/kafka/kafka.sh start`` runs (started here if it is not running).

In one run, on a fresh 4-partition topic:

1. record the topic's partition layout, as ``trustlog publish`` does when it creates a
   topic, then publish N signed events (the demo's synthetic registry: Ed25519, some
   ECDSA P-256 and RSA-PSS, with the demo's incidents) keyed by repository, acks=all,
   idempotent;
2. ``bare_consume_per_s``: a bare kafka-python loop (no group, no processing) reading
   the N messages back with the worker's fetch settings -- the ceiling kafka-python
   sets on this machine; beside it the same loop with the fetched records read in C
   (``bare_consume_c_reader_per_s``), as the worker reads them;
3. ``ingest_per_s``: :class:`KafkaIngestWorker` on the same topic (consumer group,
   per-partition fsynced logs, every signature checked by the selected backend,
   offsets committed after each group commit, each input's outcome message produced
   before the commit), messages over wall time from start to the last commit (group
   join and log creation included), its consumer reading the fetched records in C
   (``ingest/kafka_records.py``); ``--outcomes-ab`` also runs it without outcomes,
   ``--reader-ab`` with kafka-python's own record loop (``kafka_python_reader_*``);
4. ``raw_verify_limit_per_s``: the ceiling, since every event carries a signature: the
   raw C loop (``_cverify.raw_verify_loop``, GIL released) on two threads at once over
   the same signatures (the ones the worker pre-verifies, per algorithm, weighted by
   how many of each the events carry), in events/s; measured before, between and after
   the Kafka runs, the median taken. ``batch_verify_per_s`` is the compiled
   ``verify_batch`` on two threads over the very same signatures, beside it.
   ``ingest_vs_raw_limit`` is ingest_per_s / raw_verify_limit_per_s (the goal: >= 0.7).
   ``ingest_steady_per_s`` (and ``ingest_steady_vs_raw_limit``) is the same worker's rate
   after its first commit: what a long-running worker sustains, without the fixed start
   (``ingest_startup_seconds``: the group join, opening the logs, the first batches
   fetched and pre-verified) and stop (``ingest_shutdown_seconds``) that weigh on a short run.

The arithmetic behind the goal, from CPU (which load moves far less than wall time):
``verify_cpu_us_per_event`` V (``verify_batch`` over the events' signatures, all
threads), ``rest_cpu_us_per_event`` R (the ingest run's CPU per event less V). On C
busy cores the limit is C / V and ingest at best C / (V + R), so the ratio is at most
``ratio_if_cores_kept_busy`` = V / (V + R); 0.7 needs R <=
``rest_budget_for_0_7_us_per_event`` = V (1 / 0.7 - 1). ``bare_cpu_us_per_event`` (the
bare consumer) is the part of R that kafka-python alone costs.

``gc_seconds`` / ``gc_collections``: the worker's timed garbage collections during its run
(``ingest/gcpolicy.py``: the automatic collector is off while a worker runs).

It prints a table with the ratio and where the ingest time went (kafka-python's poll
and record decoding, the crypto backend, the rest of ingest_batch: envelope decode,
fold, append; fsync). ``--json`` ends with one JSON line.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from trustlog.ingest.kafka_servers import bootstrap_servers

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4


def bootstrap_address(arg: str | None, stack: ExitStack) -> str:
    """--bootstrap, $TRUSTLOG_KAFKA_BOOTSTRAP, the broker kafka.sh runs, or one started
    here (and stopped when the benchmark ends: ``stack``)."""
    if arg:
        return arg
    if os.environ.get("TRUSTLOG_KAFKA_BOOTSTRAP"):
        return os.environ["TRUSTLOG_KAFKA_BOOTSTRAP"]
    from started import service  # benchmarks/started.py

    return stack.enter_context(service(REPO / "scripts" / "kafka" / "kafka.sh", "bootstrap", "the broker"))


def make_events(n: int) -> list[tuple[bytes, bytes]]:
    """N (key, canonical envelope) pairs from the synthetic registry, in stream order."""
    from trustlog.core.events import decode_event
    from trustlog.ingest.synthetic import SyntheticRegistry

    repos = max(8, n // 200)
    reg = SyntheticRegistry(repos, n, ref_time=int(time.time()))  # ~1.01 n events; cut at n
    out: list[tuple[bytes, bytes]] = []
    for env in itertools.chain(reg.phase1(), reg.phase2(time.time_ns())):
        if len(out) >= n:
            break
        out.append((decode_event(env.payload).repo.encode(), env.to_bytes()))
    if len(out) < n:
        sys.exit(f"the generator made only {len(out)} events")
    return out


def publish(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> float:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap_servers(bootstrap), acks="all", enable_idempotence=True, linger_ms=20,
                      batch_size=512 * 1024, client_id="trustlog-bench-publish")
    t0 = time.perf_counter()
    errors = []
    for k, v in events:
        p.send(topic, key=k, value=v).add_errback(errors.append)
    p.flush()
    dt = time.perf_counter() - t0
    p.close()
    if errors:
        sys.exit(f"{len(errors)} messages not acknowledged: {errors[0]!r}")
    return dt


def bare_consume(bootstrap: str, topic: str, n: int, fetch: dict, records_in_c: bool = False) -> tuple[float, float]:
    """Wall and CPU seconds of a bare loop reading the n messages back; with
    ``records_in_c`` its consumer reads the fetched records as the worker's does
    (``ingest/kafka_records.py``), else with kafka-python's own loop (the baseline)."""
    from kafka import KafkaConsumer, TopicPartition

    from trustlog.ingest.kafka_records import install

    c = KafkaConsumer(bootstrap_servers=bootstrap_servers(bootstrap), enable_auto_commit=False, client_id="trustlog-bench-bare",
                      **fetch)
    if records_in_c and not install(c):
        c.close()
        raise RuntimeError("the C record reader is not available (not built, or another kafka-python)")
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while got < n:
        for recs in c.poll(timeout_ms=1000).values():
            got += len(recs)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    c.close()
    return dt, cpu


def signature_items(events: list[tuple[bytes, bytes]]) -> list[tuple[int, bytes, bytes, bytes]]:
    """Every ``(alg, key, message, signature)`` the ingest worker pre-verifies for these
    events (the keys are the ones the events themselves introduce), in stream order."""
    from trustlog.core.events import decode_envelope, decode_event
    from trustlog.core.state import TrustState
    from trustlog.ingest import precheck

    introduced: dict = {}
    decoded = []
    for _, raw in events:
        env = decode_envelope(raw)
        decoded.append((env, decode_event(env.payload)))
    return precheck.plan(TrustState(), decoded, introduced, set())[1]


def raw_verify_limit(items: list[tuple[int, bytes, bytes, bytes]], threads: int = 2,
                     seconds_per_alg: float = 0.3) -> tuple[float, dict[int, float]]:
    """Seconds the raw C loop (``_cverify.raw_verify_loop``: one signature verified over
    and over on each of ``threads`` threads, GIL released) needs for ``items``: per
    algorithm, the loop's per-signature time on ``threads`` threads at once, times how
    many of ``items`` use it. Returns (seconds, {alg: signatures/s on the threads})."""
    from collections import Counter

    from trustlog.verifier import _cverify

    counts = Counter(alg for alg, _, _, _ in items)
    first = {}
    for it in items:  # one signature per algorithm that verifies (the stream has a forged one)
        if it[0] not in first and _cverify.raw_verify_loop(*it, 1) == 1:
            first[it[0]] = it
    total = 0.0
    rates = {}
    for alg, m in counts.items():
        item = first[alg]
        # calibrate a count that runs about seconds_per_alg on one thread
        t = time.perf_counter()
        _cverify.raw_verify_loop(*item, 20)
        per = max((time.perf_counter() - t) / 20, 1e-7)
        count = max(20, int(seconds_per_alg / per))

        from rawloop import raw_loop_rate  # benchmarks/rawloop.py

        rate = raw_loop_rate(item, threads, count)
        rates[alg] = rate
        total += m / rate
    return total, rates


def batch_verify_seconds(items: list[tuple[int, bytes, bytes, bytes]], threads: int = 2) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all threads) ``_cverify.verify_batch`` needs for
    ``items`` on ``threads`` threads (cold). The CPU is what verification costs whatever
    the load: the budget the rest of ingest is measured against."""
    from trustlog.verifier import _cverify
    from trustlog.verifier.crypto_batch import pack_batch

    b = pack_batch(items).args()
    t, c = time.perf_counter(), time.process_time()
    _cverify.verify_batch(*b, nthreads=threads)
    return time.perf_counter() - t, time.process_time() - c


class TimedCrypto:
    def __init__(self) -> None:
        from trustlog.verifier.batch import default_crypto

        self.fn = default_crypto()
        self.seconds = 0.0  # wall seconds in the backend, all threads
        self.main_seconds = 0.0  # of which in the worker's thread (inside ingest_batch)
        self.signatures = 0
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, items):
        t0 = time.perf_counter()
        r = self.fn(items)
        dt = time.perf_counter() - t0
        with self._lock:
            self.seconds += dt
            if threading.current_thread() is threading.main_thread():
                self.main_seconds += dt
            self.signatures += len(items)
            self.calls += 1
        return r


def ingest(bootstrap: str, topic: str, n: int, logdir: Path, fetch: dict, profile: bool,
           preverify: bool = True, outcomes: bool = True, prefetch: int | None = None,
           records_in_c: bool = True) -> dict:
    from trustlog.ingest.kafka_worker import KafkaIngestWorker

    crypto = TimedCrypto()
    w = KafkaIngestWorker(bootstrap, topic, f"bench-{uuid.uuid4().hex[:8]}", logdir, max_messages=n,
                          max_poll_records=fetch["max_poll_records"],
                          max_partition_fetch_bytes=fetch["max_partition_fetch_bytes"],
                          fetch_max_bytes=fetch["fetch_max_bytes"],
                          log_options={"crypto": crypto}, install_signal_handlers=False, preverify=preverify,
                          outcomes="" if outcomes else None, read_records_in_c=records_in_c)
    if prefetch is not None:
        w.prefetch = prefetch
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0, c0, m0, mono0 = time.perf_counter(), time.process_time(), time.thread_time(), time.monotonic()
    rc = w.run()
    dt, cpu, main_cpu = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0
    mono1 = time.monotonic()
    if prof is not None:
        prof.disable()
        import pstats

        print("\n--- profile of the ingest worker (top 25 by own time) ---", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    if rc != 0:
        sys.exit(f"the ingest worker failed: {w.stats.error}")
    s = w.stats
    return {"seconds": dt, "cpu_s": cpu, "main_cpu_s": main_cpu, "messages": s.messages, "accepted": s.accepted, "rejected": s.rejected,
            "duplicates": s.duplicates, "batches": s.batches, "ingest_batch_s": s.ingest_seconds,
            "fsync_s": s.fsync_seconds, "crypto_s": crypto.seconds, "gc_s": s.gc_seconds,
            "gc_collections": s.gc_collections,
            "crypto_main_s": crypto.main_seconds, "signatures": crypto.signatures,
            "active_s": (s.last_message_at or 0) - (s.first_message_at or 0),
            # the steady state: what was committed after the first commit, over that span;
            # the start (layout, group join, the first batches fetched and pre-verified) and
            # the stop (closing the consumer, producer and logs) are timed apart
            "steady_messages": s.messages - s.first_batch_messages, "fast_records": w.fast_records,
            "startup_s": (s.first_message_at or mono1) - mono0, "shutdown_s": mono1 - (s.last_message_at or mono1)}


def bound(ing: dict) -> float:
    """Events/s the measured CPU costs allow on this machine's CPUs when nothing else
    runs: all threads' CPU spread over every core, and the main thread's on one."""
    n = ing["messages"]
    return min((os.cpu_count() or 1) * n / ing["cpu_s"], n / ing["main_cpu_s"])


def main() -> int:
    with ExitStack() as stack:  # stops a broker started here
        return _main(stack)


def _main(stack: ExitStack) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="events (default %(default)s)")
    ap.add_argument("--bootstrap", help="broker address (default: $TRUSTLOG_KAFKA_BOOTSTRAP or kafka.sh's)")
    ap.add_argument("--max-poll-records", type=int, default=5000)
    ap.add_argument("--max-partition-fetch-bytes", type=int, default=8 * 1024 * 1024)
    ap.add_argument("--fetch-max-bytes", type=int, default=64 * 1024 * 1024)
    ap.add_argument("--profile", action="store_true", help="cProfile the ingest worker (slows it down)")
    ap.add_argument("--keep", action="store_true", help="keep the topic and the logs")
    ap.add_argument("--no-preverify", action="store_true",
                    help="check signatures only inside ingest_batch (no background pre-verification)")
    ap.add_argument("--ab", action="store_true", help="also run the worker without pre-verification, for comparison")
    ap.add_argument("--no-outcomes", action="store_true", help="the worker writes no outcome messages")
    ap.add_argument("--outcomes-ab", action="store_true",
                    help="also run the worker with outcome messages the other way (off, or on with --no-outcomes)")
    ap.add_argument("--reader-ab", action="store_true",
                    help="also run the worker with kafka-python reading the fetched records (not the C reader)")
    ap.add_argument("--prefetch", type=int, help="poll batches the worker decodes and pre-verifies ahead of the "
                    "one it folds (default: the worker's, kafka_worker.PREFETCH_BATCHES)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = ap.parse_args()

    import kafka
    from kafka.admin import KafkaAdminClient

    from trustlog.verifier.backend import BACKEND

    bootstrap = bootstrap_address(args.bootstrap, stack)
    fetch = {"max_poll_records": args.max_poll_records, "max_partition_fetch_bytes": args.max_partition_fetch_bytes,
             "fetch_max_bytes": args.fetch_max_bytes}
    print(f"trustlog ingest benchmark: n={args.n:,}, broker {bootstrap}, kafka-python {kafka.__version__}, "
          f"Python {platform.python_version()}, crypto backend {BACKEND!r}, {os.cpu_count()} CPUs", file=sys.stderr)
    if BACKEND != "c":
        print("WARNING: the compiled crypto backend is not in use; figures are not representative", file=sys.stderr)

    t0 = time.perf_counter()
    events = make_events(args.n)
    gen_s = time.perf_counter() - t0
    size = sum(len(v) for _, v in events)
    print(f"generated {len(events):,} signed events ({size / len(events):.0f} B avg) in {gen_s:.1f} s",
          file=sys.stderr)
    items = signature_items(events)
    # the raw limit is measured three times (before, between and after the Kafka runs) and
    # the median taken, so that load from other processes hits it as it hits the rest
    raw_runs: list[float] = []
    batch_runs: list[float] = []
    batch_cpu_runs: list[float] = []

    def measure_limit() -> None:
        if BACKEND == "c":
            raw_runs.append(raw_verify_limit(items)[0])
            wall, cpu = batch_verify_seconds(items)
            batch_runs.append(wall)
            batch_cpu_runs.append(cpu)

    measure_limit()

    topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(bootstrap), client_id="trustlog-bench-admin")
    admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}}, timeout_ms=30_000,
                        wait_for_metadata=True)
    # the topic is set up as `trustlog publish` sets one up: its partition layout recorded
    # before the first event (a one-off per topic, which the worker would otherwise pay
    # at its start: about 0.5 s here)
    from trustlog.ingest.partitioning import ensure_layout

    ensure_layout(bootstrap, topic)
    tmp = Path(tempfile.mkdtemp(prefix="trustlog-bench-ingest-", dir=os.environ.get("TRUSTLOG_BENCH_DIR")))
    try:
        pub_s = publish(bootstrap, topic, events)
        del events
        print(f"published in {pub_s:.1f} s ({args.n / pub_s:,.0f}/s)", file=sys.stderr)
        bare_s, bare_cpu = bare_consume(bootstrap, topic, args.n, fetch)
        try:
            bare_c_s, bare_c_cpu = bare_consume(bootstrap, topic, args.n, fetch, records_in_c=True)
        except RuntimeError as e:
            print(f"bare consume with the C record reader: not measured ({e})", file=sys.stderr)
            bare_c_s = bare_c_cpu = None
        print(f"bare consume: {bare_s:.2f} s ({args.n / bare_s:,.0f}/s)", file=sys.stderr)
        measure_limit()
        ing = ingest(bootstrap, topic, args.n, tmp / "logs", fetch, args.profile, not args.no_preverify,
                     not args.no_outcomes, args.prefetch)
        oab = None
        if args.outcomes_ab:
            oab = ingest(bootstrap, topic, args.n, tmp / "logs-oab", fetch, False, not args.no_preverify,
                         args.no_outcomes)
            print(f"worker with outcome messages {'off' if not args.no_outcomes else 'on'}: "
                  f"{oab['messages'] / oab['seconds']:,.0f}/s, {oab['cpu_s'] / oab['messages'] * 1e6:.0f} us CPU/event",
                  file=sys.stderr)
        rab = None
        if args.reader_ab:
            rab = ingest(bootstrap, topic, args.n, tmp / "logs-rab", fetch, False, not args.no_preverify,
                         not args.no_outcomes, args.prefetch, records_in_c=False)
        if args.ab:
            ab = ingest(bootstrap, topic, args.n, tmp / "logs-ab", fetch, False, args.no_preverify)
            print(f"worker with pre-verification {'off' if not args.no_preverify else 'on'}: "
                  f"{ab['messages'] / ab['seconds']:,.0f}/s, {ab['cpu_s'] / ab['messages'] * 1e6:.0f} us CPU/event, "
                  f"main thread {ab['main_cpu_s'] / ab['messages'] * 1e6:.0f} us/event, "
                  f"idle-machine bound {bound(ab):,.0f}/s",
                  file=sys.stderr)
        measure_limit()
    finally:
        if not args.keep:
            admin.delete_topics([topic, f"{topic}.layout", f"{topic}.outcomes"], timeout_ms=30_000,
                                raise_errors=False)
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        admin.close()

    bare_rate = args.n / bare_s
    ingest_rate = ing["messages"] / ing["seconds"]
    steady_rate = ing["steady_messages"] / ing["active_s"] if ing["active_s"] > 0 else None
    other = max(0.0, ing["ingest_batch_s"] - ing["crypto_main_s"] - ing["fsync_s"])
    poll = max(0.0, ing["seconds"] - ing["ingest_batch_s"])
    raw_rate = args.n / statistics.median(raw_runs) if raw_runs else None
    batch_rate = args.n / statistics.median(batch_runs) if batch_runs else None
    rows = [
        ("publish (acks=all, idempotent)", f"{args.n / pub_s:,.0f}/s", ""),
        ("bare kafka-python consume", f"{bare_rate:,.0f}/s", "baseline"),
        *([("  same, fetched records read in C", f"{args.n / bare_c_s:,.0f}/s",
            f"{bare_s / bare_c_s:.2f}x; CPU {bare_c_cpu / args.n * 1e6:.1f} vs {bare_cpu / args.n * 1e6:.1f} us/event")]
          if bare_c_s else []),
    ]
    if raw_rate is not None and batch_rate is not None:
        rows += [(f"raw C verification loop, 2 threads, same {len(items):,} signatures", f"{raw_rate:,.0f}/s",
                  "the limit"),
                 ("  compiled verify_batch, 2 threads, same signatures", f"{batch_rate:,.0f}/s",
                  f"{batch_rate / raw_rate:.2f}x of the limit")]
    rows.append(("ingest worker (verify + fold + fsync + outcomes + commit)" if not args.no_outcomes else
                 "ingest worker (verify + fold + fsync + commit)", f"{ingest_rate:,.0f}/s",
                 f"{ingest_rate / bare_rate:.2f}x of bare"
                 + (f", {ingest_rate / raw_rate:.2f}x of the limit" if raw_rate else "")))
    if steady_rate is not None:
        rows.append((f"  same, steady state (after the first commit; start {ing['startup_s']:.2f} s, "
                     f"stop {ing['shutdown_s']:.2f} s)", f"{steady_rate:,.0f}/s",
                     f"{steady_rate / bare_rate:.2f}x of bare"
                     + (f", {steady_rate / raw_rate:.2f}x of the limit" if raw_rate else "")))
    if rab is not None:
        rab_rate = rab["messages"] / rab["seconds"]
        rab_steady = rab["steady_messages"] / rab["active_s"] if rab["active_s"] > 0 else float("nan")
        rows.append(("  same, fetched records read by kafka-python (not in C)", f"{rab_rate:,.0f}/s",
                     f"steady {rab_steady:,.0f}/s; CPU {rab['cpu_s'] / rab['messages'] * 1e6:.0f} us/event, main thread "
                     f"{rab['main_cpu_s'] / rab['messages'] * 1e6:.0f}"
                     + (f"; {rab_rate / raw_rate:.2f}x of the limit" if raw_rate else "")))
    if oab is not None:
        oab_rate = oab["messages"] / oab["seconds"]
        rows.append((f"  same, outcome messages {'off' if not args.no_outcomes else 'on'}", f"{oab_rate:,.0f}/s",
                     f"{ingest_rate / oab_rate:.2f}x of it"))
    print()
    w = max(len(r[0]) for r in rows)
    print(f"{'':{w}}  {'events/s':>12}  ratio")
    for name, rate, note in rows:
        print(f"{name:{w}}  {rate:>12}  {note}")
    print(f"\ningest worker thread, {ing['seconds']:.2f} s wall, of which {ing['active_s']:.2f} s from the first "
          f"batch to the last ({ing['batches']} batches, "
          f"{ing['signatures']:,} signatures for {ing['accepted']:,} accepted / {ing['rejected']} rejected):")
    for name, secs in (("kafka-python poll + record decode, commits, waiting", poll),
                       ("crypto backend inside ingest_batch", ing["crypto_main_s"]),
                       ("fsync (group commits)", ing["fsync_s"]),
                       ("rest of ingest_batch (decode, fold, append, Merkle, index)", other)):
        print(f"  {name:{w}}  {secs:7.2f} s  {secs / ing['seconds'] * 100:5.1f} %")
    print(f"  {'crypto backend in the pre-verification thread (overlaps)':{w}}  "
          f"{ing['crypto_s'] - ing['crypto_main_s']:7.2f} s")
    print(f"  CPU: ingest {ing['cpu_s'] / ing['messages'] * 1e6:.0f} us/event (all threads; main thread "
          f"{ing['main_cpu_s'] / ing['messages'] * 1e6:.0f}), bound on {os.cpu_count()} idle CPUs {bound(ing):,.0f}/s; "
          f"bare consume {bare_cpu / args.n * 1e6:.1f} us/event (the worker reads fetched records "
          f"{'in C' if ing['fast_records'] else 'with kafka-python'}); load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(f"  garbage collection: {ing['gc_collections']} timed collections, {ing['gc_s']:.3f} s "
          f"({ing['gc_s'] / ing['messages'] * 1e6:.2f} us/event; the automatic collector is off while the worker runs)")
    if ing["signatures"]:
        print(f"  crypto: {ing['crypto_s'] / ing['signatures'] * 1e6:.1f} us per signature (backend {BACKEND})")
    budget = None
    if batch_cpu_runs:
        # On C cores the raw limit is C / V events/s (V: verification CPU per event) and
        # ingest at best C / (V + R) (R: the CPU of everything else, if every core is kept
        # busy), so ingest / limit = V / (V + R): 0.7 needs R <= V * (1 / 0.7 - 1).
        v = statistics.median(batch_cpu_runs) / args.n * 1e6
        r = ing["cpu_s"] / ing["messages"] * 1e6 - v
        budget = {"verify_cpu_us_per_event": round(v, 1), "rest_cpu_us_per_event": round(r, 1),
                  "rest_budget_for_0_7_us_per_event": round(v * (1 / 0.7 - 1), 1),
                  "ratio_if_cores_kept_busy": round(v / (v + r), 3) if v + r > 0 else None}
        print(f"  arithmetic: verification {v:.1f} us CPU/event, everything else {r:.1f} (bare consume alone "
              f"{bare_cpu / args.n * 1e6:.1f}); 0.7x needs everything else <= {v * (1 / 0.7 - 1):.1f} us; "
              f"with every core kept busy this CPU allows {budget['ratio_if_cores_kept_busy']}x")
    if args.json:
        print(json.dumps({
            "n": args.n, "backend": BACKEND, "cpus": os.cpu_count(), "kafka_python": kafka.__version__,
            "publish_per_s": round(args.n / pub_s, 1), "bare_consume_per_s": round(bare_rate, 1),
            "bare_consume_c_reader_per_s": round(args.n / bare_c_s, 1) if bare_c_s else None,
            "bare_c_reader_cpu_us_per_event": round(bare_c_cpu / args.n * 1e6, 2) if bare_c_cpu else None,
            "ingest_per_s": round(ingest_rate, 1), "ratio": round(ingest_rate / bare_rate, 3),
            "raw_verify_limit_per_s": round(raw_rate, 1) if raw_rate else None,
            "ingest_vs_raw_limit": round(ingest_rate / raw_rate, 3) if raw_rate else None,
            "batch_verify_per_s": round(batch_rate, 1) if batch_rate else None,
            "raw_limit_runs_s": [round(x, 3) for x in raw_runs], "signatures_per_event": round(len(items) / args.n, 3),
            "ingest_idle_bound_per_s": round(bound(ing), 1),
            "ingest_main_thread_cpu_us_per_event": round(ing["main_cpu_s"] / ing["messages"] * 1e6, 1),
            "ingest_active_seconds": round(ing["active_s"], 3),
            "ingest_steady_per_s": round(steady_rate, 1) if steady_rate else None,
            "kafka_records_read_in_c": ing["fast_records"],
            **({"kafka_python_reader_per_s": round(rab["messages"] / rab["seconds"], 1),
                "kafka_python_reader_cpu_us_per_event": round(rab["cpu_s"] / rab["messages"] * 1e6, 1),
                "kafka_python_reader_main_thread_cpu_us_per_event": round(rab["main_cpu_s"] / rab["messages"] * 1e6, 1)}
               if rab is not None else {}),
            "ingest_steady_vs_raw_limit": round(steady_rate / raw_rate, 3) if steady_rate and raw_rate else None,
            "ingest_startup_seconds": round(ing["startup_s"], 3), "ingest_shutdown_seconds": round(ing["shutdown_s"], 3),
            "ingest_seconds": round(ing["seconds"], 3), "ingest_cpu_us_per_event": round(ing["cpu_s"] / ing["messages"] * 1e6, 1),
            "bare_cpu_us_per_event": round(bare_cpu / args.n * 1e6, 2), "load_average": round(os.getloadavg()[0], 2), "poll_seconds": round(poll, 3),
            "crypto_seconds": round(ing["crypto_s"], 3), "crypto_in_worker_thread_seconds": round(ing["crypto_main_s"], 3), "fsync_seconds": round(ing["fsync_s"], 3),
            "gc_seconds": round(ing["gc_s"], 3), "gc_collections": ing["gc_collections"],
            "other_ingest_seconds": round(other, 3), "signatures": ing["signatures"],
            "accepted": ing["accepted"], "rejected": ing["rejected"], "duplicates": ing["duplicates"],
            "outcomes": not args.no_outcomes, "prefetch": args.prefetch, **(budget or {}),
            **({"ingest_outcomes_flipped_per_s": round(oab["messages"] / oab["seconds"], 1)} if oab else {}),
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
