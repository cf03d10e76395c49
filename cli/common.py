"""What the command modules share: opening the log (or a read-only view of it) the way
every command does (``--log``, ``--pins``, notices on stderr), the pin file, JSON on
stdout, the version line.

The command modules import these from here, never from ``cli/main.py``: main imports
every command module to build the parser, so the way back would be an import cycle
(the import-linter contracts in ``pyproject.toml`` keep it one way).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from trustlog.core.errors import InputError

from .logdir import holds_partition_logs, require_log
from .ui import UI

if TYPE_CHECKING:
    from trustlog.core.state import Pin
    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.view import ViewSet


def emit(obj: Any) -> None:
    """One JSON document on stdout (``--json``)."""
    sys.stdout.write(msgspec.json.encode(obj).decode() + "\n")
    sys.stdout.flush()  # a follower's lines reach a pipe as they happen


def version_string() -> str:
    """``trustlog VERSION (verifier backend: NAME)``: `trustlog --version`, and the
    tool line of an audit report."""
    from importlib.metadata import PackageNotFoundError, version

    from trustlog.verifier.batch import backend_name
    try:
        v = version("trustlog")
    except PackageNotFoundError:  # running from a source tree
        v = "unknown"
    return f"trustlog {v} (verifier backend: {backend_name()})"


def load_pins(path: str) -> list[Pin]:
    """A pin file: JSON ``{"registry.example.com/team/*": ["<root keyid>", ...], ...}``.
    Repositories matching a pattern must be created with root keys from its list (every
    matching pattern must hold); the others are trusted on first use."""
    from trustlog.ingest.pinpolicy import pins_from_mapping

    try:
        raw = msgspec.json.decode(Path(path).read_bytes(), type=dict[str, list[str]])
    except FileNotFoundError:
        raise InputError(f"{path}: no such pin file") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InputError(f"{path}: a pin file maps repository patterns to lists of root key ids: {e}") from e
    return list(pins_from_mapping(raw, path))


def pins_of(args: argparse.Namespace) -> list[Pin] | None:
    """The pins of ``--pins``, or None when none is given (the log's own policy holds)."""
    path = getattr(args, "pins", None)
    return load_pins(path) if path else None


def print_notices(ui: UI, log: Any) -> None:
    """A recovered tail and every repaired or damaged derived file: one line each, on stderr."""
    if log.recovery is not None:
        ui.info(f"recovered log: {log.recovery}")
    for n in log.notices:
        ui.say("trustlog: notice: {}", n, err=True)


def open_log(args: argparse.Namespace, ui: UI | None = None, *, read_only: bool = False,
             create: bool = False, max_event_bytes: int | None = None) -> TrustLog:
    """The log in --log; a directory without one is an error unless ``create``.
    Commands that only read open it ``read_only`` (no lock, nothing written). Every
    repair or damaged derived file is one line on stderr (given ``ui``)."""
    from trustlog.core.events import DEFAULT_MAX_EVENT_BYTES
    from trustlog.ingest.pipeline import TrustLog

    if not create:
        require_log(args.log, may_init=hasattr(args, "init"))
    if max_event_bytes is None:
        max_event_bytes = getattr(args, "max_event_bytes", DEFAULT_MAX_EVENT_BYTES)
    log = TrustLog(args.log, max_event_bytes=max_event_bytes, pins=pins_of(args), read_only=read_only)
    if ui is not None:
        print_notices(ui, log)
    return log


def open_view(args: argparse.Namespace, repos: Any = None, ui: UI | None = None) -> ViewSet:
    """A read-only view of the log (``DIR/log``, or the partition logs ``DIR/p*``):
    from the newest snapshot, without the writer's lock, writing nothing; with
    ``repos``, of those repositories only (see ``LogView``)."""
    from trustlog.ingest.view import ViewSet

    if not holds_partition_logs(args.log):
        require_log(args.log)
    views = ViewSet(args.log, pins=pins_of(args), repos=repos)
    if ui is not None:
        print_notices(ui, views)
    return views
