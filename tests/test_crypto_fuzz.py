"""The structure-aware differential fuzz, small enough for the suite.

The same strategies as ``scripts/fuzz_crypto_differential.py`` (which runs a million
inputs outside CI time): keys and signatures of every type built from their parts and
mutated, through both backends. Every item gives the same byte on both, never ERROR,
and a valid verdict only ever comes for a key in its one accepted encoding (or, for
Ed25519, a point libsodium takes, which the fold then refuses unless canonical and of
prime order).
"""
from __future__ import annotations

import os
import random
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crypto_strategies as cs
from conftest import load_backend
from trustlog.core.keyparse import material
from trustlog.core.keys import ALG_BY_KEYTYPE
from trustlog.verifier.backend import load
from trustlog.verifier.crypto_batch import pack_batch

os.environ.setdefault("TRUSTLOG_FUZZ_BIG_RSA", "0")  # keep the suite's key generation short
_TYPE_OF_ALG = {alg: kt for kt, alg in ALG_BY_KEYTYPE.items()}


@pytest.fixture(scope="module")
def c() -> ModuleType:
    return load_backend("c")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(items=st.lists(cs.crypto_item(), min_size=1, max_size=8), salt=st.integers(0, 2**32 - 1))
def test_structured_inputs_agree_on_both_backends(c: ModuleType, items: list[cs.Item], salt: int) -> None:
    rng = random.Random(salt)
    batch = [v for it in items for v in cs.byte_variants(it, rng, 4)]
    args = pack_batch(batch).args()
    got_c, got_py = c.verify_batch(*args, nthreads=2), load("py").verify_batch(*args, nthreads=1)
    assert [i for i, (a, b) in enumerate(zip(got_c, got_py)) if a != b] == []
    assert 2 not in got_c
    for (alg, key, _, _), v in zip(batch, got_c):
        if v == 1:
            assert material(_TYPE_OF_ALG[alg], key) is not None
