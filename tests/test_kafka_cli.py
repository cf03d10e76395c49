"""The Kafka worker's command line and its parts, without a broker: the options shared by
`python -m trustlog.cli.kafka_worker` and `trustlog ingest --kafka`, the progress line,
the metrics switch, and the fault hook of tests/fault_worker.py."""
from __future__ import annotations

import argparse
import errno
import io
import logging
import sys
from pathlib import Path

import pytest

from fault_worker import failing_fsync
from trustlog.cli import kafka_worker as worker_cli
from trustlog.cli.main import build_parser, main
from trustlog.cli.options import add_kafka_worker_options
from trustlog.cli.progress_line import PlainFormatter, ProgressLine
from trustlog.ingest.kafka_metrics import NoMetrics, worker_metrics
from trustlog.ingest.kafka_worker import KafkaIngestWorker

WORKER_ARGS = ["--topic", "t", "--group", "g", "--log", "/x", "--dlq", "d", "--no-outcomes", "--max-messages", "5",
               "--idle-exit", "2.5", "--metrics-port", "9", "--max-poll-records", "7",
               "--max-partition-fetch-bytes", "100", "--session-timeout-ms", "1", "--heartbeat-interval-ms", "2",
               "--max-event-bytes", "3", "--no-preverify", "--quiet", "--progress-interval", "1",
               "--instance-id", "i", "--metadata-max-age-ms", "11", "--outcomes", "o"]


def _worker_dests() -> set[str]:
    p = argparse.ArgumentParser()
    add_kafka_worker_options(p)
    return set(vars(p.parse_args([]))) | {"log", "max_event_bytes"}


def test_worker_main_and_ingest_kafka_parse_the_same_options_alike() -> None:
    standalone = worker_cli.build_parser().parse_args(["--kafka", "b:1", *WORKER_ARGS])
    ingest = build_parser().parse_args(["ingest", "--kafka", "b:1", *WORKER_ARGS])
    for dest in _worker_dests():
        assert getattr(standalone, dest) == getattr(ingest, dest), dest
    assert ingest.file is None and ingest.cmd == "ingest"


def test_worker_from_args_builds_the_worker_the_options_describe() -> None:
    args = worker_cli.build_parser().parse_args(["--kafka", "b:1", *WORKER_ARGS])
    seen: list[int] = []
    w = worker_cli.worker_from_args(args.kafka, args, fsync_fn=seen.append)
    assert isinstance(w, KafkaIngestWorker)
    assert (w.topic, w.group, str(w.log_dir), w.dlq, w.outcomes_topic) == ("t", "g", "/x", "d", None)
    assert (w.max_messages, w.idle_exit, w.max_poll_records, w.max_event_bytes) == (5, 2.5, 7, 3)
    assert w.preverify is False and w.instance_id == "i"
    assert w.fsync_fn == seen.append  # a seam with no command-line option, passed through


