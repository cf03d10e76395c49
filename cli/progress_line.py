"""One live status line on stderr for a long-running worker (the Kafka ingest worker's
``StatusSink``): a rich live line on a terminal, otherwise a plain line every
``interval`` seconds, so a log file gets a heartbeat rather than a flood.

A status line quotes error messages (which quote repository names from events), so it
is shown through :mod:`trustlog.cli.safe`: never read as markup, controls escaped.
:func:`configure_logging` does the same for the worker's log messages.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any

from .safe import plain, text

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class PlainFormatter(logging.Formatter):
    """One log record, one line: every non-printable character of the formatted record
    (message and any traceback) escaped by ``safe.plain``, so a quoted name cannot forge
    a second line or send escape sequences to a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        return plain(super().format(record))


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr as the worker's processes do: WARNING and up (INFO with ``verbose``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(PlainFormatter(LOG_FORMAT))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


class ProgressLine:
    """``update`` shows the newest line; ``close`` shows the final one and stops. The
    live line starts with the first ``update``, so one that is never used draws nothing."""

    def __init__(self, enabled: bool = True, interval: float = 5.0) -> None:
        self.enabled = enabled
        self.interval = interval
        self._live: Any = None
        self._last = 0.0

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._live = Live("", console=Console(file=sys.stderr), refresh_per_second=4, transient=False)
        self._live.start()

    def update(self, line: str, force: bool = False) -> None:
        if not self.enabled:
            return
        if self._live is None and sys.stderr.isatty():
            self._start_live()
        if self._live is not None:
            self._live.update(text(line))
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            print(plain(line), file=sys.stderr, flush=True)

    def close(self, line: str) -> None:
        if self._live is not None:
            self._live.update(text(line))
            self._live.stop()
        elif self.enabled:
            print(plain(line), file=sys.stderr, flush=True)
