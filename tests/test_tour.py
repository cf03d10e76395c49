"""The README tour runs as written: every command of docs/tour.sh, in order, in a fresh
directory, with the exit code the tour says; and README.md shows exactly that script."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tour import ROOT, commands, readme_block, runner_script


def test_readme_shows_the_tour_verbatim() -> None:
    assert readme_block() in (ROOT / "README.md").read_text(), \
        "README.md's tour differs from docs/tour.sh: run scripts/gen-docs"


def test_tour_runs_line_by_line(tmp_path: Path) -> None:
    assert len(commands()) > 30
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTLOG_") or k == "TRUSTLOG_PUREPYTHON"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path)
    r = subprocess.run(["bash", "-c", runner_script()], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0 and "TOUR-OK" in r.stdout, f"{r.stderr[-3000:]}\n--- stdout ---\n{r.stdout[-3000:]}"
    # what the tour promises: the audit report proves its source, the typo made no log
    assert (tmp_path / "alice.html").is_file() and not (tmp_path / "typo").exists()
    verdicts = (tmp_path / "verdicts.jsonl").read_text()
    assert '"tag":"v1.2","code":"VALID"' in verdicts and '"tag":"v1.3","code":"KEY_COMPROMISED"' in verdicts
