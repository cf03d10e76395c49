"""Shared fixtures. Tests import helpers (sim, wycheproof, kafka_broker) from this folder."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NoReturn

import pytest

import trustlog.verifier  # noqa: F401  (registers the default signature check for TrustLog(...) in tests)

sys.path.insert(0, os.path.dirname(__file__))

CryptoFn = Callable[[Sequence[tuple[int, bytes, bytes, bytes]]], Sequence[int]]


def require_or_skip(what: str, exc: BaseException | str) -> NoReturn:
    """The one way a test gives up on a missing part (the broker, the compiled verifier,
    notary, the registry, python-tuf, Go, Chromium): under CI=true the test FAILS; elsewhere
    it is skipped with a hint. Called at module level it skips (or fails) the module."""
    msg = f"{what} is not available: {exc}"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{msg} (CI=true: nothing that needs it may be skipped)", pytrace=False)
    pytest.skip(msg, allow_module_level=True)


COMPILED_HINT = "the compiled verifier (build it with `pip install -e .`)"


def require_compiled_verifier() -> ModuleType:
    """``trustlog.verifier.compiled`` once the extension is built, else
    :func:`require_or_skip`."""
    from trustlog.verifier import compiled

    if not compiled.available():
        require_or_skip(COMPILED_HINT, "the extension is not built")
    return compiled


def require_compiled_fold() -> ModuleType:
    """``trustlog.ingest._fastfold`` once it is built, else :func:`require_or_skip`."""
    from trustlog.ingest import fold_backend

    try:
        return fold_backend.load()
    except ImportError as e:
        require_or_skip("the compiled replay fold (build it with `pip install -e .`)", e)


def load_backend(name: str) -> ModuleType:
    """The crypto backend ``name`` (``c`` or ``py``), else :func:`require_or_skip`."""
    from trustlog.verifier.backend import load

    try:
        return load(name)
    except ImportError as e:
        require_or_skip(COMPILED_HINT if name == "c" else f"crypto backend {name!r}", e)


@pytest.fixture(scope="module")
def tr():
    """tests/tuf_repo.py (repositories written with python-tuf); under CI=true a missing
    python-tuf fails the test."""
    try:
        import tuf_repo
    except ImportError as e:
        require_or_skip("python-tuf (pip install 'trustlog[test]')", e)
    return tuf_repo


@pytest.fixture(params=["c", "py"])
def crypto(request: pytest.FixtureRequest) -> CryptoFn:
    """The batch crypto check of one backend: the suite runs against both."""
    from trustlog.verifier.crypto_batch import pack_batch

    mod = load_backend(request.param)

    def check(items: Sequence[tuple[int, bytes, bytes, bytes]]) -> Sequence[int]:
        return mod.verify_batch(*pack_batch(items).args())

    check.backend = request.param  # type: ignore[attr-defined]
    return check


from kafka_broker import kafka_bootstrap  # noqa: E402,F401  (fixture shared by Kafka tests)
from notary_server import notary_url  # noqa: E402,F401  (the real Notary server, for the interop tests)
