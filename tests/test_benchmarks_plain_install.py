"""Every benchmark runs from a plain ``pip install .``: none of them needs a test-only
package (the ``[test]`` extras: pytest, hypothesis, tuf, ...) to start.

Each script's ``--help`` runs in a fresh interpreter in which importing any of those
packages fails, so a benchmark that imports one (directly, or through a helper under
``tests/``, as ``crafted_events.py`` once did through ``crypto_strategies``) fails here
instead of on an operator's machine. ``--help`` runs the script's module-level imports
and its argument parser, and nothing else (a helper module the benchmarks share is
only imported).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))
# the [test] extras of pyproject.toml, as the modules they install
TEST_ONLY = ("pytest", "_pytest", "hypothesis", "tuf", "securesystemslib", "importlinter", "ruff", "mypy",
             "pytest_timeout")

_BLOCKER = f"""
import importlib.abc, os, runpy, sys
BLOCKED = {TEST_ONLY!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is a test-only package (blocked: a plain install lacks it)")
        return None
sys.meta_path.insert(0, Blocker())
script = sys.argv[1]
sys.argv = [script, "--help"]
sys.path[0] = os.path.dirname(script)   # as `python benchmarks/X.py` has it
runpy.run_path(script, run_name="__main__")
"""


def test_the_benchmarks_are_found() -> None:
    assert {"verify.py", "replay.py", "ingest.py", "state_memory.py", "crafted_events.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_starts_without_the_test_extras(script: str) -> None:
    p = subprocess.run([sys.executable, "-c", _BLOCKER, str(BENCHMARKS / script)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, f"benchmarks/{script} --help failed without the test extras:\n{p.stderr[-2000:]}"
    if "__main__" in (BENCHMARKS / script).read_text():   # (rawloop.py, started.py: helpers, no command line)
        assert "usage:" in p.stdout