@pytest.mark.parametrize("argv, needle", [
    (["--kafka", "b:1", "--max-messages", "0"], "must be at least 1"),
    (["--kafka", "b:1", "--max-poll-records", "x"], "is not a whole number"),
    (["--topic", "t"], "--kafka"),
])
def test_worker_main_bad_input_is_exit_2(argv: list[str], needle: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        worker_cli.main(argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_worker_main_without_topic_is_one_line_exit_2(capsys) -> None:
    assert worker_cli.main(["--kafka", "127.0.0.1:1", "--group", "g"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["trustlog: error: Kafka ingest needs --topic and --group"]


def test_ingest_needs_a_file_or_kafka(tmp_path: Path, capsys) -> None:
    assert main(["ingest", "--log", str(tmp_path)]) == 2
    assert "give a JSONL FILE to ingest, or --kafka" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "x.jsonl"), "--kafka", "127.0.0.1:1", "--log", str(tmp_path)]) == 2
    assert "either FILE or --kafka" in capsys.readouterr().err


def test_progress_line_off_a_terminal_is_a_line_per_interval(monkeypatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    line = ProgressLine(True, interval=3600)
    line.update("started", force=True)
    line.update("too soon")  # within the interval: not printed
    line.close("done")
    assert err.getvalue().splitlines() == ["started", "done"]
    quiet = ProgressLine(False)
    quiet.update("x", force=True)
    quiet.close("y")
    assert err.getvalue().splitlines() == ["started", "done"]


def test_no_metrics_port_serves_nothing() -> None:
    m = worker_metrics(None)
    assert type(m) is NoMetrics
    m.batch(0, 1, 0, {"MALFORMED": 1}, 0.001)
    m.gauges(1.0, 1, {0: 3})
    m.close()


def test_the_fault_hook_fails_fsync_after_n_calls(tmp_path: Path) -> None:
    fsync = failing_fsync(2)
    with open(tmp_path / "f", "wb") as f:
        fsync(f.fileno())
        fsync(f.fileno())
        with pytest.raises(OSError) as e:
            fsync(f.fileno())
    assert e.value.errno == errno.EIO and "injected fsync failure" in str(e.value)


def test_the_worker_library_has_no_fault_switch_in_the_environment(monkeypatch, tmp_path: Path) -> None:
    """Faults come only through the worker's seams (tests/fault_worker.py), never from a
    variable that a production process might inherit."""
    monkeypatch.setenv("TRUSTLOG_FAULT_FSYNC_AFTER", "0")
    assert KafkaIngestWorker("127.0.0.1:1", "t", "g", tmp_path).fsync_fn is None


HOSTILE = "registry.example.com/x\n2026-01-01 ERROR forged line \x1b[31m[bold]red[/bold]"


def test_the_progress_line_shows_untrusted_text_literally(monkeypatch) -> None:
    """A status line quotes error messages, which quote repository names: no second
    line, no escape sequence, on a terminal no markup."""
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    line = ProgressLine(True, interval=0)
    line.update(HOSTILE, force=True)
    line.close(HOSTILE)
    out = err.getvalue().splitlines()
    assert len(out) == 2 and all("\x1b" not in o and "\\n2026" in o for o in out)

    class Live:  # what rich.live.Live is given on a terminal
        got: list = []

        def update(self, r: object) -> None:
            self.got.append(r)

        def stop(self) -> None:
            pass

    live = ProgressLine(True)
    live._live = Live()
    live.update(HOSTILE)
    live.close(HOSTILE)
    from rich.text import Text
    assert all(isinstance(r, Text) and "[bold]" in r.plain and "\x1b" not in r.plain for r in Live.got)


def test_worker_log_lines_escape_untrusted_text() -> None:
    rec = logging.LogRecord("trustlog.ingest.kafka", logging.ERROR, __file__, 1, "refused %s", (HOSTILE,), None)
    out = PlainFormatter("%(levelname)s %(message)s").format(rec)
    assert "\n" not in out and "\x1b" not in out and out.startswith("ERROR refused registry.example.com/x\\n")
    assert rec.getMessage() == "refused " + HOSTILE  # the record itself is left as it was
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    out = PlainFormatter("%(message)s").format(rec)
    assert len(out.splitlines()) == 1 and "\x1b" not in out and "Traceback" in out


def test_the_first_polls_after_an_assignment_ramp_up_to_max_poll_records(tmp_path: Path) -> None:
    """The pipeline fills with small batches first (see FIRST_POLL_RECORDS), then polls
    take max_poll_records; every new assignment starts the ramp again."""
    from trustlog.ingest.kafka_worker import FIRST_POLL_RECORDS, _Listener

    w = KafkaIngestWorker("127.0.0.1:1", "t", "g", tmp_path, max_poll_records=5000)
    sizes = [w.next_poll_records() for _ in range(6)]
    assert sizes[0] == FIRST_POLL_RECORDS and sizes[-1] == 5000
    assert all(a < b for a, b in zip(sizes, sizes[1:4])) and sizes[4:] == [5000, 5000]

    class _Consumer:
        def pause(self, *tps) -> None:
            pass

    w.consumer = _Consumer()
    _Listener(w).on_partitions_assigned([])
    assert w.next_poll_records() == FIRST_POLL_RECORDS
    small = KafkaIngestWorker("127.0.0.1:1", "t", "g", tmp_path, max_poll_records=100)
    assert [small.next_poll_records() for _ in range(3)] == [100, 100, 100]
