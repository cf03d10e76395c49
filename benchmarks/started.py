"""A real service for a benchmark, from the project's own script: the one already running
is used and left running; one this benchmark starts is stopped when it ends (shared by
``ingest.py`` for the Kafka broker and ``import_notary.py`` for notary-server)."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def service(script: Path, probe: str, what: str, timeout: int = 900) -> Iterator[str]:
    """The address ``script probe`` prints (running already), or the one ``script start``
    prints; in the second case ``script stop`` runs on the way out, whatever happened."""
    r = subprocess.run([str(script), probe], capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip():
        yield r.stdout.strip().splitlines()[-1]
        return
    print(f"starting {what}: {script.parent.name}/{script.name} start (stopped at the end)", file=sys.stderr)
    r = subprocess.run([str(script), "start"], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"cannot start {what}:\n{r.stderr}")
    try:
        yield r.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(script), "stop"], capture_output=True, text=True, timeout=300)
        print(f"stopped {what}", file=sys.stderr)
