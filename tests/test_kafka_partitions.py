"""Partition ownership on the real broker (scripts/kafka/kafka.sh): a repository lives in
one partition, chosen by the topic's recorded layout; a topic that grows mid-stream
loses nothing; an event sent to a partition its repository does not map to is
rejected as WRONG_PARTITION and the logs stay openable (verify-kafka starts)."""
from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections import Counter

import msgspec
import pytest

from kafka_broker import delete_topics, topic_fixture
from test_kafka_ingest import (
    CLI, expected_outcome, produce, read_logs, start_worker, stderr_of, stop, summary, synthetic,
)
from trustlog.cli.kafka_cmds import Publisher, wait_for_group
from trustlog.core.evaluate import Request
from trustlog.core.events import RepoCreated, decode_event, sign_event
from trustlog.core.keys import SigningKey
from trustlog.ingest.partitioning import load_log_layout, open_partition_logs, read_layout
from trustlog.ingest.rejects import RejectsLog

pytestmark = pytest.mark.kafka


topic4 = topic_fixture("topic4", "tl-part-", 4)


def _grow(bootstrap: str, topic: str, total: int) -> None:
    from kafka.admin import KafkaAdminClient, NewPartitions

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="trustlog-test-admin")
    try:
        admin.create_partitions({topic: NewPartitions(total_count=total)})
    finally:
        admin.close()


