"""Which directories hold a log, and who may create one.

A wrong ``--log`` must never look like success: a command that only reads (verify,
inspect, audit, proofs, ...) refuses a directory that holds no log with a one-line error
(exit 2) instead of creating an empty log and reporting every image unknown. Only
commands that create data create a log, and only when told to: ``trustlog log init``,
or ``--init`` on ``repo create`` and ``ingest``; ``trustlog demo`` always writes a fresh
directory of its own.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from trustlog.core.errors import InputError


def holds_log(directory: str | Path) -> bool:
    """True if ``directory`` holds a trustlog log (its ``log/`` segment directory)."""
    return (Path(directory) / "log").is_dir()


def holds_partition_logs(directory: str | Path) -> bool:
    """True if ``directory`` holds the Kafka workers' partition logs (``p<N>/log``)."""
    d = Path(directory)
    return d.is_dir() and any(p.name[1:].isdigit() and holds_log(p) for p in d.glob("p*"))


class NoLogError(InputError):
    """The given --log directory holds no log, and the command may not create one."""


def require_log(directory: str | Path, *, may_init: bool = False) -> Path:
    """``directory`` if it holds a log; else raise :class:`NoLogError` naming the way
    to create one (``--init`` where the command offers it)."""
    d = Path(directory)
    if holds_log(d):
        return d
    how = "give --init to create it here" if may_init else f"create one with `trustlog log init --log {d}`"
    raise NoLogError(f"no log at {d} (give --log DIR or set TRUSTLOG_LOG; to start a new log, {how})")


def cmd_log_init(args: argparse.Namespace, ui) -> int:
    """`trustlog log init`: create an empty log (and its checkpoint key) in --log."""
    from trustlog.ingest.pipeline import TrustLog

    d = Path(args.log)
    if holds_log(d):
        raise InputError(f"{d} already holds a log; nothing was changed")
    with TrustLog(d) as tl:
        info = {"log": str(d), "log_key": tl.tree.key.keyid, "log_pub": str(d / "log.pub"),
                "origin": tl.tree.origin}
    if args.json:
        import sys

        import msgspec
        sys.stdout.write(msgspec.json.encode(info).decode() + "\n")
    else:
        ui.out.print(f"created an empty log in {d}\n  log key {info['log_key']}\n  give {info['log_pub']} to "
                     "auditors (`trustlog log verify --log-key`, `trustlog proof verify`)")
    return 0


def add_init_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--init", action="store_true",
                        help="create the log in --log if it does not exist yet (otherwise a missing log is an error)")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `trustlog log init` to the `log` command group (created if missing)."""
    pl = sub.choices.get("log")
    if pl is None:
        pl = sub.add_parser("log", help="the log itself: create, audit", description="The log itself.")
        pl.add_subparsers(dest="logcmd", metavar="ACTION", required=True)
    for choice in sub._choices_actions:  # the group's one-line help names both jobs now
        if choice.dest == "log":
            choice.help = "the log itself: create it (init), audit it (verify)"
    lsub = next(a for a in pl._actions if isinstance(a, argparse._SubParsersAction))
    li = lsub.add_parser("init", parents=[common], help="create an empty log (and its checkpoint key) in --log",
                         description="Create an empty log in --log: the segment directories and the log key that "
                                     "signs its checkpoints. Commands that only read refuse a directory without "
                                     "a log, so a typo in --log is an error, not an empty result.")
    li.set_defaults(func=cmd_log_init)
