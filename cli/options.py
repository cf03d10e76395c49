"""The global options every command takes, in one place.

They are added twice: to the top-level parser with their real defaults (so they work
before the subcommand, ``trustlog --log DIR verify``) and to the ``common`` parent of
each subcommand with ``default=SUPPRESS`` (so they also work after it, ``trustlog
verify --log DIR``, without the subcommand's absent value overwriting the top-level one).
A module that registers subcommands passes ``common`` as a parent and gets them all.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

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