def _wait_for(proc, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in stderr_of(proc):
        assert proc.poll() is None, stderr_of(proc)[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{stderr_of(proc)[-3000:]}"
        time.sleep(0.2)


def test_topic_grows_mid_stream_nothing_lost(kafka_bootstrap, topic4, tmp_path):
    """4 -> 7 partitions while events flow: the running worker notices within seconds,
    publishers keep every repository on its partition (old and new publisher
    processes alike), restarted workers take the new partitions, and every valid event
    is in exactly one log exactly once; nothing is rejected for a reason the embedded
    pipeline would not give (no UNKNOWN_REPOSITORY, no WRONG_PARTITION)."""
    envs = synthetic(30, 1500)
    cut1, cut2 = len(envs) * 2 // 5, len(envs) * 7 // 10
    group = f"g-{uuid.uuid4().hex[:8]}"
    logdir = tmp_path / "logs"
    ends: Counter = Counter()
    errors: list[BaseException] = []

    def publish(pub: Publisher, part: list) -> None:
        try:
            for i, env in enumerate(part):
                pub.send_envelope(env)
                if i % 100 == 99:
                    time.sleep(0.3)
            pub.flush()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def ends_of(pub: Publisher) -> None:
        for p, e in pub.end_offsets.items():
            ends[p] = max(ends[p], e)

    a = start_worker(kafka_bootstrap, topic4, group, logdir, tmp_path, "--max-poll-records", "100", name="a")
    pub1 = Publisher(kafka_bootstrap, topic4, linger_ms=5)
    try:
        assert pub1.layout.partitions == 4
        t = threading.Thread(target=publish, args=(pub1, envs[:cut1]), daemon=True)
        t.start()
        time.sleep(1.0)
        _grow(kafka_bootstrap, topic4, 7)  # mid-stream
        t.join(120)
        # the running worker notices the new partitions promptly, and is given them
        _wait_for(a, "now has 7 partitions (was 4)", timeout=40)
        # the same (long-lived) publisher keeps going after the growth
        publish(pub1, envs[cut1:cut2])
        ends_of(pub1)
        assert not errors, errors
        wait_for_group(kafka_bootstrap, group, topic4, dict(ends), timeout=90)
    finally:
        pub1.close()
        assert stop(a) == 0, stderr_of(a)
    sa = summary(a)
    assert sa["layout_partitions"] == 4 and sa["topic_partitions"] == 7
    assert sorted(sa["partitions"]) == list(range(7)), sa["partitions"]  # new partitions were assigned

    # restarted workers (two of them) and a fresh publisher process's view of the layout
    assert read_layout(kafka_bootstrap, topic4).partitions == 4
    b = start_worker(kafka_bootstrap, topic4, group, logdir, tmp_path, "--max-poll-records", "100", name="b")
    c = start_worker(kafka_bootstrap, topic4, group, logdir, tmp_path, "--max-poll-records", "100", name="c")
    try:
        pub2 = Publisher(kafka_bootstrap, topic4, linger_ms=5)
        try:
            assert pub2.layout.partitions == 4
            publish(pub2, envs[cut2:])
            ends_of(pub2)
        finally:
            pub2.close()
        assert not errors, errors
        assert set(ends) <= {0, 1, 2, 3}  # nothing went to the new partitions
        wait_for_group(kafka_bootstrap, group, topic4, dict(ends), timeout=90)
    finally:
        for w in (b, c):
            assert stop(w) == 0, stderr_of(w)
    assert sum(ends.values()) == len(envs)

    acc, rej, exp_reasons = expected_outcome([e.to_bytes() for e in envs])
    ids, rejects, reasons = read_logs(logdir)
    assert set(ids) == acc, (len(set(ids) - acc), len(acc - set(ids)))
    assert max(ids.values()) == 1
    assert set(rejects) == rej and reasons == exp_reasons
    assert not reasons["UNKNOWN_REPOSITORY"] and not reasons["WRONG_PARTITION"]
    assert load_log_layout(logdir).partitions == 4
    state = open_partition_logs(logdir)  # every repository in the log of its own partition
    assert len(state.repos) == 30


def test_foreign_partition_repo_created_is_rejected(kafka_bootstrap, topic4, tmp_path):
    """A RepoCreated (an attacker's, for a repository that exists in another partition;
    and a fresh one) sent straight to a partition the repository does not map to is
    kept in the rejects log as WRONG_PARTITION naming the right partition; verify-kafka
    still starts and answers from the real history."""
    envs = synthetic(8, 120)
    group = f"g-{uuid.uuid4().hex[:8]}"
    logdir = tmp_path / "logs"
    pub = Publisher(kafka_bootstrap, topic4, linger_ms=5)
    try:
        for env in envs:
            pub.send_envelope(env)
        pub.flush()
        ends = dict(pub.end_offsets)
        lay = pub.layout
    finally:
        pub.close()
    victim = decode_event(envs[0].payload).repo
    owner = lay.partition_for(victim)
    elsewhere = (owner + 1) % 4
    mallory = SigningKey.from_seed(b"mallory")
    fresh = next(f"registry.example.com/mallory/r{i}" for i in range(100)
                 if lay.partition_for(f"registry.example.com/mallory/r{i}") != elsewhere)
    forged = [sign_event(RepoCreated(name, 1, 0, [mallory.public_key], 1, [mallory.public_key], 1, 4_000_000_000),
                         [mallory]) for name in (victim, fresh)]
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", client_id="trustlog-test-mallory")
    try:
        for env in forged:
            md = p.send(topic4, key=decode_event(env.payload).repo.encode(), value=env.to_bytes(),
                        partition=elsewhere).get(timeout=30)
            ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
    finally:
        p.close(timeout=10)

    w = start_worker(kafka_bootstrap, topic4, group, logdir, tmp_path, "--idle-exit", "60")
    try:
        wait_for_group(kafka_bootstrap, group, topic4, ends, timeout=90)
    finally:
        assert stop(w) == 0, stderr_of(w)
    acc, _, exp_reasons = expected_outcome([e.to_bytes() for e in envs])
    ids, _, reasons = read_logs(logdir)
    assert set(ids) == acc  # the real history, untouched
    assert reasons == exp_reasons + Counter({"WRONG_PARTITION": 2})
    with RejectsLog.open(logdir / f"p{elsewhere}" / "rejects") as rl:
        wrong = [r for r in rl if r.reason == "WRONG_PARTITION"]
    assert {r.event_id for r in wrong} == {e.event_id for e in forged}
    assert any(f"{victim!r} belongs to partition {owner} of {topic4}" in r.detail for r in wrong), wrong
    assert all(f"not partition {elsewhere}" in r.detail for r in wrong)

    # verify-kafka starts and answers from the real history
    some_tag = next(iter(open_partition_logs(logdir).repos[victim].tags))
    req_topic, res_topic = f"{topic4}-req", f"{topic4}-res"
    produce(kafka_bootstrap, req_topic, [(None, msgspec.json.encode(Request(victim, some_tag)))])
    try:
        vk = subprocess.run([*CLI, "verify-kafka", "--kafka", kafka_bootstrap, "--log", str(logdir),
                             "--kafka-requests", req_topic, "--kafka-results", res_topic, "--group", f"v-{group}",
                             "--max-messages", "1", "--idle-exit", "30", "--json"],
                            capture_output=True, text=True, timeout=120)
    finally:
        delete_topics(kafka_bootstrap, req_topic, res_topic)
    assert vk.returncode == 0, vk.stderr
    assert json.loads(vk.stdout.strip().splitlines()[-1])["requests"] == 1
