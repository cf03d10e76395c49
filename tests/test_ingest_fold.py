"""The compiled ingest fold (``ingest/_ingestfold.pxi``: ``IngestFold.apply_record``, the
fast path of ``TrustLog.ingest_batch`` in C over the record body) against its
pure-Python twin (``TrustedFold.apply``) and the validating fold alone (``fast_fold =
False``: ``TrustState.apply`` for every event).

The same hypothesis histories as ``test_fast_fold`` (delegations, rotations, removals,
compromise reports, outsiders, forged and duplicate signatures, replays, stale versions,
events with one bad field), ingested in batches of varied sizes, prepared ahead or not:
the three give the same fates (accepted at the same offsets, rejected with the same
reason and detail), the same records, rejects and Merkle root, and equal states. The
compiled fold only ever applies what the Python fold would; a record it does not take
goes to the Python fold, so every divergence found here is a fast-path bug.
"""
from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_compiled_fold
from histories import START, run_op, start
from state_compare import assert_same_state
from test_fast_fold import HISTORY, SETTINGS, _accepted_tags, _envelopes
from test_fast_fold import _ingest as ingest_batches


@pytest.fixture(scope="module", autouse=True)
def compiled():
    return require_compiled_fold()


def _ingest(directory: Path, raws: list[bytes], sizes: list[int], ahead: bool, fold: str | None) -> tuple:
    """test_fast_fold's ingest with the fast path folded by ``fold`` ("c" or "py";
    None: no fast path)."""
    return ingest_batches(directory, raws, sizes, ahead, fold is not None, fold or "py")


def _same(a: tuple, b: tuple, what: str) -> None:
    assert a[0] == b[0], what          # fates: status, offsets, reasons, details
    assert a[1:3] == b[1:3], what      # records and rejects, byte for byte
    assert a[5] == b[5], what          # Merkle root
    assert a[7] == b[7], what          # index postings
    assert_same_state(a[3], b[3], what)


@settings(max_examples=100, **SETTINGS)
@given(setup=START, ops=HISTORY, sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4), ahead=st.booleans())
def test_the_compiled_ingest_fold_decides_as_its_twin_and_the_validating_fold(
        setup: dict, ops: list[tuple], sizes: list[int], ahead: bool) -> None:
    raws = _envelopes(setup, ops)
    with tempfile.TemporaryDirectory() as d:
        c = _ingest(Path(d) / "c", raws, sizes, ahead, "c")
        py = _ingest(Path(d) / "py", raws, sizes, ahead, "py")
        slow = _ingest(Path(d) / "slow", raws, sizes, ahead, None)
    _same(c, py, "compiled ingest fold vs TrustedFold")
    _same(c, slow, "compiled ingest fold vs TrustState.apply")
    assert c[4] == py[4]                       # the same events took the fast path
    assert c[6] <= c[4] and py[6] == slow[6] == slow[4] == 0


def test_the_compiled_ingest_fold_takes_most_signed_tags(tmp_path: Path) -> None:
    """A fixed history of 300 operations: most accepted signed tags are applied by the
    compiled fold itself, and the logs are the same as with the Python fold."""
    from histories import A1, A2, T1, T2
    from sim import FAR, Sim
    from test_trusted_fold import random_op

    rng = random.Random(11)
    h = Sim()
    start(h, 1, [T1, T2], FAR, [A1, A2], 1)
    for _ in range(300):
        run_op(h, random_op(rng))
    raws = [s.env.to_bytes() for s in h.trace]
    c = _ingest(tmp_path / "c", raws, [7, 1, 30], True, "c")
    py = _ingest(tmp_path / "py", raws, [7, 1, 30], True, "py")
    _same(c, py, "compiled ingest fold vs TrustedFold")
    accepted_tags = _accepted_tags(c[0], raws)
    assert c[6] >= accepted_tags * 0.7 > 10, (c[6], c[4], accepted_tags)
