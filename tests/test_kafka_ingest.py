"""Kafka ingest against the real broker (scripts/kafka/kafka.sh): exactly once into the
partition logs, through kill -9, broker restarts, rebalances and fsync failures.

Workers run as subprocesses (``python -m trustlog.cli.kafka_worker``), so a kill -9
is a real one; a fault inside the worker (a failing fsync) is injected by starting it
through ``tests/fault_worker.py``. Every test uses a fresh topic with 4 partitions.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from kafka_broker import delete_topics, require_restartable_broker, restart_broker, topic_fixture

from trustlog.cli.kafka_cmds import wait_for_group
from trustlog.core.evaluate import Request
from trustlog.core.events import Envelope, ImageSigned, Signature, envelope_to_json, sign_event
from trustlog.core.keys import SigningKey
from trustlog.ingest.partitioning import partition_dirs
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.records import LogClock, decode_record
from trustlog.ingest.rejects import RejectsLog
from trustlog.ingest.segment_log import SegmentLog
from trustlog.ingest.synthetic import SyntheticRegistry
from trustlog.verifier.batch import BatchVerifier, requests_for_state

pytestmark = pytest.mark.kafka

PARTITIONS = 4
PY = sys.executable
WORKER = [PY, "-m", "trustlog.cli.kafka_worker"]
FAULT_WORKER = [PY, str(Path(__file__).with_name("fault_worker.py"))]  # the worker with fault hooks
CLI = [PY, "-m", "trustlog.cli.main"]  # = `trustlog`


# -- helpers -------------------------------------------------------------------------------

def producer(bootstrap: str, **kw):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                         client_id="trustlog-test-producer", **kw)


def produce(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes | None]], *, pause: float = 0.0,
            timeout: float = 60, ends: dict[int, int] | None = None, **kw) -> dict[int, int]:
    """Send (key, value) pairs, sleeping ``pause`` s after every 100 (a stream that lasts);
    return, and fill in ``ends``, the end offset per partition they reached. ``kw`` go
    to the producer."""
    p = producer(bootstrap, **kw)
    ends = {} if ends is None else ends
    try:
        futs = []
        for i, (k, v) in enumerate(items):
            futs.append(p.send(topic, key=k, value=v))
            if pause and i % 100 == 99:
                time.sleep(pause)
        p.flush(timeout=timeout)
        for f in futs:
            md = f.get(timeout=timeout)
            ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
        return ends
    finally:
        p.close(timeout=10)


@dataclass
class Background:
    """:func:`produce` running in a thread: ``ends`` is filled in when it is done,
    ``errors`` holds what it raised."""

    thread: threading.Thread
    ends: dict[int, int]
    errors: list[BaseException]


def produce_in_background(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes | None]],
                          **kw) -> Background:
    ends: dict[int, int] = {}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            produce(bootstrap, topic, items, ends=ends, **kw)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return Background(t, ends, errors)


def keyed(env: Envelope) -> tuple[bytes, bytes]:
    from trustlog.core.events import decode_event

    return decode_event(env.payload).repo.encode(), env.to_bytes()


def start_worker(bootstrap: str, topic: str, group: str, logdir: Path, tmp: Path, *extra: str,
                 env: dict[str, str] | None = None, name: str = "w",
                 faults: tuple[str, ...] = ()) -> subprocess.Popen:
    """A worker process; ``faults`` (say ``("--fault-fsync-after", "30")``) starts it
    through tests/fault_worker.py with those faults injected."""
    n = len(list(tmp.glob(f"{name}-*.err")))
    out = open(tmp / f"{name}-{n}.out", "wb")
    err = open(tmp / f"{name}-{n}.err", "wb")
    cmd = [*(FAULT_WORKER if faults else WORKER), *faults,
           "--kafka", bootstrap, "--topic", topic, "--group", group, "--log", str(logdir), "--json",
           "--progress-interval", "1", *extra]
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    proc.out_path, proc.err_path = out.name, err.name  # type: ignore[attr-defined]
    out.close()
    err.close()
    return proc


def summary(proc: subprocess.Popen) -> dict:
    lines = Path(proc.out_path).read_text().strip().splitlines()  # type: ignore[attr-defined]
    return json.loads(lines[-1]) if lines else {}


def stderr_of(proc: subprocess.Popen) -> str:
    return Path(proc.err_path).read_text()  # type: ignore[attr-defined]


def wait_started(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Wait until the worker has its signal handlers (it says "started")."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and "started (pid" not in stderr_of(proc):
        assert time.monotonic() < deadline, "worker did not start"
        time.sleep(0.05)


def stop(proc: subprocess.Popen, timeout: float = 30) -> int:
    wait_started(proc)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"worker did not stop on SIGTERM within {timeout} s:\n{stderr_of(proc)[-3000:]}")


def read_logs(logdir: Path) -> tuple[Counter, Counter, Counter]:
    """(event ids, reject raw hashes, reject reasons) over every p*/ log, as multisets.
    Also checks that each log only holds records of its own partition, in offset order."""
    ids: Counter = Counter()
    rejects: Counter = Counter()
    reasons: Counter = Counter()
    for p, d in partition_dirs(logdir):
        with SegmentLog.open(d / "log") as sl:
            last = -1
            for _, body in sl.scan(0):
                rec = decode_record(body)
                ids[hashlib.sha256(rec.envelope).hexdigest()] += 1
                assert rec.source is not None and rec.source.partition == p
                assert rec.source.offset > last, f"p{p}: offsets out of order / repeated"
                last = rec.source.offset
        with RejectsLog.open(d / "rejects") as rl:
            for rec in rl:
                rejects[hashlib.sha256(rec.raw).hexdigest()] += 1
                reasons[rec.reason] += 1
                assert rec.source is not None and rec.source.partition == p
    return ids, rejects, reasons


def log_bytes(logdir: Path) -> int:
    return sum(f.stat().st_size for f in logdir.glob("p*/*/*.seg")) if logdir.is_dir() else 0


def expected_outcome(raws: list[bytes]) -> tuple[set[str], set[str], Counter]:
    """What the embedded pipeline makes of ``raws`` in this order: (accepted event ids,
    rejected raw hashes, reject reasons). Repositories keep their order under keying."""
    import tempfile

    with tempfile.TemporaryDirectory() as d, TrustLog(d) as tl:
        accepted: set[str] = set()
        for i in range(0, len(raws), 1000):
            tl.ingest_batch([(r, None) for r in raws[i:i + 1000]])
        for _, body in tl.log.scan(0):
            accepted.add(hashlib.sha256(decode_record(body).envelope).hexdigest())
        rejected = {hashlib.sha256(r.raw).hexdigest() for r in tl.rejects}
        reasons = Counter(r.reason for r in tl.rejects)
    return accepted, rejected, reasons


def synthetic(repos: int, tags: int, since: int = 2**62) -> list[Envelope]:
    reg = SyntheticRegistry(repos, tags, ref_time=1_900_000_000)
    return [*reg.phase1(), *reg.phase2(since)]


def garbage(n: int, seed: int = 0) -> list[bytes]:
    """Distinct invalid inputs of every kind: not msgpack/JSON, wrong schema, oversized."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            out.append(b"\xc1not msgpack %d %d" % (i, rnd.getrandbits(32)))
        elif kind == 1:
            out.append(b'{"broken json %d' % i)
        elif kind == 2:
            out.append(json.dumps({"payload": "AAAA", "signatures": [], "extra": i}).encode())
        elif kind == 3:
            out.append(msgspec.msgpack.encode({"payload": b"x", "signatures": [{"keyid": "k", "sig": b"s"}],
                                               "n": i}))
        else:
            out.append(b"\x81" + bytes([i % 256]) * (70 * 1024 + i))  # over the 64 KiB limit
    return out


