"""A real OCI registry (Debian's docker-registry) for tests, started by the project's
own script in a runtime directory of the test session's, and stopped afterwards.

Under CI=true a missing registry fails the test (never a skip); elsewhere it skips with
the command that installs it."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import require_or_skip

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "registry" / "registry.sh"


@pytest.fixture(scope="session")
def registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = dict(os.environ, TRUSTLOG_REGISTRY_DIR=str(tmp_path_factory.mktemp("registry")))
    try:
        url = subprocess.run([str(SCRIPT), "start"], env=env, check=True, capture_output=True, text=True,
                             timeout=300).stdout.strip()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", "") or str(e)
        require_or_skip("an OCI registry (scripts/registry/registry.sh start; Debian package docker-registry)",
                        RuntimeError(detail.strip().splitlines()[-1] if detail.strip() else str(e)))
        raise
    try:
        yield url
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)
