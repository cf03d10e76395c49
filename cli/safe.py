"""Untrusted strings made safe to show: every renderer (terminal and HTML) goes through here.

Repository names, tags, roles and patterns come from signed events, so from publishers
and signers, not from us; reasons and error messages quote them; `--at` and file names
come from the command line. None of them may steer the output: rich markup (``[/]``
crashes a table, ``[conceal]*[/conceal]`` hides a catch-all pattern), ANSI escape
sequences, carriage returns, bidirectional overrides or line breaks that forge a second
line. :func:`plain` shows every non-printable character as a Python-style escape;
:func:`text` turns a string into a rich ``Text`` that is never parsed as markup.
"""
from __future__ import annotations

from rich.markup import escape as _escape_markup
from rich.text import Text

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _esc(c: str) -> str:
    named = _NAMED.get(c)
    if named is not None:
        return named
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def plain(value: object) -> str:
    """``str(value)`` with every non-printable character (C0/C1 controls such as ESC,
    CR and newline, Unicode format characters such as bidi overrides, odd spaces)
    written as a visible escape. Printable text, backslashes aside, is unchanged."""
    s = str(value)
    if s.isprintable() and "\\" not in s:
        return s
    return "".join(c if c.isprintable() and c != "\\" else _esc(c) for c in s)


def text(value: object, style: str = "") -> Text:
    """A rich Text of ``plain(value)``: printed literally, never read as markup."""
    if isinstance(value, Text):
        return value
    return Text(plain(value), style=style)


def markup(template: str, *args: object) -> Text:
    """Trusted markup ``template`` (``str.format`` fields) with every argument made
    plain and markup-escaped: ``markup("[bold]{}[/bold] at {}", repo, at)``."""
    return Text.from_markup(template.format(*(_escape_markup(plain(a)) for a in args)))


__all__ = ["markup", "plain", "text"]