def read_outcomes(bootstrap: str, outcomes_topic: str) -> tuple[dict[str, set[bytes]], dict[str, set[bytes]]]:
    """Every outcome line of the outcomes topic: (lines by the input they answer, the
    outcome without its input by event id). Checks each message's shape on the way:
    header ``inputs`` = the range of its lines' inputs, lines in offset order."""
    from kafka import KafkaConsumer

    from trustlog.ingest.outcomes import INPUTS_HEADER, MAX_MESSAGE_BYTES, OutcomeLine

    dec = msgspec.json.Decoder(OutcomeLine)
    c = KafkaConsumer(outcomes_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=5000, client_id="trustlog-test-outcomes")
    by_input: dict[str, set[bytes]] = {}
    by_id: dict[str, set[bytes]] = {}
    try:
        for r in c:
            assert r.key is None and len(r.value) <= MAX_MESSAGE_BYTES and r.value.endswith(b"\n")
            lines = r.value.splitlines()
            parsed = [dec.decode(line) for line in lines]
            offsets = [int(o.input.rsplit("/", 1)[1]) for o in parsed]
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
            t_p = {o.input.rsplit("/", 1)[0] for o in parsed}
            assert len(t_p) == 1
            assert dict(r.headers)[INPUTS_HEADER].decode() == f"{t_p.pop()}/{offsets[0]}-{offsets[-1]}"
            for line, o in zip(lines, parsed):
                by_input.setdefault(o.input, set()).add(line)
                if o.event_id:
                    by_id.setdefault(o.event_id, set()).add(msgspec.json.encode(o.outcome()))
    finally:
        c.close(autocommit=False)
    return by_input, by_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


