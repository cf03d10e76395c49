"""verify-kafka follows the partition logs (real broker): a tag appended after it started,
by a writer that holds the log's lock meanwhile, is VALID for the next request — no restart."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import msgspec
import pytest

from logtools import REPO_A, TARGETS_A, history
from sim import DIGEST, FAR
from kafka_broker import delete_topics, new_topic
from test_kafka_ingest import produce
from trustlog.core.events import ImageSigned, sign_event
from trustlog.ingest.pipeline import TrustLog

pytestmark = pytest.mark.kafka
CLI = [sys.executable, "-m", "trustlog.cli.main"]


def _results(bootstrap: str, topic: str, n: int, deadline: float) -> list[dict]:
    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                      consumer_timeout_ms=500, client_id="trustlog-test-follow")
    out: list[dict] = []
    try:
        while len(out) < n and time.monotonic() < deadline:
            for r in c:
                out.append(json.loads(r.value))
    finally:
        c.close()
    return out


def test_a_tag_published_after_start_becomes_valid_without_restart(kafka_bootstrap, tmp_path):
    log = tmp_path / "logs"
    with TrustLog(log / "p0") as tl:
        assert tl.ingest_batch([(e.to_bytes(), None) for e in history(4)]).rejected == 0
    req_topic = new_topic(kafka_bootstrap, "follow-req", 1)
    res_topic = new_topic(kafka_bootstrap, "follow-res", 1)
    vk = subprocess.Popen([*CLI, "verify-kafka", "--kafka", kafka_bootstrap, "--log", str(log),
                           "--kafka-requests", req_topic, "--kafka-results", res_topic,
                           "--group", f"follow-{uuid.uuid4().hex[:8]}", "--max-messages", "2", "--idle-exit", "90",
                           "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        req = msgspec.json.encode({"repo": REPO_A, "tag": "late"})
        produce(kafka_bootstrap, req_topic, [(None, req)])
        first = _results(kafka_bootstrap, res_topic, 1, time.monotonic() + 90)
        assert [v["code"] for v in first] == ["UNKNOWN_TAG"], first
        with TrustLog(log / "p0") as tl:  # the writer appends while verify-kafka runs (no lock conflict)
            v = tl.state.repos[REPO_A].version + 1
            env = sign_event(ImageSigned(REPO_A, v, 0, "targets", "late", DIGEST, 1, FAR), [TARGETS_A])
            assert tl.ingest_batch([(env.to_bytes(), None)]).accepted == 1
        produce(kafka_bootstrap, req_topic, [(None, req)])
        both = _results(kafka_bootstrap, res_topic, 2, time.monotonic() + 90)
        assert [v["code"] for v in both] == ["UNKNOWN_TAG", "VALID"], both
        assert both[1]["state_version"] == both[0]["state_version"] + 1
        out, err = vk.communicate(timeout=120)
        assert vk.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["requests"] == 2
    finally:
        if vk.poll() is None:
            vk.kill()
        delete_topics(kafka_bootstrap, req_topic, res_topic)
