"""Shared fixtures. Tests import helpers (sim, wycheproof, kafka_broker) from this folder."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import pytest

import trustlog.verifier  # noqa: F401  (registers the default signature check for TrustLog(...) in tests)

sys.path.insert(0, os.path.dirname(__file__))

CryptoFn = Callable[[Sequence[tuple[int, bytes, bytes, bytes]]], Sequence[int]]


def require_or_skip(what: str, exc: BaseException) -> None:
    """Under CI=true a missing part fails the test; elsewhere it is skipped with a hint."""
    msg = f"{what} is not available: {exc}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{msg} (CI=true: nothing that needs it may be skipped)", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def tr():
    """tests/tuf_repo.py (repositories written with python-tuf); under CI=true a missing
    python-tuf fails the test."""
    try:
        import tuf_repo
    except ImportError as e:
        require_or_skip("python-tuf (pip install 'trustlog[test]')", e)
        raise
    return tuf_repo


@pytest.fixture(params=["c", "py"])
def crypto(request: pytest.FixtureRequest) -> CryptoFn:
    """The batch crypto check of one backend: the suite runs against both."""
    from trustlog.verifier.backend import load
    from trustlog.verifier.crypto_batch import pack_batch

    try:
        mod = load(request.param)
    except ImportError as e:
        require_or_skip("the compiled verifier (build it with `pip install -e .`)", e)
        raise

    def check(items: Sequence[tuple[int, bytes, bytes, bytes]]) -> Sequence[int]:
        return mod.verify_batch(*pack_batch(items).args())

    check.backend = request.param  # type: ignore[attr-defined]
    return check


from kafka_broker import kafka_bootstrap  # noqa: E402,F401  (fixture shared by Kafka tests)
from notary_server import notary_url  # noqa: E402,F401  (the real Notary server, for the interop tests)