topic = topic_fixture("topic", "tl-", PARTITIONS)


# -- 1. publish -> ingest -> verify, same verdicts as the embedded path --------------------------

def test_publish_ingest_verify_end_to_end(kafka_bootstrap, topic, tmp_path):
    group = f"g-{uuid.uuid4().hex[:8]}"
    logdir = tmp_path / "logs"
    ref_ns = 1_800_000_000 * 10**9
    w = start_worker(kafka_bootstrap, topic, group, logdir, tmp_path, "--idle-exit", "60")
    try:
        pub = subprocess.run([*CLI, "publish", "--kafka", kafka_bootstrap, "--topic", topic, "--demo",
                              "--scale", "0.05", "--ref-time", str(ref_ns), "--wait-group", group,
                              "--wait-timeout", "90", "--dump", str(tmp_path / "published.jsonl"), "--json"],
                             capture_output=True, text=True, timeout=150)
        assert pub.returncode == 0, pub.stderr
        info = json.loads(pub.stdout.strip().splitlines()[-1])
        ends = {int(p): c for p, c in info["partitions"].items()}
        assert len(ends) > 1
        wait_for_group(kafka_bootstrap, group, topic, ends, timeout=90)
    finally:
        assert stop(w) == 0, stderr_of(w)
    s = summary(w)
    assert s["messages"] == info["published"] and s["duplicates"] == 0

    # the embedded path: the same events, phase 1 before `since` and phase 2 after, in log time
    lines = (tmp_path / "published.jsonl").read_bytes().splitlines()
    since, n1 = info["since"], info["phase1"]
    now = [since - 10**9]
    with TrustLog(tmp_path / "embedded", clock=LogClock(lambda: now[0])) as emb:
        emb.ingest((ln, None) for ln in lines[:n1])
        now[0] = since
        emb.ingest((ln, None) for ln in lines[n1:])
        reqs = list(requests_for_state(emb.state))
        some = next(iter(emb.state.repos.values()))
        reqs += [Request(some.name, "never-signed"), Request("registry.example.com/nobody/unknown", "v1"),
                 Request(some.name, next(iter(some.tags)), "sha256:" + "00" * 32)]
        expected = {(r.digest or f"{r.repo}:{r.tag}"): v.code
                    for r, v in zip(reqs, BatchVerifier(emb.state, ref_time=ref_ns // 10**9).verify(reqs))}
        emb_rejects = Counter(r.reason for r in emb.rejects)
    assert len(expected) == len(reqs)
    codes = Counter(expected.values())
    assert codes["VALID"] and codes["KEY_COMPROMISED"] and codes["EXPIRED"], codes

    _, _, reasons = read_logs(logdir)
    assert reasons == emb_rejects == Counter(info["expected_rejects"])

    # verdicts downstream: requests topic -> verify-kafka -> results topic
    req_topic, res_topic = f"{topic}-req", f"{topic}-res"
    produce(kafka_bootstrap, req_topic, [(None, msgspec.json.encode(r)) for r in reqs] + [(None, b"not json")])
    try:
        vk = subprocess.run([*CLI, "verify-kafka", "--kafka", kafka_bootstrap, "--log", str(logdir),
                             "--kafka-requests", req_topic, "--kafka-results", res_topic,
                             "--group", f"v-{group}", "--ref-time", str(ref_ns), "--max-messages",
                             str(len(reqs) + 1), "--idle-exit", "30", "--json"],
                            capture_output=True, text=True, timeout=120)
        assert vk.returncode == 0, vk.stderr
        from kafka import KafkaConsumer

        c = KafkaConsumer(res_topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                          consumer_timeout_ms=3000, client_id="trustlog-test-results")
        got: dict[str, str] = {}
        malformed = 0
        for r in c:
            v = json.loads(r.value)
            if r.key is None:
                assert v["code"] == "MALFORMED_REQUEST"
                malformed += 1
            else:
                got[r.key.decode()] = v["code"]
        c.close()
    finally:
        delete_topics(kafka_bootstrap, req_topic, res_topic)
    assert malformed == 1
    assert got == expected


# -- 2. kill -9 at random points, >= 20 times: exactly the valid events, rejects once ------------

def test_kill9_during_production_exactly_once(kafka_bootstrap, topic, tmp_path):
    envs = synthetic(40, 2400)
    bad = garbage(40)
    rnd = random.Random(1234)
    items = [keyed(e) for e in envs]
    for b in bad:  # invalid inputs spread through the stream, some keyed, some not
        items.insert(rnd.randrange(len(items) + 1), (None if rnd.random() < 0.5 else b"junk-%d" % len(b), b))
    # expected: per repository the stream order is kept by keying, so the embedded fold of
    # the valid envelopes in order gives the accepted set; garbage is rejected regardless
    acc, rej, _ = expected_outcome([e.to_bytes() for e in envs])
    rej |= {hashlib.sha256(b[: 1024 * 1024]).hexdigest() for b in bad}
    assert len(acc) > 2000 and len(rej) >= 44

    group = f"g-{uuid.uuid4().hex[:8]}"
    logdir = tmp_path / "logs"
    t0 = time.monotonic()
    bg = produce_in_background(kafka_bootstrap, topic, items, pause=1.0)  # ~27 s: the kills hit a live stream
    prod, ends, errors = bg.thread, bg.ends, bg.errors
    kills = mid_stream = 0
    extra = ("--instance-id", "crash-w1", "--max-poll-records", "150")
    while kills < 20 or prod.is_alive():
        before = log_bytes(logdir)
        w = start_worker(kafka_bootstrap, topic, group, logdir, tmp_path, *extra)
        if kills % 4 == 3:  # some kills land during start-up, before anything is appended
            time.sleep(rnd.uniform(0.2, 1.0))
        else:  # the others once it appends (start-up time varies with load), somewhere in a batch
            deadline = time.monotonic() + 5
            while log_bytes(logdir) <= before and time.monotonic() < deadline and w.poll() is None:
                time.sleep(0.05)
            time.sleep(rnd.uniform(0.0, 0.8))
        assert w.poll() is None, f"worker exited early (rc {w.returncode}):\n{stderr_of(w)[-3000:]}"
        w.send_signal(signal.SIGKILL)
        w.wait()
        kills += 1
        mid_stream += log_bytes(logdir) > before  # it had appended something when it died
        assert time.monotonic() - t0 < 300, "the kill loop is too slow"
    prod.join()
    assert not errors, errors
    assert sum(ends.values()) == len(items)

    w = start_worker(kafka_bootstrap, topic, group, logdir, tmp_path, *extra)
    try:
        wait_for_group(kafka_bootstrap, group, topic, ends, timeout=90)
    finally:
        assert stop(w) == 0, stderr_of(w)
    ids, rejects, _ = read_logs(logdir)
    assert kills >= 20 and mid_stream >= 5, (kills, mid_stream)
    assert set(ids) == acc, (len(set(ids) - acc), len(acc - set(ids)))  # no loss, nothing foreign
    assert max(ids.values()) == 1  # no duplicate
    assert set(rejects) == rej and max(rejects.values()) == 1  # every invalid input, once
    # every worker start checked every derived file; after the kills they all match the
    # segments, and the rejects log matches what the checkpoints committed to
    from trustlog.ingest.logcheck import verify_log
    for _, d in partition_dirs(logdir):
        report = verify_log(d)
        assert report.ok and report.derived_ok, (d, report.to_dict())
        with TrustLog(d, read_only=True) as tl:
            assert tl.notices == [], tl.notices
    # outcomes are at least once through every kill, and a repeat says the same thing
    by_input, by_id = read_outcomes(kafka_bootstrap, f"{topic}.outcomes")
    assert set(by_input) == {f"{topic}/{p}/{o}" for p, end in ends.items() for o in range(end)}
    assert all(len(v) == 1 for v in by_input.values()), [v for v in by_input.values() if len(v) > 1][:3]
    assert all(len(v) == 1 for v in by_id.values())
    outcomes = [json.loads(next(iter(v))) for v in by_input.values()]
    assert {o["event_id"] for o in outcomes if o["status"] == "accepted"} == acc
    assert sum(o["status"] == "rejected" for o in outcomes) == len(rej)
    print(f"{kills} kills ({mid_stream} after appending) in {time.monotonic() - t0:.1f} s")


# -- 3. broker restart in the middle of a stream ---------------------------------------------

@pytest.mark.slow
def test_broker_restart_mid_stream(kafka_bootstrap, topic, tmp_path):
    require_restartable_broker()
    envs = synthetic(24, 1600)
    items = [keyed(e) for e in envs]
    group = f"g-{uuid.uuid4().hex[:8]}"
    logdir = tmp_path / "logs"
    w = start_worker(kafka_bootstrap, topic, group, logdir, tmp_path, "--max-poll-records", "100")
    try:
        bg = produce_in_background(kafka_bootstrap, topic, items, pause=0.4, timeout=120,
                                   delivery_timeout_ms=120_000, request_timeout_ms=10_000)
        prod, ends, errors = bg.thread, bg.ends, bg.errors
        wait_for_group(kafka_bootstrap, group, topic, {p: 1 for p in range(PARTITIONS)}, timeout=60)
        assert prod.is_alive(), errors  # the stream is still flowing
        assert restart_broker() == kafka_bootstrap
        assert w.poll() is None, stderr_of(w)
        prod.join(150)
        assert not errors, errors
        assert sum(ends.values()) == len(items)
        wait_for_group(kafka_bootstrap, group, topic, ends, timeout=120)
    finally:
        assert stop(w) == 0, stderr_of(w)
    acc, rej, _ = expected_outcome([e.to_bytes() for e in envs])
    ids, rejects, _ = read_logs(logdir)
    assert set(ids) == acc and max(ids.values()) == 1
    assert set(rejects) == rej and max(rejects.values()) == 1


# -- 4. two workers, one group: partitions split; one stops, the other takes over -------------

def _lock_pids(logdir: Path) -> dict[int, int]:
    out = {}
    for p, d in partition_dirs(logdir):
        try:
            out[p] = int((d / "log" / "LOCK").read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            pass
    return out


def test_two_workers_share_partitions_and_take_over(kafka_bootstrap, topic, tmp_path):
    envs = synthetic(40, 1600)
    half = len(envs) // 2
    group = f"g-{uuid.uuid4().hex[:8]}"
    logdir = tmp_path / "logs"
    a = start_worker(kafka_bootstrap, topic, group, logdir, tmp_path, name="a")
    b = start_worker(kafka_bootstrap, topic, group, logdir, tmp_path, name="b")
    try:
        deadline = time.monotonic() + 60
        while set(_lock_pids(logdir).values()) != {a.pid, b.pid} or len(_lock_pids(logdir)) < PARTITIONS:
            assert time.monotonic() < deadline, f"partitions not split: {_lock_pids(logdir)}"
            assert a.poll() is None and b.poll() is None
            time.sleep(0.2)
        ends1 = produce(kafka_bootstrap, topic, [keyed(e) for e in envs[:half]])
        wait_for_group(kafka_bootstrap, group, topic, ends1, timeout=60)
        owners = _lock_pids(logdir)
        assert stop(a) == 0, stderr_of(a)
        sa = summary(a)
        # a ingested only from its own partitions, and some
        a_parts = {p for p, pid in owners.items() if pid == a.pid}
        assert 0 < len(a_parts) < PARTITIONS
        assert {int(p) for p in sa["messages_by_partition"]} <= a_parts and sa["messages"] > 0
        ends2 = produce(kafka_bootstrap, topic, [keyed(e) for e in envs[half:]])
        ends = {p: max(ends1.get(p, 0), ends2.get(p, 0)) for p in range(PARTITIONS)}
        wait_for_group(kafka_bootstrap, group, topic, ends, timeout=60)
        assert set(_lock_pids(logdir).values()) == {b.pid}  # b took over a's partitions
    finally:
        for w in (a, b):
            assert stop(w) == 0, stderr_of(w)
    sb = summary(b)
    assert sorted(sb["partitions"]) == list(range(PARTITIONS))
    assert sa["messages"] + sb["messages"] == len(envs)  # every message ingested once
    acc, rej, _ = expected_outcome([e.to_bytes() for e in envs])
    ids, rejects, _ = read_logs(logdir)
    assert set(ids) == acc and max(ids.values()) == 1
    assert set(rejects) == rej


# -- 5. an fsync failure stops the worker without committing ----------------------------------

def test_fsync_failure_stops_without_commit(kafka_bootstrap, topic, tmp_path):
    from kafka import KafkaConsumer, TopicPartition

    envs = synthetic(24, 1200)
    group = f"g-{uuid.uuid4().hex[:8]}"
    logdir = tmp_path / "logs"
    ends = produce(kafka_bootstrap, topic, [keyed(e) for e in envs])
    w = start_worker(kafka_bootstrap, topic, group, logdir, tmp_path, "--max-poll-records", "50",
                     "--idle-exit", "30", faults=("--fault-fsync-after", "30"))
    rc = w.wait(60)
    err = stderr_of(w)
    assert rc == 3, err
    assert "injected fsync failure" in err
    s = summary(w)
    assert s["exit_code"] == 3 and 0 < s["messages"] < len(envs)

    c = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False,
                      client_id="trustlog-test-check")
    committed = {p: c.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)}
    c.close(autocommit=False)
    durable: dict[int, int] = {}
    for p, d in partition_dirs(logdir):
        with SegmentLog.open(d / "log") as sl:
            offs = [decode_record(body).source.offset for _, body in sl.scan(0)]
        durable[p] = (max(offs) + 1) if offs else 0
    # nothing was committed beyond what the logs hold durably; the failed batch was not
    assert all(committed[p] <= durable.get(p, 0) for p in range(PARTITIONS)), (committed, durable)
    assert sum(committed.values()) < sum(ends.values())

    w = start_worker(kafka_bootstrap, topic, group, logdir, tmp_path, "--idle-exit", "4")
    assert w.wait(90) == 0, stderr_of(w)
    acc, rej, _ = expected_outcome([e.to_bytes() for e in envs])
    ids, rejects, _ = read_logs(logdir)
    assert set(ids) == acc and max(ids.values()) == 1
    assert set(rejects) == rej and max(rejects.values()) == 1


# -- 6. malformed messages are rejected with reasons; the worker keeps going ---------------------

def test_malformed_messages_rejected_worker_continues(kafka_bootstrap, topic, tmp_path):
    from kafka import KafkaConsumer

    envs = synthetic(8, 200)
    k = SigningKey.from_seed(b"stranger")
    forged = envs[5]
    bad_sig = Envelope(forged.payload, [Signature(s.keyid, bytes(64)) for s in forged.signatures])
    odd = sign_event(ImageSigned("registry.example.com/team0/app0", 10**6, 1, "targets", "x",
                                 "sha256:" + "11" * 32, 1, 2), [k])
    items = [keyed(e) for e in envs]
    malformed = [
        (b"k1", b"\x00\x01 not msgpack"), (b"k2", b"{nope"), (b"k3", b'{"payload": 1}'),
        (b"k4", msgspec.msgpack.encode([1, 2, 3])), (b"k5", b"\x81" + b"x" * (80 * 1024)),
        (b"k6", None),  # a tombstone: empty input
        keyed(odd),  # a stranger's signature
        (keyed(forged)[0], bad_sig.to_bytes()),  # a role key's signature zeroed
        (b"k7", envelope_to_json(envs[0])[:-3]),  # JSON cut short
    ]
    rnd = random.Random(7)
    for m in malformed:
        items.insert(rnd.randrange(1, len(items)), m)
    dlq = f"{topic}-dlq"
    port = free_port()
    group = f"g-{uuid.uuid4().hex[:8]}"
    logdir = tmp_path / "logs"
    ends = produce(kafka_bootstrap, topic, items)
    w = start_worker(kafka_bootstrap, topic, group, logdir, tmp_path, "--dlq", dlq, "--metrics-port", str(port),
                     "--max-poll-records", "40", "--idle-exit", "60")
    try:
        wait_for_group(kafka_bootstrap, group, topic, ends, timeout=60)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert w.poll() is None  # still running after every malformed message
    finally:
        assert stop(w) == 0, stderr_of(w)
    assert 'trustlog_ingest_rejects_total{reason="MALFORMED"}' in metrics
    assert "trustlog_ingest_fsync_seconds_bucket" in metrics and "trustlog_ingest_consumer_lag" in metrics
    s = summary(w)
    assert s["messages"] == len(items) and s["exit_code"] == 0
    # per repository the order is kept (keying), so the embedded fold of the same
    # sequence decides exactly the same
    acc, rej, exp_reasons = expected_outcome([v or b"" for _, v in items])
    ids, rejects, reasons = read_logs(logdir)
    assert set(ids) == acc and max(ids.values()) == 1
    assert set(rejects) == rej and max(rejects.values()) == 1
    assert reasons == exp_reasons
    assert reasons["TOO_LARGE"] == 1 and reasons["MALFORMED"] >= 6 and reasons["BAD_SIGNATURE"] >= 1
    c = KafkaConsumer(dlq, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                      consumer_timeout_ms=3000, client_id="trustlog-test-dlq")
    dead = [(dict(r.headers)["reason"].decode(), r.value) for r in c]
    c.close()
    delete_topics(kafka_bootstrap, dlq)
    assert Counter(r for r, _ in dead) == reasons
