"""Kafka commands: `trustlog publish`, `trustlog ingest --kafka`, `trustlog verify-kafka`.

Registered into the main parser by ``register(sub, common)``; the embedded default
(files and a local log, no broker) is untouched.

Log time and the demo's compromise point. ``KeyCompromised.since`` is a *log* time:
what the key signed that was appended at or after it loses trust. Published events get
their log time only when a worker appends them, so ``publish --demo`` takes ``since`` =
``time.time_ns()`` on the publisher's clock at the phase boundary (after phase 1 is
acknowledged by the broker). With ``--wait-group G`` it first waits until consumer
group G has committed every phase-1 offset -- committed means appended and fsynced, so
all of phase 1 then has a log time before ``since`` and the verdicts match the
embedded demo's. Without it, phase-1 events a worker appends after the boundary count
as signed after the compromise (stricter, never looser). Worker and publisher clocks
are assumed to agree (NTP).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from trustlog.core.errors import EncodingError, InputError, TrustlogError
from trustlog.core.events import Envelope, decode_event, decode_wire, envelope_to_json
from trustlog.ingest.kafka_servers import bootstrap_servers

from .common import emit
from .options import add_kafka_worker_options, add_max_event_bytes_option, positive_int
from .safe import plain
from .ui import UI

if TYPE_CHECKING:
    from trustlog.ingest.partitioning import Layout


# -- publish --------------------------------------------------------------------------------

def ensure_topic(bootstrap: str, topic: str, partitions: int) -> bool:
    """Create ``topic`` with ``partitions`` partitions unless it exists; True if created."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(bootstrap), client_id="trustlog-admin")
    try:
        if topic in admin.list_topics():
            return False
        try:
            admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}},
                                timeout_ms=30_000, wait_for_metadata=True)
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        admin.close()


class Publisher:
    """Send canonical msgpack envelopes keyed by repository: acks=all, idempotent.

    The partition of each envelope is its repository's under the topic's recorded
    layout (``trustlog.ingest.partitioning``), never the live partition count, so a
    grown topic keeps every repository where its history is. With ``track``, the
    position each send reached is kept (``positions``: input label -> event id) for
    ``publish --wait``."""

    def __init__(self, bootstrap: str, topic: str, *, linger_ms: int = 20, batch_size: int = 512 * 1024,
                 layout: Layout | None = None, track: bool = False) -> None:
        from kafka import KafkaProducer

        from trustlog.ingest.partitioning import ensure_layout

        self.topic = topic
        self.layout = layout if layout is not None else ensure_layout(bootstrap, topic)
        self.track = track
        self.positions: dict[str, str] = {}
        self.producer = KafkaProducer(bootstrap_servers=bootstrap_servers(bootstrap), acks="all", enable_idempotence=True,
                                      linger_ms=linger_ms, batch_size=batch_size,
                                      client_id=f"trustlog-publish-{os.getpid()}")
        self.sent = 0
        self.per_partition: Counter[int] = Counter()
        self.end_offsets: dict[int, int] = {}
        self.errors: list[BaseException] = []

    def _ok(self, event_id: str, md: Any) -> None:  # kafka-python calls f(*args, value)
        if self.track:
            self.positions[f"{md.topic}/{md.partition}/{md.offset}"] = event_id
        self.per_partition[md.partition] += 1
        if md.offset + 1 > self.end_offsets.get(md.partition, 0):
            self.end_offsets[md.partition] = md.offset + 1

    def _err(self, exc: BaseException) -> None:
        self.errors.append(exc)

    def send_envelope(self, env: Envelope, repo: str | None = None) -> None:
        if repo is None:
            repo = decode_event(env.payload).repo
        self.send_raw(env.to_bytes(), repo.encode(), self.layout.partition_for(repo), env.event_id)

    def send_raw(self, value: bytes, key: bytes | None, partition: int | None = None, event_id: str = "") -> None:
        fut = self.producer.send(self.topic, key=key, value=value, partition=partition)
        fut.add_callback(self._ok, event_id)
        fut.add_errback(self._err)
        self.sent += 1

    def flush(self) -> None:
        self.producer.flush()
        if self.errors:
            raise TrustlogError(f"{len(self.errors)} of {self.sent} messages were not acknowledged by the broker; "
                                f"first error: {self.errors[0]!r}")

    def close(self) -> None:
        self.producer.close(timeout=30)


