"""The global options every command takes, in one place.

They are added twice: to the top-level parser with their real defaults (so they work
before the subcommand, ``trustlog --log DIR verify``) and to the ``common`` parent of
each subcommand with ``default=SUPPRESS`` (so they also work after it, ``trustlog
verify --log DIR``, without the subcommand's absent value overwriting the top-level one).
A module that registers subcommands passes ``common`` as a parent and gets them all.

Options that several parsers share are defined once here too, each by a function that
adds it (``add_kafka_worker_options``, ``add_max_event_bytes_option``), so no parser
is patched or inspected after it is built.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from trustlog.core.events import DEFAULT_MAX_EVENT_BYTES

DEFAULT_LOG = os.environ.get("TRUSTLOG_LOG", "./trustlog-data")
DEFAULT_KEYS = os.environ.get("TRUSTLOG_KEYS", str(Path.home() / ".trustlog" / "keys"))

#: (flags, keyword arguments, default): the help text sits next to each option.
GLOBAL_OPTIONS: list[tuple[tuple[str, ...], dict, object]] = [
    (("--json",), {"action": "store_true",
                   "help": "print machine-readable JSON on stdout (errors too: {\"error\": {...}})"}, False),
    (("--log",), {"metavar": "DIR",
                  "help": "log directory (env TRUSTLOG_LOG; default ./trustlog-data); only commands that create "
                          "data create it, and only with --init or `trustlog log init`"}, DEFAULT_LOG),
    (("--keys",), {"metavar": "DIR", "help": "key directory (env TRUSTLOG_KEYS; default ~/.trustlog/keys)"},
     DEFAULT_KEYS),
    (("--pins",), {"metavar": "FILE",
                   "help": "pin file: repository patterns -> root key ids (env TRUSTLOG_PINS); "
                           "unpinned repositories are trusted on first use"}, os.environ.get("TRUSTLOG_PINS")),
]


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Add the global options to ``parser``: with their defaults (top level) or with
    ``default=SUPPRESS`` (the subcommands' ``common`` parent)."""
    for flags, kw, default in GLOBAL_OPTIONS:
        parser.add_argument(*flags, default=argparse.SUPPRESS if suppress else default, **kw)


def common_parent() -> argparse.ArgumentParser:
    """The parent parser that gives a subcommand the global options."""
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, suppress=True)
    return common


def positive_int(text: str) -> int:
    """argparse type for counts and sizes that must be at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def add_max_event_bytes_option(parser: Any, *, help: str = "reject larger envelopes as TOO_LARGE "
                                                          "(default %(default)s)") -> None:
    """``--max-event-bytes``: the largest envelope taken (``trustlog ingest``, ``publish``, the worker)."""
    parser.add_argument("--max-event-bytes", type=positive_int, default=DEFAULT_MAX_EVENT_BYTES, metavar="BYTES",
                        help=help)


def add_kafka_worker_options(parser: Any) -> None:
    """The Kafka ingest worker's options, shared by ``python -m trustlog.cli.kafka_worker``
    and ``trustlog ingest --kafka``. Not ``--log`` or ``--max-event-bytes``: each of those
    parsers defines them itself (``trustlog ingest`` has them already). ``parser`` is an
    ``ArgumentParser`` or an argument group of one."""
    parser.add_argument("--topic", help="topic to consume (envelopes keyed by repository)")
    parser.add_argument("--group", help="consumer group id; workers of one group share the partitions")
    parser.add_argument("--dlq", metavar="TOPIC", help="also send rejected inputs to this dead-letter topic")
    parser.add_argument("--outcomes", metavar="TOPIC", default="",
                        help="topic for the inputs' outcomes, JSON lines per poll batch (default <topic>.outcomes)")
    parser.add_argument("--no-outcomes", action="store_true", help="produce no outcome messages")
    parser.add_argument("--metadata-max-age-ms", type=int, default=5000,
                        help="refresh topic metadata this often, to notice a grown topic (default %(default)s)")
    parser.add_argument("--instance-id", help="static group membership id (a restart within the session timeout "
                                              "gets its partitions back without a rebalance)")
    parser.add_argument("--max-messages", type=positive_int, help="stop after this many messages")
    parser.add_argument("--idle-exit", type=float, metavar="SECONDS", help="stop after this long without messages")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    parser.add_argument("--max-poll-records", type=positive_int, default=5000,
                        help="records per poll (default %(default)s)")
    parser.add_argument("--max-partition-fetch-bytes", type=int, default=8 * 1024 * 1024, metavar="BYTES",
                        help="Kafka consumer max_partition_fetch_bytes (default %(default)s)")
    parser.add_argument("--session-timeout-ms", type=int, default=6000, metavar="MS",
                        help="consumer group session timeout (default %(default)s)")
    parser.add_argument("--heartbeat-interval-ms", type=int, default=2000, metavar="MS",
                        help="consumer group heartbeat interval (default %(default)s)")
    parser.add_argument("--no-preverify", action="store_true",
                        help="check signatures only inside each batch's fold (default: the next batch's signatures "
                             "are checked in a background thread while the current one is appended)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument("--progress-interval", type=float, default=5.0,
                        help="seconds between progress lines when stderr is not a terminal")
