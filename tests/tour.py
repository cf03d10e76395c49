"""The README tour (docs/tour.sh): its commands, and the block README.md shows."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "docs" / "tour.sh"
MARK = "# --- tour ---\n"
BEGIN, END = "<!-- tour: generated from docs/tour.sh by scripts/gen-docs -->\n```sh\n", "```\n<!-- /tour -->\n"


def tour_text() -> str:
    """The tour as the README shows it: docs/tour.sh after its marker line."""
    return TOUR.read_text().split(MARK, 1)[1]


def commands() -> list[tuple[int, str, int]]:
    """(line number, command, expected exit code) for every command line of the tour."""
    out = []
    first = TOUR.read_text().split(MARK, 1)[0].count("\n") + 2
    for n, line in enumerate(tour_text().splitlines(), first):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.search(r"#\s*exit (\d+)", line)
        out.append((n, line, int(m.group(1)) if m else 0))
    return out


def runner_script() -> str:
    """One bash script that runs each command in order (shell state carries over, as
    for a person typing them) and stops at the first exit code that is not expected."""
    parts = ["set -u"]
    for n, line, rc in commands():
        msg = shlex.quote(f"docs/tour.sh:{n}: expected exit {rc}: {line}")
        parts.append(f"{line}\nrc=$?; if [ $rc -ne {rc} ]; then echo {msg} \"(got $rc)\" >&2; exit 99; fi")
    parts.append("echo TOUR-OK")
    return "\n".join(parts) + "\n"


def readme_block() -> str:
    return BEGIN + tour_text() + END
