"""Every Wycheproof vector gives its expected result on both crypto backends.

``valid`` must verify, ``invalid`` must be rejected, and on ``acceptable`` the compiled
and the pure-Python backend must agree. The reference ``crypto_valid`` is checked too.
Under ``CI=true`` a missing compiled backend fails instead of skipping.
"""
from __future__ import annotations

from types import ModuleType

import pytest

import wycheproof
from conftest import load_backend
from trustlog.core.keys import crypto_valid
from trustlog.verifier.backend import load
from trustlog.verifier.crypto_batch import pack_batch

EXPECTED = {"valid": 1, "invalid": 0}


@pytest.fixture(params=["c", "py"])
def backend(request: pytest.FixtureRequest) -> ModuleType:
    return load_backend(request.param)


def _mismatches(vectors: list[wycheproof.Vector], got) -> list[str]:
    return [
        f"{v.id} ({v.result}, {v.comment!r}, {','.join(v.flags)}): got {g}"
        for v, g in zip(vectors, got)
        if v.result in EXPECTED and g != EXPECTED[v.result]
    ]


@pytest.mark.parametrize("name", list(wycheproof.FILES))
@pytest.mark.parametrize("nthreads", [1, 2])
def test_backend_gives_expected_results(backend: ModuleType, name: str, nthreads: int) -> None:
    vectors = list(wycheproof.load(name))
    got = backend.verify_batch(*pack_batch([v.item() for v in vectors]).args(), nthreads=nthreads)
    assert len(got) == len(vectors)
    assert _mismatches(vectors, got) == []


@pytest.mark.parametrize("name", list(wycheproof.FILES))
def test_reference_crypto_valid(name: str) -> None:
    vectors = list(wycheproof.load(name))
    got = [int(crypto_valid(*v.item())) for v in vectors]
    assert _mismatches(vectors, got) == []


def test_backends_agree_on_every_vector_including_acceptable() -> None:
    c = load_backend("c")
    vectors = wycheproof.load_all()
    batch = pack_batch([v.item() for v in vectors]).args()
    got_c, got_py = c.verify_batch(*batch), load("py").verify_batch(*batch)
    assert [v.id for v, a, b in zip(vectors, got_c, got_py) if a != b] == []


def test_loader_reads_every_file() -> None:
    counts = {name: sum(1 for _ in wycheproof.load(name)) for name in wycheproof.FILES}
    assert counts == {
        "ed25519_test.json": 151,
        "ecdsa_secp256r1_sha256_p1363_test.json": 262,
        "ecdsa_secp256r1_sha256_test.json": 484,
        "rsa_pss_2048_sha256_mgf1_32_test.json": 108,
    }