def wait_for_group(bootstrap: str, group: str, topic: str, end_offsets: dict[int, int], timeout: float,
                   ui: UI | None = None) -> float:
    """Wait until ``group`` has committed at least ``end_offsets`` on ``topic``; return
    the seconds waited. Raises TrustlogError on timeout."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(bootstrap), client_id="trustlog-admin")
    t0 = time.monotonic()
    try:
        while True:
            try:
                offsets = admin.list_group_offsets(group).get(group) or {}
            except KafkaError:  # the group does not exist yet, or its coordinator moves
                offsets = {}
            committed = {tp.partition: om.offset for tp, om in offsets.items()
                         if tp.topic == topic and om is not None and om.offset is not None and om.offset >= 0}
            behind = {p: e - committed.get(p, 0) for p, e in end_offsets.items() if committed.get(p, 0) < e}
            if not behind:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise TrustlogError(f"group {group!r} did not commit phase 1 within {timeout:.0f} s "
                                    f"(still behind: {behind}); is an ingest worker running?")
            if ui is not None:
                ui.info(f"waiting for group {group} to ingest phase 1: {sum(behind.values())} messages behind")
            time.sleep(0.5)
    finally:
        admin.close()


def _file_envelopes(path: Path, max_bytes: int, send_invalid: bool) -> Iterator[tuple[Envelope | None, bytes]]:
    from trustlog.ingest.pipeline import read_lines

    for line, where in read_lines(path):
        try:
            env = decode_wire(line, max_bytes)
            decode_event(env.payload)
        except EncodingError as e:
            if not send_invalid:
                raise InputError(f"{path}:{where.line}: not a signed event envelope ({e}); fix the line, or give "
                                 "--send-invalid to publish it raw (unkeyed) for the rejects log") from e
            yield None, line
            continue
        yield env, line


def cmd_publish(args: argparse.Namespace, ui: UI) -> int:
    if not args.demo and not args.file:
        raise InputError("give a JSONL FILE of envelopes or --demo")
    if args.demo and args.file:
        raise InputError("give either FILE or --demo, not both")
    path = Path(args.file) if args.file else None
    if path is not None and not path.is_file():
        raise InputError(f"{path}: no such file")
    if path is not None and not args.send_invalid:  # bad input publishes nothing: check every line first
        for _ in _file_envelopes(path, args.max_event_bytes, False):
            pass
    if args.partitions:
        ensure_topic(args.kafka, args.topic, args.partitions)
    t0 = time.perf_counter()
    pub = Publisher(args.kafka, args.topic, linger_ms=args.linger_ms, track=args.wait)
    waiter = None
    if args.wait:  # positioned at the end of the outcomes topic before anything is sent
        from trustlog.ingest.outcomes import OutcomeWaiter, default_outcomes_topic

        waiter = OutcomeWaiter(args.kafka, args.outcomes or default_outcomes_topic(args.topic), pub.layout.partitions)
    dump = open(args.dump, "wb") if args.dump else None
    out: dict[str, Any] = {"topic": args.topic}
    try:
        def send_all(envs: Iterable[Envelope]) -> int:
            n = 0
            for env in envs:
                pub.send_envelope(env)
                if dump is not None:
                    dump.write(envelope_to_json(env) + b"\n")
                n += 1
            return n

        if args.demo:
            from trustlog.ingest.synthetic import SyntheticRegistry

            from .times import parse_time as _parse_time

            ref = int(time.time()) if args.ref_time is None else _parse_time(args.ref_time) // 1_000_000_000
            n_repos = max(8, int(1000 * args.scale))
            n_tags = max(2 * n_repos, int(20_000 * args.scale))
            reg = SyntheticRegistry(n_repos, n_tags, ref_time=ref, seed=args.seed)
            ui.info(f"publishing a synthetic registry to {args.topic}: {n_repos} repositories, {n_tags} tags")
            n1 = send_all(reg.phase1())
            pub.flush()
            waited = 0.0
            if args.wait_group:
                waited = wait_for_group(args.kafka, args.wait_group, args.topic, dict(pub.end_offsets),
                                        args.wait_timeout, ui)
            since = time.time_ns() if args.since is None else _parse_time(args.since)
            n2 = send_all(reg.phase2(since))
            out.update(phase1=n1, phase2=n2, since=since, ref_time=ref, waited_seconds=round(waited, 3),
                       compromised_keyid=reg.incidents.compromised_keyid,
                       expected_rejects=dict(reg.incidents.expected_rejects))
        else:
            assert path is not None
            invalid = 0
            for env, line in _file_envelopes(path, args.max_event_bytes, args.send_invalid):
                if env is None:
                    pub.send_raw(line, None)
                    invalid += 1
                else:
                    pub.send_envelope(env)
                    if dump is not None:
                        dump.write(envelope_to_json(env) + b"\n")
            out.update(file=str(path), invalid_sent_raw=invalid)
        pub.flush()
        out.update(published=pub.sent, partitions={str(p): c for p, c in sorted(pub.per_partition.items())},
                   layout_partitions=pub.layout.partitions, seconds=round(time.perf_counter() - t0, 3))
        rc = 0
        if waiter is not None:
            if not args.json:
                ui.info(f"waiting up to {args.wait_timeout:.0f} s for the outcomes of {len(pub.positions)} "
                        f"messages on {waiter.topic}")
            got, missing = waiter.wait(pub.positions, args.wait_timeout)
            rc = _report_outcomes(out, pub.positions, got, missing)
    finally:
        if dump is not None:
            dump.close()
        pub.close()
        if waiter is not None:
            waiter.close()
    if args.json:
        emit(out)
    else:
        ui.table(f"published to {args.topic}", ["messages", "partitions", "seconds"],
                 [[pub.sent, " ".join(f"p{p}:{c}" for p, c in sorted(pub.per_partition.items())), out["seconds"]]])
        if args.demo:
            ui.info(f"compromise point (since, publisher log time): {out['since']}")
        if waiter is not None:
            _print_outcomes(ui, out)
    return rc


def _report_outcomes(out: dict[str, Any], sent: dict[str, str], got: dict[str, Any], missing: set[str]) -> int:
    """Put the outcomes into ``out``; exit status: 2 if any is missing (timeout), 1 if
    any input was rejected, 0 if every one is in the log."""
    rows = []
    for label, eid in sent.items():
        o = got.get(label)
        row = {"input": label, "event_id": eid, "status": "missing"} if o is None else \
            {"input": label, **msgspec.to_builtins(o), "event_id": o.event_id or eid}
        rows.append(row)
    counts = Counter(r["status"] for r in rows)
    out.update(outcomes=rows, outcome_counts=dict(counts), timed_out=len(missing))
    return 2 if missing else 1 if counts["rejected"] else 0


def _print_outcomes(ui: UI, out: dict[str, Any]) -> None:

    counts = out["outcome_counts"]
    ui.table("outcomes", ["accepted", "rejected", "duplicate", "no outcome (timeout)"],
             [[counts.get("accepted", 0), counts.get("rejected", 0), counts.get("duplicate", 0),
               counts.get("missing", 0)]])
    bad = [r for r in out["outcomes"] if r["status"] in ("rejected", "missing")]
    if bad:
        shown = bad[:50]
        ui.table("not in the log" + (f" (first 50 of {len(bad)}; --json lists all)" if len(bad) > 50 else ""),
                 ["input", "event id", "status", "reason", "detail"],
                 [[r["input"], (r["event_id"] or "-")[:16], r["status"], r.get("reason", ""),
                   r.get("detail", "")] for r in shown])


# -- ingest --kafka ------------------------------------------------------------------------

def _refuse_pins(args: argparse.Namespace) -> None:
    """--pins used to be ignored here; pins are part of each partition log now."""
    if getattr(args, "pins", None):
        raise InputError("with Kafka each partition log holds its own pin policy, which every worker uses: set it "
                         "with `trustlog pins set FILE --log LOG/p<N>`; --pins is not taken here")


def cmd_ingest_kafka(args: argparse.Namespace, ui: UI) -> int:
    _refuse_pins(args)
    from .kafka_worker import worker_from_args
    from .progress_line import configure_logging

    configure_logging()
    w = worker_from_args(args.kafka, args, quiet=args.json)
    rc = w.run()
    if args.json:
        emit(w.stats.to_dict())
    if rc:
        print(f"trustlog: error: {plain(w.stats.error)}", file=sys.stderr)
    return rc


def _extend_ingest(ingest: argparse.ArgumentParser) -> None:
    """Give the existing `trustlog ingest [FILE]` (cli/main.py) a Kafka mode: `trustlog
    ingest --kafka B --topic T --group G`. That parser has --log and --max-event-bytes
    already; this adds the other worker options and says which of FILE or --kafka to give."""
    g = ingest.add_argument_group("Kafka (scale-out) mode: --log is the directory of the partition logs p<N>/")
    g.add_argument("--kafka", metavar="BOOTSTRAP", help="consume a topic instead of reading FILE")
    add_kafka_worker_options(g)
    file_func = ingest.get_default("func")

    def dispatch(args: argparse.Namespace, ui: UI) -> int:
        if args.kafka:
            if args.file:
                raise InputError("give either FILE or --kafka, not both")
            from .logdir import NoLogError, holds_partition_logs
            _refuse_pins(args)  # a usage error: said before anything is looked at
            if not getattr(args, "init", False) and not holds_partition_logs(args.log):
                raise NoLogError(f"no partition logs (p0/, p1/, ...) under {args.log} (give --log DIR; to start "
                                 "new ones there, give --init)")
            return cmd_ingest_kafka(args, ui)
        if not args.file:
            raise InputError("give a JSONL FILE to ingest, or --kafka BOOTSTRAP --topic T --group G")
        return file_func(args, ui)

    ingest.set_defaults(func=dispatch)


# -- verify-kafka -------------------------------------------------------------------------

def cmd_verify_kafka(args: argparse.Namespace, ui: UI) -> int:
    import signal

    _refuse_pins(args)
    from trustlog.services.kafka_verify import KafkaVerifyService

    from .times import parse_time as _parse_time

    ref = None if args.ref_time is None else _parse_time(args.ref_time) // 1_000_000_000
    t0 = time.perf_counter()
    with KafkaVerifyService(args.kafka, args.kafka_requests, args.kafka_results, args.log, group=args.group,
                            ref_time=ref, max_poll_records=args.max_poll_records) as svc:
        ui.info(f"state from {args.log}: {len(svc.state.repos)} repositories, {svc.state.version} records "
                f"({time.perf_counter() - t0:.1f} s)")

        def on_signal(signum: int, frame: Any) -> None:
            svc.stop()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            summary = svc.run(idle_exit=args.idle_exit, max_messages=args.max_messages)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    if args.json:
        emit(summary.to_dict())
    else:
        counts = summary.verdicts.most_common()
        ui.say("{} verdicts → {}: {}", summary.requests, args.kafka_results, ", ".join(f"{k}={v}" for k, v in counts),
               err=True)
    return 0


# -- registration -------------------------------------------------------------------------

def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the Kafka commands to the `trustlog` subparsers (``sub``); ``common`` gives
    --json/--log/--keys."""
    pp = sub.add_parser(
        "publish", parents=[common], help="produce signed events to a Kafka topic, keyed by repository",
        description="Produce canonical MessagePack envelopes to TOPIC, keyed by repository (acks=all, "
                    "idempotent), from a JSONL FILE of envelopes or from the demo generator. With --demo, phase 2 "
                    "(which reports a CI key compromised) gets since = the publisher's clock at the phase "
                    "boundary; --wait-group G first waits until group G has ingested all of phase 1.")
    pp.add_argument("file", nargs="?", help="JSONL: one envelope {payload, signatures} per line")
    pp.add_argument("--kafka", required=True, metavar="BOOTSTRAP", help="bootstrap servers host:port[,...]")
    pp.add_argument("--topic", required=True, help="the topic to produce to")
    pp.add_argument("--partitions", type=positive_int, metavar="N",
                    help="create the topic with this many partitions if it is missing")
    pp.add_argument("--demo", action="store_true", help="publish the synthetic registry of `trustlog demo`")
    pp.add_argument("--scale", type=float, default=1.0, help="demo size (1 = 1,000 repositories, 20,000 tags)")
    pp.add_argument("--ref-time", help="demo: the expired tags expire before this (ISO 8601 or integer ns; default now; "
                                       "any time after 2023-11-16 gives the same events)")
    pp.add_argument("--wait-group", metavar="GROUP",
                    help="demo: before phase 2, wait until GROUP has committed every phase-1 offset")
    pp.add_argument("--seed", default="trustlog-demo",
                    help="demo: seed of every key and event; the same seed sends the same bytes (default %(default)s)")
    pp.add_argument("--since", metavar="T",
                    help="demo: the compromise point in phase 2 (ISO 8601 or ns; default: the publisher's clock at "
                         "the phase boundary); give the first run's value to re-send identical phase-2 bytes")
    pp.add_argument("--wait", action="store_true",
                    help="wait for every message's outcome from the ingest workers (accepted at partition/offset, "
                         "or rejected with its reason); exit 1 if any was rejected, 2 if any is missing at "
                         "--wait-timeout")
    pp.add_argument("--outcomes", metavar="TOPIC", help="outcomes topic for --wait (default <topic>.outcomes)")
    pp.add_argument("--wait-timeout", type=float, default=600.0, metavar="SECONDS",
                    help="how long --wait and --wait-group wait (default %(default)s)")
    pp.add_argument("--dump", metavar="FILE", help="also write every published envelope to this JSONL file")
    pp.add_argument("--send-invalid", action="store_true",
                    help="publish lines that are not envelopes raw and unkeyed (the workers reject them)")
    add_max_event_bytes_option(pp, help="refuse larger envelopes in FILE (default %(default)s)")
    pp.add_argument("--linger-ms", type=int, default=20, metavar="MS",
                    help="producer batching delay (default %(default)s)")
    pp.set_defaults(func=cmd_publish)

    _extend_ingest(sub.choices["ingest"])  # built in cli/main.py, before the registrars run

    vk = sub.add_parser(
        "verify-kafka", parents=[common], help="answer verification requests from a topic into a results topic",
        description="Follow every partition log under --log (p0/, p1/, ...) read-only, beside their ingest "
                    "workers (no lock is taken; events they append are folded in before each batch; each log "
                    "must hold only repositories of its own partition under <log>/layout.json), and "
                    "read requests {repo, tag[, digest]} "
                    "(JSON) from --kafka-requests and write verdict JSON to --kafka-results, keyed by the "
                    "requested digest (or repo:tag). Request offsets are committed after the results are "
                    "acknowledged (at least once).")
    vk.add_argument("--kafka", required=True, metavar="BOOTSTRAP", help="bootstrap servers host:port[,...]")
    vk.add_argument("--kafka-requests", required=True, metavar="TOPIC", help="topic of requests {repo, tag[, digest]}")
    vk.add_argument("--kafka-results", required=True, metavar="TOPIC", help="topic the verdicts are written to")
    vk.add_argument("--group", default="trustlog-verify", help="consumer group (default %(default)s)")
    vk.add_argument("--ref-time", help="reference time for expiry (ISO 8601 or ns; default: now, fixed)")
    vk.add_argument("--idle-exit", type=float, metavar="SECONDS", help="stop after this long without requests")
    vk.add_argument("--max-messages", type=positive_int, help="stop after this many requests")
    vk.add_argument("--max-poll-records", type=positive_int, default=5000, metavar="N",
                    help="requests per poll and verified batch (default %(default)s)")
    vk.set_defaults(func=cmd_verify_kafka)
