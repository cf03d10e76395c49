"""docs/REFERENCE.md, generated from the code so it cannot drift: the commands and their
options (from the parser), verdict codes and reject reasons (from ``core/reasons.py``,
each member's comment is its documentation), and the JSON output fields (from the
structs, with the descriptions below, which a test holds to the structs' fields).

``scripts/gen-docs`` writes it; ``tests/test_reference.py`` fails when it is stale.
"""
from __future__ import annotations

import argparse
import inspect
import re
from enum import Enum

import msgspec

#: What each field of a verdict (one JSONL line of `verify`, `replay verify`, `verify-kafka`) means.
VERDICT_FIELDS: dict[str, str] = {
    "repo": "the requested repository",
    "tag": "the requested tag",
    "code": "verdict code (see Verdict codes); only VALID is a pass",
    "reason": "a sentence saying why, for people",
    "state_version": "records folded into the state the verdict was computed against",
    "digest": "the digest the tag is signed for (omitted when unknown)",
    "role": "the role that signed the tag",
    "keys": "key ids whose signatures counted",
    "log_offset": "log offset of the event that signed the tag (`trustlog proof inclusion OFFSET`)",
    "root_trust": "how the repository's first root was trusted: \"pinned\" or \"tofu\" (trust on first use)",
}

#: The error object printed on stdout under --json when a command fails.
ERROR_FIELDS: dict[str, str] = {
    "error.type": "the exception class, e.g. NoLogError, InputError, UsageError",
    "error.message": "the one-line message (also printed on stderr)",
    "error.exit_code": "the exit code the command returns (2 for bad input or a failure to run)",
}

EXIT_CODES = [("0", "success"),
              ("1", "the job ran and found a problem: a rejected event (`ingest`, `sign`, ...), a failing verdict "
                    "with `--fail-on-reject`, an inconsistent log (`log verify`), a proof or report that does not "
                    "check out (`proof verify`), a repository `compromise-everywhere` could not sign"),
              ("2", "bad input or a failure to run, with a one-line error (and under `--json` an error object on "
                    "stdout); nothing is written to the log"),
              ("130", "interrupted")]


def enum_docs(enum: type[Enum]) -> list[tuple[str, str]]:
    """(value, comment) of each member, from the member's trailing comment in the source."""
    src = inspect.getsource(enum)
    docs = dict(re.findall(r'^\s+\w+ = "(\w+)"\s*#\s*(.*)$', src, re.M))
    return [(m.value, docs.get(m.value, "")) for m in enum]


def _fmt_option(a: argparse.Action) -> tuple[str, str]:
    if a.option_strings:
        flags = ", ".join(f"`{s}`" for s in a.option_strings)
        if a.nargs != 0:
            metavar = a.metavar or a.dest.upper()
            flags += f" {metavar if isinstance(metavar, str) else ' '.join(metavar)}"
    else:
        flags = f"`{a.metavar or a.dest}`" + (" (optional)" if a.nargs in ("?", "*") else "")
    text = (a.help or "").replace("%(default)s", str(a.default)).replace("|", "\\|")
    if a.choices and not isinstance(a, argparse._SubParsersAction):
        text += f" (one of: {', '.join(map(str, a.choices))})"
    if a.required and a.option_strings:
        text += " **required**"
    return flags.replace("|", "\\|"), text


def _commands(parser: argparse.ArgumentParser, path: list[str]):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield path + [name], sp
                yield from _commands(sp, path + [name])


GLOBAL = {"--json", "--log", "--keys", "--pins", "-h"}


def render(parser: argparse.ArgumentParser | None = None) -> str:
    from trustlog.core.evaluate import Verdict
    from trustlog.core.reasons import Code, Reject

    from .audit_evidence import PROVENANCE_FIELDS
    from .main import build_parser
    from .operator_cmds import REJECT_FIELDS

    import os

    os.environ["COLUMNS"] = "100"  # argparse wraps usage lines at the terminal width: fix it
    parser = parser or build_parser()
    out = ["# trustlog reference", "",
           "Generated from the code by `scripts/gen-docs` (a test fails when this page is stale). "
           "Every command also has `--help`.", "",
           "## Exit codes", "", "| code | meaning |", "|---|---|"]
    out += [f"| {c} | {m} |" for c, m in EXIT_CODES]
    out += ["", "## Global options", "",
            "Every command takes these, before or after the subcommand "
            "(`trustlog --log DIR verify` = `trustlog verify --log DIR`).", "",
            "| option | meaning |", "|---|---|"]
    for a in parser._actions:
        if a.option_strings and a.option_strings[0] in GLOBAL - {"-h"}:
            f, t = _fmt_option(a)
            out.append(f"| {f} | {t} |")
    out += ["", "## Commands", ""]
    for path, sp in _commands(parser, []):
        if any(isinstance(a, argparse._SubParsersAction) for a in sp._actions):
            out += [f"### trustlog {' '.join(path)}", "", sp.description or "", ""]
            continue
        out += [f"### trustlog {' '.join(path)}", "", sp.description or "", "",
                "```", sp.format_usage().replace("usage: ", "").strip(), "```", ""]
        rows = [_fmt_option(a) for a in sp._actions
                if not (a.option_strings and a.option_strings[0] in GLOBAL) and a.help != argparse.SUPPRESS]
        if rows:
            out += ["| argument | meaning |", "|---|---|"] + [f"| {f} | {t} |" for f, t in rows] + [""]
    out += ["## Verdict codes", "", "`verify`, `replay verify`, `verify-kafka` give one verdict per request. Only "
            "`VALID` passes; every error inside verification is a failing verdict, never a pass.", "",
            "| code | meaning |", "|---|---|"]
    out += [f"| `{v}` | {d} |" for v, d in enum_docs(Code)]
    out += ["", "## Reject reasons", "", "Why an event was refused at ingest; it is kept in the rejects log "
            "(`trustlog rejects`) with this reason and a detail.", "", "| reason | meaning |", "|---|---|"]
    out += [f"| `{v}` | {d} |" for v, d in enum_docs(Reject)]
    out += ["", "## JSON output", "", "### A verdict (one JSON object per line)", "", "| field | meaning |", "|---|---|"]
    out += [f"| `{f.name}` | {VERDICT_FIELDS[f.name]} |" for f in msgspec.structs.fields(Verdict)]
    out += ["", "### A reject (`trustlog rejects --json`: `{log, total, matched, by_reason, rejects: [...]}`)", "",
            "| field | meaning |", "|---|---|"] + [f"| `{k}` | {v} |" for k, v in REJECT_FIELDS.items()]
    out += ["", "### An error (any command under `--json`)", "", "| field | meaning |", "|---|---|"]
    out += [f"| `{k}` | {v} |" for k, v in ERROR_FIELDS.items()]
    out += ["", "### The audit report's provenance (`audit --html`; checked by `proof verify REPORT.html`)", "",
            "| field | meaning |", "|---|---|"] + [f"| `{k}` | {v} |" for k, v in PROVENANCE_FIELDS.items()]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    import sys

    sys.stdout.write(render())


if __name__ == "__main__":
    main()
