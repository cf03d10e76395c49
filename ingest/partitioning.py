"""Which Kafka partition a repository lives in, and the layout that decides it.

Each partition of the events topic has its own trust log (``<log-dir>/p<N>/``), so a
repository's whole history must reach one partition. The mapping is one function,
:func:`partition_for`: Kafka's own default (murmur2 of the repository name, modulo a
partition count), so a Java or Go producer keyed by repository agrees with it.

The count in that modulo is *not* the topic's live partition count. Growing a topic
(6 -> 8 partitions, an ordinary Kafka operation) would otherwise move about 3/4 of
the repositories to partitions whose logs never saw them, and their later events
would be refused as UNKNOWN_REPOSITORY. Instead the count is a :class:`Layout`,
recorded once per topic and shared by every publisher and worker:

* in the layout topic ``<topic>.layout`` (one partition, never deleted; the first
  record for the topic wins, so two processes racing to record it agree), and
* in ``<log-dir>/layout.json``, written by the ingest worker, so the logs can be
  checked offline (``verify-kafka``) against the layout they were written under.

A grown topic therefore keeps every repository where its history is; its extra
partitions stay empty (workers log a notice when they see them). An event that
arrives in a partition its repository does not map to is refused as
``WRONG_PARTITION`` by the worker, never appended.

The partition logs of a log directory are found and merged here too
(:func:`partition_dirs`, :func:`open_partition_logs`).
"""
from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from kafka.partitioner.default import murmur2

from trustlog.core.errors import LogError, TrustlogError
from trustlog.core.events import Event
from trustlog.core.reasons import Reject
from trustlog.core.state import RejectedEventError, TrustState

from .kafka_servers import bootstrap_servers

LAYOUT_FILE = "layout.json"
HASH = "murmur2"


class LayoutError(TrustlogError):
    """The recorded layout is missing, unreadable or contradicts the topic or the logs."""


