"""services/kafka_verify.py before it touches a broker: the state it answers from, the
ownership check of each partition log, and the pieces of its output (the full loop runs
against the real broker in test_verify_kafka_follow.py and test_kafka_partitions.py)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from logtools import REPO_A, REPO_B, history
from trustlog.core.errors import LogError
from trustlog.ingest.partitioning import Layout, record_log_layout
from trustlog.ingest.pipeline import TrustLog
from trustlog.services.kafka_verify import KafkaVerifyService, VerifySummary, result_key


def _partition_log(base: Path, partition: int) -> None:
    with TrustLog(base / f"p{partition}") as tl:
        assert tl.ingest_batch([(e.to_bytes(), None) for e in history(3)]).rejected == 0


def test_the_service_answers_from_the_partition_logs(tmp_path: Path) -> None:
    _partition_log(tmp_path, 0)
    record_log_layout(tmp_path, Layout("t", 1))
    with KafkaVerifyService("127.0.0.1:1", "req", "res", str(tmp_path), ref_time=1_700_000_000) as svc:
        assert set(svc.state.repos) == {REPO_A, REPO_B}
        assert svc.reference_time == 1_700_000_000 and not svc.follow_clock
        assert svc.verifier.ref_time == 1_700_000_000


def test_a_log_outside_its_layout_is_refused_before_any_request(tmp_path: Path) -> None:
    _partition_log(tmp_path, 1)  # a layout of 1 partition has no p1
    record_log_layout(tmp_path, Layout("t", 1))
    with pytest.raises(LogError, match="outside the layout"):
        KafkaVerifyService("127.0.0.1:1", "req", "res", str(tmp_path))


def test_keys_summary_and_servers() -> None:
    assert result_key("r", "v1", "sha256:ab") == b"sha256:ab"
    assert result_key("r", "v1", None) == b"r:v1"
    s = VerifySummary(3, Counter({"VALID": 2, "EXPIRED": 1}), 7, 1_700_000_000, 1.23456)
    assert s.to_dict() == {"requests": 3, "verdicts": {"VALID": 2, "EXPIRED": 1}, "state_version": 7,
                           "reference_time": 1_700_000_000, "seconds": 1.235}
