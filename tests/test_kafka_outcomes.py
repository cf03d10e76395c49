"""Outcomes on the real broker (scripts/kafka/kafka.sh): the ingest worker tells
publishers what became of each event through ``<topic>.outcomes``, and
``trustlog publish --wait`` reports them (exit 0 all in the log, 1 any rejected,
2 on timeout)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from kafka_broker import topic_fixture
from test_kafka_ingest import CLI, expected_outcome, start_worker, stderr_of, stop, synthetic
from trustlog.core.events import Envelope, Signature, decode_event, envelope_to_json
from trustlog.ingest.partitioning import partition_dirs, partition_for
from trustlog.ingest.records import decode_record
from trustlog.ingest.segment_log import SegmentLog

pytestmark = pytest.mark.kafka


topic3 = topic_fixture("topic3", "tl-out-", 3)


def _publish_wait(bootstrap: str, topic: str, path: Path, timeout: float = 90, *extra: str) -> tuple[int, dict]:
    r = subprocess.run([*CLI, "publish", str(path), "--kafka", bootstrap, "--topic", topic, "--wait",
                        "--wait-timeout", str(timeout), "--json", *extra],
                       capture_output=True, text=True, timeout=timeout + 60)
    assert r.stdout.strip(), r.stderr
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


def _write(path: Path, envs: list[Envelope]) -> Path:
    path.write_bytes(b"".join(envelope_to_json(e) + b"\n" for e in envs))
    return path


def _logged(logdir: Path) -> dict[str, tuple[int, int, int]]:
    """event id -> (partition, Kafka offset, log offset) over every partition log."""
    out = {}
    for p, d in partition_dirs(logdir):
        with SegmentLog.open(d / "log") as sl:
            for off, body in sl.scan(0):
                rec = decode_record(body)
                out[hashlib.sha256(rec.envelope).hexdigest()] = (p, rec.source.offset, off)
    return out


def test_publish_wait_reports_each_outcome(kafka_bootstrap, topic3, tmp_path):
    envs = synthetic(8, 64)
    # one forged signature: an envelope that decodes, so publish sends it, and the worker rejects it
    # (of the last accepted event, so that leaving it out changes no other event's fate)
    accepted = expected_outcome([e.to_bytes() for e in envs])[0]
    victim = next(e for e in reversed(envs) if e.event_id in accepted)
    forged = Envelope(victim.payload, [Signature(s.keyid, bytes(64)) for s in victim.signatures])
    good = _write(tmp_path / "good.jsonl", [e for e in envs if e is not victim])
    bad = _write(tmp_path / "bad.jsonl", [forged])
    group = f"g-{uuid.uuid4().hex[:8]}"
    logdir = tmp_path / "logs"
    w = start_worker(kafka_bootstrap, topic3, group, logdir, tmp_path, "--max-poll-records", "25")
    try:
        rc1, out1 = _publish_wait(kafka_bootstrap, topic3, good)
        rc2, out2 = _publish_wait(kafka_bootstrap, topic3, bad)
        rc3, out3 = _publish_wait(kafka_bootstrap, topic3, good)  # published again: already in the log
    finally:
        assert stop(w) == 0, stderr_of(w)
    logged = _logged(logdir)
    n_good = len(envs) - 1
    synthetic_rejects = sum(1 for o in out1["outcomes"] if o["status"] == "rejected")

    # 1. the first run: every message answered; the synthetic registry's own incidents rejected
    assert out1["timed_out"] == 0 and len(out1["outcomes"]) == n_good
    assert rc1 == (1 if synthetic_rejects else 0)
    for o in out1["outcomes"]:
        if o["status"] == "accepted":
            # accepted at partition P offset N: exactly where the log holds it
            assert logged[o["event_id"]] == (o["partition"], o["offset"], o["log_offset"])
            assert o["input"] == f"{topic3}/{o['partition']}/{o['offset']}"
        else:
            assert o["status"] == "rejected" and o["reason"] and o["event_id"] not in logged
    by_id = {e.event_id: e for e in envs}
    for o in out1["outcomes"]:
        assert o["partition"] == partition_for(decode_event(by_id[o["event_id"]].payload).repo, 3)

    # 2. the forged one: exit 1, reason and detail reported
    assert rc2 == 1, out2
    [o] = out2["outcomes"]
    assert o["status"] == "rejected" and o["reason"] == "BAD_SIGNATURE" and o["detail"]
    assert o["event_id"] == forged.event_id and forged.event_id not in logged
    assert out2["outcome_counts"] == {"rejected": 1}

    # 3. published again: each copy is answered with the stored copy's outcome
    assert rc3 == rc1 and out3["timed_out"] == 0
    first = {o["event_id"]: {k: v for k, v in o.items() if k != "input"} for o in out1["outcomes"]}
    again = {o["event_id"]: {k: v for k, v in o.items() if k != "input"} for o in out3["outcomes"]}
    assert again == first
    assert not {o["input"] for o in out3["outcomes"]} & {o["input"] for o in out1["outcomes"]}


def test_publish_wait_times_out_without_a_worker(kafka_bootstrap, topic3, tmp_path):
    envs = synthetic(8, 16)[:4]
    rc, out = _publish_wait(kafka_bootstrap, topic3, _write(tmp_path / "e.jsonl", envs), 3)
    assert rc == 2
    assert out["timed_out"] == len(envs) and out["outcome_counts"] == {"missing": len(envs)}
    # the table form says the same
    r = subprocess.run([*CLI, "publish", str(tmp_path / "e.jsonl"), "--kafka", kafka_bootstrap, "--topic", topic3,
                        "--wait", "--wait-timeout", "2"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 2 and "no outcome (timeout)" in r.stdout and "Traceback" not in r.stderr