class Layout(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the repositories of ``topic`` are mapped onto its partitions."""

    topic: str
    partitions: int
    hash: str = HASH
    recorded_at: int = 0  # ns, informational

    def partition_for(self, repo: str) -> int:
        return partition_for(repo, self.partitions)


def partition_for(repo: str, partitions: int) -> int:
    """The partition of ``repo`` among ``partitions``: Kafka's default partitioner for
    the key ``repo`` (UTF-8), i.e. ``(murmur2(key) & 0x7fffffff) % partitions``."""
    if partitions < 1:
        raise ValueError(f"a layout needs at least one partition, not {partitions}")
    return (murmur2(repo.encode("utf-8")) & 0x7FFFFFFF) % partitions


def layout_topic(topic: str) -> str:
    return f"{topic}.layout"


def _decode(value: bytes, where: str) -> Layout:
    try:
        lay = msgspec.json.decode(value, type=Layout)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise LayoutError(f"{where}: not a layout record ({e})") from e
    if lay.partitions < 1 or lay.hash != HASH:
        raise LayoutError(f"{where}: unusable layout {lay!r} (needs partitions >= 1 and hash {HASH!r})")
    return lay


# -- the layout topic ------------------------------------------------------------------------

def _consumer(bootstrap: str) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap_servers(bootstrap), enable_auto_commit=False,
                         client_id=f"trustlog-layout-{os.getpid()}")


def read_layout(bootstrap: str, topic: str, timeout: float = 30.0, consumer: Any = None) -> Layout | None:
    """The layout recorded for ``topic`` (the first record for it in the layout topic),
    or None when none is recorded yet."""
    c = consumer if consumer is not None else _consumer(bootstrap)
    try:
        return _read_layout(c, topic, timeout)
    finally:
        if consumer is None:
            c.close(autocommit=False)


def _read_layout(c: Any, topic: str, timeout: float) -> Layout | None:
    from kafka import TopicPartition

    lt = layout_topic(topic)
    parts = c.partitions_for_topic(lt)
    if not parts:
        return None
    tp = TopicPartition(lt, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    end = c.end_offsets([tp])[tp]
    deadline = time.monotonic() + timeout
    while c.position(tp) < end:
        if time.monotonic() > deadline:
            raise LayoutError(f"could not read the layout topic {lt} within {timeout:.0f} s")
        for records in c.poll(timeout_ms=500).values():
            for r in records:
                if r.key == topic.encode() and r.value:
                    lay = _decode(r.value, f"{lt} offset {r.offset}")
                    if lay.topic != topic:
                        raise LayoutError(f"{lt} offset {r.offset}: layout names topic {lay.topic!r}")
                    return lay
    return None


def topic_partitions(bootstrap: str, topic: str, consumer: Any = None) -> int | None:
    """The live partition count of ``topic`` (None: no such topic)."""
    c = consumer if consumer is not None else _consumer(bootstrap)
    try:
        parts = c.partitions_for_topic(topic)
        return len(parts) if parts else None
    finally:
        if consumer is None:
            c.close(autocommit=False)


def ensure_layout(bootstrap: str, topic: str) -> Layout:
    """The layout of ``topic``; record it (the topic's current partition count) if there
    is none yet. Raises :class:`LayoutError` if the topic is missing or has fewer
    partitions than its layout (deleted and re-created smaller?)."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    c = _consumer(bootstrap)
    try:
        live = topic_partitions(bootstrap, topic, c)
        if live is None:
            raise LayoutError(f"topic {topic!r} does not exist (create it, e.g. `trustlog publish --partitions N`)")
        lay = read_layout(bootstrap, topic, consumer=c)
    finally:
        c.close(autocommit=False)
    if lay is None:
        lt = layout_topic(topic)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(bootstrap), client_id="trustlog-admin")
        try:
            admin.create_topics([NewTopic(lt, 1, 1, topic_configs={"cleanup.policy": "delete", "retention.ms": "-1",
                                                                   "retention.bytes": "-1"})],
                                timeout_ms=30_000)
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()
        p = KafkaProducer(bootstrap_servers=bootstrap_servers(bootstrap), acks="all", enable_idempotence=True,
                          client_id=f"trustlog-layout-{os.getpid()}")
        try:
            rec = Layout(topic, live, HASH, time.time_ns())
            p.send(lt, key=topic.encode(), value=msgspec.json.encode(rec), partition=0).get(timeout=30)
        finally:
            p.close(timeout=10)
        lay = read_layout(bootstrap, topic)  # the first record wins if another process raced us
        if lay is None:
            raise LayoutError(f"recorded the layout of {topic!r} in {lt} but cannot read it back")
    if live < lay.partitions:
        raise LayoutError(f"topic {topic!r} has {live} partitions but its layout ({layout_topic(topic)}) maps "
                          f"repositories onto {lay.partitions}: was it deleted and re-created smaller?")
    return lay


# -- the copy in the log directory ----------------------------------------------------------

def load_log_layout(log_dir: str | os.PathLike[str]) -> Layout | None:
    """``<log_dir>/layout.json``, or None for logs written before layouts were recorded."""
    path = Path(log_dir) / LAYOUT_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LayoutError(f"{path}: {e}") from e
    return _decode(data, str(path))


def record_log_layout(log_dir: str | os.PathLike[str], lay: Layout) -> None:
    """Write ``lay`` to ``<log_dir>/layout.json`` (atomically), or check it against the
    one already there: a log directory is written under one layout only."""
    base = Path(log_dir)
    have = load_log_layout(base)
    if have is not None:
        if (have.topic, have.partitions, have.hash) != (lay.topic, lay.partitions, lay.hash):
            raise LayoutError(f"{base / LAYOUT_FILE} records topic {have.topic!r} with {have.partitions} partitions, "
                              f"but the layout of {lay.topic!r} is {lay.partitions}: these logs belong to another "
                              "topic or layout; give another --log")
        return
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f"{LAYOUT_FILE}.{os.getpid()}.tmp"  # workers of one directory may start together
    with open(tmp, "wb") as f:
        f.write(json.dumps(msgspec.to_builtins(lay), indent=1).encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, base / LAYOUT_FILE)
    fd = os.open(base, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the partition logs under a log directory ------------------------------------------------

def partition_dir(log_dir: str | os.PathLike[str], partition: int) -> Path:
    """The log directory of ``partition``: ``<log_dir>/p<partition>``."""
    return Path(log_dir) / f"p{partition}"


def partition_dirs(log_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """The ``p<N>`` log directories under ``log_dir``, by partition number."""
    out = []
    base = Path(log_dir)
    if base.is_dir():
        for d in base.iterdir():
            if d.is_dir() and d.name.startswith("p") and d.name[1:].isdigit():
                out.append((int(d.name[1:]), d))
    return sorted(out)


def open_partition_logs(log_dir: str | os.PathLike[str], **trustlog_options: Any) -> TrustState:
    """The trust state of every ``p*/`` log under ``log_dir``, merged.

    Each partition log is folded on its own (a read-only :class:`TrustLog`: no lock is
    taken and nothing is written, so running ingest workers are not disturbed; each log
    is read up to its last durable record). Repositories are partitioned by key, so their
    states do not overlap; a repository found in two logs is an error. The merged
    ``version`` is the total number of records folded. Each log's repositories must
    belong to its partition under the layout recorded in ``<log_dir>/layout.json``.
    """
    from .pipeline import TrustLog

    dirs = partition_dirs(log_dir)
    if not dirs:
        raise LogError(f"no partition logs (p0/, p1/, ...) under {log_dir}")
    layout = load_log_layout(log_dir)
    merged = TrustState()
    for p, d in dirs:
        with TrustLog(d, read_only=True, **trustlog_options) as tl:
            check_ownership(p, tl.state.repos, layout, str(d))
            for name, repo in tl.state.repos.items():
                if name in merged.repos:
                    raise LogError(f"repository {name!r} is in two partition logs (p{p} and another); "
                                   "was the topic repartitioned or keyed by something else?")
                merged.repos[name] = repo
            merged.version += tl.state.version
    return merged


def check_ownership(partition: int, repos: Any, lay: Layout | None, where: str) -> None:
    """Every repository in the log of ``partition`` must map to it under ``lay``.
    Raises :class:`LogError` naming the first one that does not (fail closed)."""
    if lay is None:
        return
    if partition >= lay.partitions:
        for name in repos:
            raise LogError(f"{where}: partition {partition} is outside the layout of {lay.partitions} partitions "
                           f"but its log holds repository {name!r}")
        return
    for name in repos:
        owner = lay.partition_for(name)
        if owner != partition:
            raise LogError(f"{where}: repository {name!r} belongs to partition {owner} (layout of {lay.partitions}), "
                           f"not {partition}")


def admit_for(partition: int, lay: Layout) -> Callable[[Event], RejectedEventError | None]:
    """The :class:`~trustlog.ingest.pipeline.TrustLog` ``admit`` check of the log of
    ``partition``: an event of a repository that maps elsewhere is refused as
    WRONG_PARTITION (``RepoCreated`` included: a repository is created where it lives)."""
    owner = functools.lru_cache(maxsize=1 << 16)(lay.partition_for)

    def admit(event: Event) -> RejectedEventError | None:
        if owner(event.repo) == partition:
            return None
        return RejectedEventError(Reject.WRONG_PARTITION, wrong_partition_detail(event.repo, partition, lay))

    return admit


def wrong_partition_detail(repo: str, partition: int, lay: Layout) -> str:
    return (f"repository {repo!r} belongs to partition {lay.partition_for(repo)} of {lay.topic} "
            f"(layout: {lay.partitions} partitions, {layout_topic(lay.topic)}), not partition {partition}")


__all__ = ["Layout", "LayoutError", "partition_for", "layout_topic", "read_layout", "ensure_layout",
           "topic_partitions", "load_log_layout", "record_log_layout", "check_ownership",
           "admit_for", "wrong_partition_detail", "partition_dir", "partition_dirs", "open_partition_logs"]
