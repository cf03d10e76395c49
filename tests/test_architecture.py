"""docs/ARCHITECTURE.md matches the code: every module it names exists, and `core/`
imports none of the layers above it."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def test_every_module_the_architecture_page_names_exists() -> None:
    named = set(re.findall(r"`((?:core|ingest|verifier|services|cli|tests|scripts)/[\w/]+\.(?:pyx|pxi|py|sh))(?=[`:])",
                           DOC.read_text()))
    assert len(named) > 30
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"docs/ARCHITECTURE.md names modules that do not exist: {missing}"


def test_core_imports_no_layer_above_it() -> None:
    above = ("trustlog.ingest", "trustlog.verifier", "trustlog.services", "trustlog.cli")
    for path in sorted((ROOT / "core").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            bad = [n for n in names if n.startswith(above)]
            assert not bad, f"{path.name} imports {bad}: core/ must not depend on the layers above it"
