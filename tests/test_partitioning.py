"""Partition ownership and per-input fates, without a broker: the repository -> partition
mapping is Kafka's own, a partition log refuses foreign repositories, a redelivered
input gets the fate of its stored copy (so outcome messages repeat identically)."""
from __future__ import annotations

import ast
import random
import string
from pathlib import Path

import pytest

from sim import DIGEST, FAR, key
from trustlog.core.errors import InputError, LogError
from trustlog.core.events import ImageSigned, RepoCreated, sign_event
from trustlog.ingest.outcomes import outcome_of
from trustlog.ingest.partitioning import (
    Layout, LayoutError, admit_for, check_ownership, load_log_layout, partition_for, record_log_layout,
)
from trustlog.ingest.kafka_servers import bootstrap_servers
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.records import KafkaPosition

R, T = key("part-root"), key("part-targets")
LAYOUT = Layout("events", 6)


def _repo_in(partition: int, lay: Layout = LAYOUT, prefix: str = "registry.example.com/team/app") -> str:
    return next(f"{prefix}{i}" for i in range(10_000) if lay.partition_for(f"{prefix}{i}") == partition)


def _created(repo: str) -> bytes:
    return sign_event(RepoCreated(repo, 1, 0, [R.public_key], 1, [T.public_key], 1, FAR), [R]).to_bytes()


def _signed(repo: str, version: int, tag: str) -> bytes:
    return sign_event(ImageSigned(repo, version, 0, "targets", tag, DIGEST, 1, FAR), [T]).to_bytes()


def test_partition_for_is_kafkas_default_partitioner() -> None:
    """A Java/Go producer keyed by repository agrees with trustlog's mapping."""
    from kafka.cluster import ClusterMetadata
    from kafka.partitioner.default import DefaultPartitioner

    rnd = random.Random(5)
    names = ["", "a", "registry.example.com/x", "r\u00e9gistry.example/\u00fc"] + [
        "".join(rnd.choice(string.printable) for _ in range(rnd.randrange(1, 80))) for _ in range(300)]
    part = DefaultPartitioner()
    for n in (1, 2, 4, 6, 8, 13):
        class _Cluster(ClusterMetadata):
            def topics(self, exclude_internal_topics=True):  # noqa: ARG002
                return {"t"}

            def partitions_for_topic(self, topic):  # noqa: ARG002
                return set(range(n))

            def available_partitions_for_topic(self, topic):  # noqa: ARG002
                return set(range(n))

        cluster = _Cluster()
        for name in names:
            key_bytes = name.encode()
            assert partition_for(name, n) == part.partition("t", key_bytes, key_bytes, None, None, cluster)
    with pytest.raises(ValueError):
        partition_for("x", 0)


def test_foreign_repository_is_rejected_wrong_partition(tmp_path: Path, crypto) -> None:
    mine, theirs = _repo_in(2), _repo_in(5)
    src = [KafkaPosition("events", 2, i) for i in range(5)]
    raws = [_created(mine), _created(theirs), _signed(theirs, 2, "v1"), _signed(mine, 2, "v1"), b"\x00junk"]
    with TrustLog(tmp_path / "p2", admit=admit_for(2, LAYOUT), crypto=crypto) as tl:
        res = tl.ingest_batch(list(zip(raws, src)))
        assert (res.accepted, res.rejected) == (2, 3)
        assert set(tl.state.repos) == {mine}
        rejects = list(tl.rejects)
    assert [r.reason for r in rejects] == ["WRONG_PARTITION", "WRONG_PARTITION", "MALFORMED"]
    assert "belongs to partition 5 of events" in rejects[0].detail and "not partition 2" in rejects[0].detail
    assert [f.status for f in res.fates] == ["accepted", "rejected", "rejected", "accepted", "rejected"]
    assert res.fates[1].reason == "WRONG_PARTITION" and res.fates[1].event_id
    # the log only holds its own repositories, so the merged view opens
    check_ownership(2, [mine], LAYOUT, "p2")
    with pytest.raises(LogError, match="belongs to partition 5"):
        check_ownership(2, [mine, theirs], LAYOUT, "p2")
    with pytest.raises(LogError, match="outside the layout"):
        check_ownership(7, [mine], LAYOUT, "p7")


