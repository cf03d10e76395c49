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


def test_ingest_without_a_registered_crypto_fails_closed(tmp_path, monkeypatch) -> None:
    """`ingest` takes its signature check from above; with none registered and none
    passed, opening a log is an error (never an unchecked log)."""
    import pytest

    from trustlog.core import crypto_hook
    from trustlog.ingest.pipeline import TrustLog

    monkeypatch.setattr(crypto_hook, "_factory", None)
    with pytest.raises(crypto_hook.NoCryptoError, match="no signature check is registered"):
        TrustLog(tmp_path / "log")


def test_the_verifier_package_registers_its_backend_as_the_default() -> None:
    import trustlog.verifier  # noqa: F401
    from trustlog.core.crypto_hook import default_crypto
    from trustlog.verifier.batch import default_crypto as verifier_default

    assert default_crypto().__name__ == verifier_default().__name__
    assert getattr(default_crypto(), "backend", None) == getattr(verifier_default(), "backend", None)
