"""``python -m trustlog.cli.kafka_worker``: the Kafka ingest worker as a process.

The worker (:class:`trustlog.ingest.kafka_worker.KafkaIngestWorker`) is a library; this
module is its command line: the options (defined in :mod:`trustlog.cli.options`, shared
with ``trustlog ingest --kafka``), the progress line, the JSON summary and the exit
status. It is started from here, not from ``ingest``, because the default signature
check is registered by the layers above ``ingest`` (``trustlog.core.crypto_hook``),
which importing ``trustlog.cli`` does.

Exit status: 0 after a clean stop, 2 for bad input or a topic layout that contradicts
the logs, 3 after a log failure (nothing of the failed batch committed).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from trustlog.core.errors import InputError, TrustlogError
from trustlog.ingest.kafka_worker import KafkaIngestWorker

from .options import DEFAULT_LOG, add_kafka_worker_options, add_max_event_bytes_option
from .progress_line import ProgressLine, configure_logging
from .safe import plain

PROG = "python -m trustlog.cli.kafka_worker"


def worker_from_args(bootstrap: str, args: argparse.Namespace, *, quiet: bool = False,
                     **worker_options: Any) -> KafkaIngestWorker:
    """The worker the parsed options describe. ``worker_options`` go to the worker as
    they are: the seams a program embedding it (or a fault-injection test) sets, such as
    ``fsync_fn``, that have no command-line option."""
    if not args.topic or not args.group:
        raise InputError("Kafka ingest needs --topic and --group")
    return KafkaIngestWorker(
        bootstrap, args.topic, args.group, args.log, dlq=args.dlq, instance_id=args.instance_id,
        outcomes=None if args.no_outcomes else args.outcomes, metadata_max_age_ms=args.metadata_max_age_ms,
        max_messages=args.max_messages, idle_exit=args.idle_exit, metrics_port=args.metrics_port,
        max_poll_records=args.max_poll_records, max_partition_fetch_bytes=args.max_partition_fetch_bytes,
        session_timeout_ms=args.session_timeout_ms, heartbeat_interval_ms=args.heartbeat_interval_ms,
        max_event_bytes=args.max_event_bytes, preverify=not args.no_preverify,
        status=ProgressLine(not (quiet or args.quiet), args.progress_interval), **worker_options,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG,
                                description="Consume a topic of signed events into one trust log per partition.")
    p.add_argument("--kafka", "--bootstrap", dest="kafka", required=True, metavar="BOOTSTRAP",
                   help="bootstrap servers host:port[,host:port]")
    p.add_argument("--log", default=DEFAULT_LOG, help="directory of the partition logs <log>/p<N>/")
    add_kafka_worker_options(p)
    add_max_event_bytes_option(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout at the end")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None, **worker_options: Any) -> int:
    """Run one worker until it stops; ``worker_options`` as in :func:`worker_from_args`."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        w = worker_from_args(args.kafka, args, **worker_options)
        rc = w.run()
    except TrustlogError as e:
        print(f"trustlog: error: {plain(e)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(w.stats.to_dict()), flush=True)
    if rc:
        print(f"trustlog: error: {plain(w.stats.error)}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
