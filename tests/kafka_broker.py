"""Access to the real single-node Kafka broker that scripts/kafka/kafka.sh runs.

Tests get the bootstrap address through the ``kafka_bootstrap`` fixture::

    from kafka_broker import kafka_bootstrap  # or wire it in conftest.py

    @pytest.mark.kafka
    def test_something(kafka_bootstrap): ...

Where the broker comes from, in order:
  1. ``$TRUSTLOG_KAFKA_BOOTSTRAP`` (host:port[,host:port...]) -- an external broker;
     restart/stop helpers refuse to touch it;
  2. the bootstrap file that ``scripts/kafka/kafka.sh start`` writes in the runtime dir
     (``$TRUSTLOG_KAFKA_DIR`` or ``<repo>/.kafka``);
  3. with ``TRUSTLOG_KAFKA_AUTOSTART=1``, the fixture runs ``kafka.sh start`` itself.

If none answers, the fixture FAILS under ``CI=true`` (CI must run the real broker)
and skips otherwise.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import require_or_skip
from trustlog.ingest.kafka_servers import bootstrap_servers

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "kafka" / "kafka.sh"
START_HINT = "start it with: scripts/kafka/kafka.sh start"

_spec = importlib.util.spec_from_file_location(
    "_trustlog_kafka_util", REPO / "scripts" / "kafka" / "kafka_util.py")
_util = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_util)


def runtime_dir() -> Path:
    return Path(os.environ.get("TRUSTLOG_KAFKA_DIR") or REPO / ".kafka")


def _external() -> str | None:
    return os.environ.get("TRUSTLOG_KAFKA_BOOTSTRAP") or None


def reachable(addr: str, timeout: float = 2.0) -> bool:
    """True if the first host:port in ``addr`` answers a Kafka Metadata request."""
    return _util.probe(bootstrap_servers(addr)[0], timeout=timeout)


def bootstrap() -> str | None:
    """The bootstrap address of a running, answering broker, or None."""
    addr = _external()
    if addr is None:
        try:
            addr = (runtime_dir() / "bootstrap").read_text().strip()
        except OSError:
            return None
    return addr if addr and reachable(addr) else None


def _run(cmd: str, timeout: float) -> str:
    if _external():
        raise RuntimeError(
            f"TRUSTLOG_KAFKA_BOOTSTRAP={_external()} names an external broker; "
            f"kafka.sh cannot {cmd} it")
    proc = subprocess.run([str(SCRIPT), cmd], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/kafka/kafka.sh {cmd} failed (rc={proc.returncode}):\n"
                           f"{proc.stderr.strip()}")
    return proc.stdout.strip()


def start_broker(timeout: float = 600) -> str:
    """Start the broker (no-op if running); returns the bootstrap address.

    The generous timeout covers a first-time Maven jar fetch."""
    return _run("start", timeout).splitlines()[-1]


def stop_broker(timeout: float = 60) -> None:
    """Stop the broker (SIGTERM, SIGKILL after 20 s). Data and ports are kept."""
    _run("stop", timeout)


def restart_broker(timeout: float = 180) -> str:
    """Stop and start the same broker (same data, same address); returns the address."""
    stop_broker()
    return start_broker(timeout)


def kill_broker() -> None:
    """SIGKILL the script's broker (fault injection); ``start_broker()`` recovers it.

    The restart after a SIGKILL takes ~10 s longer than after ``stop_broker()``: the
    controller waits out the old broker registration (broker.session.timeout.ms=9 s)."""
    if _external():
        raise RuntimeError("TRUSTLOG_KAFKA_BOOTSTRAP names an external broker; cannot kill it")
    try:
        pid = int((runtime_dir() / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        raise RuntimeError("broker is not running (no pid file)") from None
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):  # wait until the process is gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap address of the real broker; fails under CI=true when it is missing."""
    addr = bootstrap()
    if addr is None and not _external() and os.environ.get("TRUSTLOG_KAFKA_AUTOSTART") == "1":
        addr = start_broker()
    if addr is None:
        where = (f"TRUSTLOG_KAFKA_BOOTSTRAP={_external()}" if _external()
                 else f"no broker answering (runtime dir {runtime_dir()})")
        require_or_skip("a Kafka broker", f"{where}; {START_HINT}")
    return addr


def require_restartable_broker() -> None:
    """For a test that stops and starts the broker: only the script's own broker can be."""
    if _external():
        require_or_skip("a broker started by scripts/kafka/kafka.sh (this test restarts it)",
                        f"TRUSTLOG_KAFKA_BOOTSTRAP={_external()} names an external broker")


# -- topics: every Kafka test makes its own and deletes it afterwards ------------------------

def new_topic(bootstrap: str, prefix: str, partitions: int = 4) -> str:
    """A fresh topic ``PREFIX-<random>`` with ``partitions`` partitions."""
    from kafka.admin import KafkaAdminClient

    topic = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="trustlog-test-admin")
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}},
                            timeout_ms=30_000, wait_for_metadata=True)
    finally:
        admin.close()
    return topic


def delete_topics(bootstrap: str, *topics: str) -> None:
    """Delete ``topics`` (best effort: cleanup never fails a test)."""
    from kafka.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="trustlog-test-admin")
        try:
            admin.delete_topics(list(topics), timeout_ms=30_000, raise_errors=False)
        finally:
            admin.close()
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass


def topic_fixture(name: str, prefix: str, partitions: int = 4):
    """A fixture ``name``: a fresh topic named after the test, with ``partitions``
    partitions; afterwards it and the worker's ``.layout`` / ``.outcomes`` topics go."""
    @pytest.fixture(name=name)
    def fixture(kafka_bootstrap, request):
        t = new_topic(kafka_bootstrap, prefix + request.node.name.replace("_", "")[4:24].lower(), partitions)
        yield t
        delete_topics(kafka_bootstrap, t, f"{t}.layout", f"{t}.outcomes")

    return fixture