def test_redelivered_inputs_repeat_the_stored_fate(tmp_path: Path, crypto) -> None:
    """Outcomes are at least once: a redelivery (same batch, later batch, after reopen)
    is answered with the outcome of the stored copy, identical to the first one."""
    repo = _repo_in(1)
    clash = sign_event(ImageSigned(repo, 2, 1, "targets", "v1", DIGEST, 1, FAR), [T]).to_bytes()  # v1 at 2 again
    raws = [_created(repo), _signed(repo, 2, "v1"), clash, b"\x00junk"]
    first = [(r, KafkaPosition("events", 1, i)) for i, r in enumerate(raws)]
    with TrustLog(tmp_path / "p1", admit=admit_for(1, LAYOUT), crypto=crypto) as tl:
        res1 = tl.ingest_batch(first + [(raws[1], KafkaPosition("events", 1, 10))])
        want = [outcome_of(f) for f in res1.fates[:4]]
        assert [o.status for o in want] == ["accepted", "accepted", "rejected", "rejected"]
        assert want[1].log_offset == 1 and want[2].reason == "VERSION_ROLLBACK"
        assert outcome_of(res1.fates[4]) == want[1]  # redelivered within the batch
        assert res1.fates[4].source == KafkaPosition("events", 1, 10)  # answers its own input
        res2 = tl.ingest_batch([(r, KafkaPosition("events", 1, 20 + i)) for i, r in enumerate(raws)])
        assert [outcome_of(f) for f in res2.fates] == want
    with TrustLog(tmp_path / "p1", admit=admit_for(1, LAYOUT), crypto=crypto) as tl:  # after reopen
        res3 = tl.ingest_batch([(r, KafkaPosition("events", 1, 30 + i)) for i, r in enumerate(raws)])
        assert [outcome_of(f) for f in res3.fates] == want
        assert res3.duplicates == 4 and res3.accepted == res3.rejected == 0


def test_log_dir_layout_is_recorded_once(tmp_path: Path) -> None:
    assert load_log_layout(tmp_path) is None
    record_log_layout(tmp_path, LAYOUT)
    record_log_layout(tmp_path, Layout("events", 6, recorded_at=5))  # same layout: fine
    assert load_log_layout(tmp_path).partitions == 6
    with pytest.raises(LayoutError, match="another topic or layout"):
        record_log_layout(tmp_path, Layout("events", 8))
    (tmp_path / "layout.json").write_text('{"topic": "events", "partitions": 0}')
    with pytest.raises(LayoutError, match="unusable layout"):
        load_log_layout(tmp_path)


