"""Human output: progress bars and tables on stderr/stdout via rich; silent for --json.

The consoles never parse markup: anything printed is shown literally, so an untrusted
string cannot restyle, hide or break the output. Styled lines are built with
:func:`trustlog.cli.safe.markup` (trusted template, escaped arguments); table cells and
titles go through :func:`trustlog.cli.safe.text`.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .safe import markup, plain, text


class _NullBar:
    def advance(self, n: int = 1) -> None:
        pass

    def done(self) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task: Any) -> None:
        self._p, self._t = progress, task

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._t, n)

    def done(self) -> None:
        """The work turned out smaller than estimated: show the bar complete."""
        task = next(t for t in self._p.tasks if t.id == self._t)
        self._p.update(self._t, total=task.completed)


class SafeConsole(Console):
    """A rich Console that shows every ``str`` it prints through :func:`safe.text`.

    ``markup=False`` stops rich markup but not terminal control: a plain string holding
    ESC sequences (colours, OSC 8 links, cursor moves), CR or bidi overrides reaches the
    terminal as it is. Making the console itself safe closes that for every caller
    (witness messages, repair notices, sweep and rejects tables ...), not one call site
    at a time; rich renderables (Text, Table) pass unchanged (build their cells with
    ``safe.text``, as :meth:`UI.table` does)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().print(*(text(o) if isinstance(o, str) else o for o in objects), **kwargs)


class UI:
    def __init__(self, json_mode: bool = False, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet or json_mode
        self.out = SafeConsole(file=sys.stdout, highlight=False, soft_wrap=True, markup=False, emoji=False)
        self.err = SafeConsole(file=sys.stderr, highlight=False, soft_wrap=True, markup=False, emoji=False)

    def info(self, msg: str) -> None:
        if not self.quiet:
            self.err.print(text(msg))

    def say(self, template: str, *args: object, err: bool = False) -> None:
        """Print trusted markup ``template`` with ``args`` escaped (see safe.markup)."""
        (self.err if err else self.out).print(markup(template, *args))

    @contextlib.contextmanager
    def progress(self, label: str, total: int | None) -> Iterator[_Bar | _NullBar]:
        if self.quiet:
            yield _NullBar()
            return
        cols = [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn()]
        with Progress(*cols, console=self.err, transient=False) as p:
            yield _Bar(p, p.add_task(plain(label), total=total))

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        t = Table(title=text(title), title_justify="left")
        for c in columns:
            t.add_column(text(c), overflow="fold")
        for r in rows:
            t.add_row(*[text(x) for x in r])
        self.out.print(t)