class _Producer:
    """Collects sends (the outcome writer's only use of a producer)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list, int]] = []

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def send(self, topic, key=None, value=None, headers=None, partition=None):
        self.sent.append((topic, key, value, headers, partition))


def _lines(producer: _Producer) -> list[bytes]:
    return [line for _, _, value, _, _ in producer.sent for line in value.splitlines()]


def test_outcome_catch_up_repeats_what_was_sent(tmp_path: Path) -> None:
    """A worker taking over re-sends, from the logs, exactly the lines the previous
    owner sent (or would have) for the inputs at or after the committed offset; when
    the range is the batch that was sent, exactly the same message."""
    from trustlog.ingest.outcomes import INPUTS_HEADER, OutcomeWriter

    repo = _repo_in(4)
    # v1 is at 3: a rollback
    raws = [_created(repo)] + [_signed(repo, 2 + i, f"v{i}") for i in range(6)] + [b"\x00junk", _signed(repo, 2, "v1")]
    with TrustLog(tmp_path / "p4", admit=admit_for(4, LAYOUT)) as tl:
        res = tl.ingest_batch([(r, KafkaPosition("events", 4, 100 + i)) for i, r in enumerate(raws[:4])])
        res2 = tl.ingest_batch([(r, KafkaPosition("events", 4, 104 + i)) for i, r in enumerate(raws[4:])])
        live = OutcomeWriter(_Producer(), "events.outcomes")
        assert live.send(res.fates) == 4 and live.send(res2.fates) == 5
        assert [(k, h) for _, k, _, h, _ in live.producer.sent] == [
            (None, [(INPUTS_HEADER, b"events/4/100-103")]), (None, [(INPUTS_HEADER, b"events/4/104-108")])]
        again = OutcomeWriter(_Producer(), "events.outcomes")
        assert again.catch_up(tl, "events", 4, committed=104) == 5
        assert again.producer.sent == live.producer.sent[1:]  # the last batch: the very message
        assert all(p == 4 % 3 for *_, p in again.producer.sent)
        more = OutcomeWriter(_Producer(), "events.outcomes")
        assert more.catch_up(tl, "events", 4, committed=102) == 7  # two batches' worth: the same lines
        assert _lines(more.producer) == _lines(live.producer)[2:]
        assert again.catch_up(tl, "events", 3, committed=0) == 0  # another partition's inputs: none here
        few = OutcomeWriter(_Producer(), "events.outcomes")
        assert few.catch_up(tl, "events", 4, committed=0, limit=2) == 4  # 2 records + 2 rejects, newest first


@pytest.mark.parametrize("given,servers", [
    ("localhost:9092", ["localhost:9092"]),
    ("a:1,b:2", ["a:1", "b:2"]),
    (" a:1, b:2 ,,", ["a:1", "b:2"]),
    (" a:1 ", ["a:1"]),
    ("", None),
    (" , ,", None),
])
def test_bootstrap_servers(given: str, servers: list[str] | None) -> None:
    if servers is None:
        with pytest.raises(InputError, match="names no server"):
            bootstrap_servers(given)
    else:
        assert bootstrap_servers(given) == servers


def test_every_kafka_client_parses_the_bootstrap_with_the_one_helper() -> None:
    """Each ``bootstrap_servers=`` handed to a Kafka client is ``bootstrap_servers(...)``
    (or a name bound to it just before): no module splits the string its own way."""
    root = Path(__file__).resolve().parents[1]
    bad = []
    for path in sorted(root.glob("[a-z]*/**/*.py")):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg != "bootstrap_servers":
                    continue
                v = kw.value
                ok = (isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "bootstrap_servers") \
                    or (isinstance(v, ast.Name) and v.id == "servers")
                if not ok:
                    bad.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not bad, bad


def test_outcome_messages_are_cut_at_the_size_limit(tmp_path: Path) -> None:
    """A batch's lines are cut into consecutive messages of at most ``max_bytes``;
    every line is a whole outcome, and the reader gets each input's outcome back."""
    from trustlog.ingest.outcomes import OutcomeWriter, outcome_line, outcome_of, read_outcome_message

    repo = _repo_in(2)
    raws = [_created(repo)] + [_signed(repo, 2 + i, f"v{i}") for i in range(30)] + [b"\x00junk%d" % i for i in range(5)]
    with TrustLog(tmp_path / "p2", admit=admit_for(2, LAYOUT)) as tl:
        res = tl.ingest_batch([(r, KafkaPosition("events", 2, 7 + i)) for i, r in enumerate(raws)])
    w = OutcomeWriter(_Producer(), "events.outcomes", max_bytes=1000)
    assert w.send(res.fates) == len(raws)
    assert w.messages == len(w.producer.sent) > 5
    assert all(len(v) <= 1000 for _, _, v, _, _ in w.producer.sent)
    assert _lines(w.producer) == [outcome_line(f) for f in res.fates]
    got = [pair for _, _, v, h, _ in w.producer.sent for pair in read_outcome_message(h, v)]
    assert got == [(f"events/2/{7 + i}", outcome_of(f)) for i, f in enumerate(res.fates)]
    assert [o.status for _, o in got].count("rejected") == 5


@pytest.mark.parametrize("headers, value, want", [
    # format 1 (one message per input): still read
    ([("input", b"t/1/5")], b'{"status":"accepted","event_id":"ab","topic":"t","partition":1,"offset":5,'
                            b'"log_offset":3}', [("t/1/5", ("accepted", "ab", 3))]),
    # format 2: a line that is not an outcome is skipped, the others read
    ([("inputs", b"t/1/5-6")], b'{"status":"rejected","event_id":"","topic":"t","partition":1,"offset":5,'
                               b'"reason":"MALFORMED","input":"t/1/5"}\nnot json\n{"x":1}\n',
     [("t/1/5", ("rejected", "", None))]),
    ([("input", b"t/1/5")], b"not json", []),
    ([], b'{"status":"accepted","event_id":"ab","topic":"t","partition":1,"offset":5}', []),  # neither header
    ([("inputs", b"t/1/5-5")], None, []),
])
def test_outcome_messages_read_both_formats(headers, value, want) -> None:
    from trustlog.ingest.outcomes import read_outcome_message

    got = [(label, (o.status, o.event_id, o.log_offset)) for label, o in read_outcome_message(headers, value)]
    assert got == want
