"""The ingest fold's fast path (``TrustLog._fast_fold_ok`` → ``TrustedFold.apply`` for an
``ImageSigned`` whose role signatures the pre-check found valid) against the validating
fold alone (``TrustState.apply`` for every event, ``fast_fold = False``).

Hypothesis builds histories of two repositories (``tests/histories.py``: delegations,
rotations, removals, compromise reports, tags signed by members and outsiders, forged
signatures, duplicate signatures, replays, stale versions, events with one bad field).
Every envelope submitted is ingested, in batches of varied sizes, prepared ahead the way
the Kafka worker does it (batch N+1 pre-checked before batch N is folded) or not at all,
once with the fast path and once without: the same fates (accepted at the same offsets,
rejected with the same reason and detail), the same records and rejects, the same state.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from histories import OPS, REFUSED_OPS, START, run_op, start
from sim import Sim
from state_compare import assert_same_state
from trustlog.core.events import ImageSigned, decode_event
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.records import KafkaPosition, LogClock

HISTORY = st.lists(st.one_of(OPS, OPS, REFUSED_OPS), min_size=10, max_size=60)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _envelopes(setup: dict, ops: list[tuple]) -> list[bytes]:
    h = Sim()
    start(h, **setup)
    for op in ops:
        if op[0] != "check":
            run_op(h, op)
    return [s.env.to_bytes() for s in h.trace]


def _ingest(directory: Path, raws: list[bytes], sizes: list[int], ahead: bool, fast: bool,
            fold: str | None = None) -> tuple:
    """Ingest ``raws`` in batches of ``sizes`` (cycled); with ``ahead``, each batch is
    prepared before the previous one is folded (as the Kafka worker does). ``fold`` picks
    which twin takes the fast path ("c" or "py"; default: the selected backend's).
    Returns (fates, records, rejects, state, fast-folded count, Merkle root,
    compiled-folded count, every index name (in id order) with its postings)."""
    with TrustLog(directory, clock=LogClock(lambda: 0), checkpoint_every=None, snapshot_every=None) as tl:
        tl.fast_fold = fast
        if fold is not None:
            tl.ingest_fold = fold
        batches, i, k = [], 0, 0
        while i < len(raws):
            n = sizes[k % len(sizes)]
            batches.append([(r, KafkaPosition("t", 0, i + j)) for j, r in enumerate(raws[i:i + n])])
            i, k = i + n, k + 1
        fates = []
        prepared = tl.prepare(batches[0]) if ahead and batches else None
        for b, batch in enumerate(batches):
            nxt = tl.prepare(batches[b + 1]) if ahead and b + 1 < len(batches) else None
            fates += tl.ingest_batch(batch, prepared).fates
            prepared = nxt
        records = list(tl.log.scan(0))
        rejects = [(r.reason, r.detail, r.raw) for r in tl.rejects]
        return (fates, records, rejects, tl.state, tl.fast_folded, tl.tree.merkle.root(), tl.compiled_folded,
                [(name, list(tl.index.postings(name))) for name in tl.index.names])


@settings(max_examples=120, **SETTINGS)
@given(setup=START, ops=HISTORY, sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4), ahead=st.booleans())
def test_the_fast_path_decides_as_the_validating_fold(setup: dict, ops: list[tuple], sizes: list[int],
                                                       ahead: bool) -> None:
    raws = _envelopes(setup, ops)
    with tempfile.TemporaryDirectory() as d:
        fast = _ingest(Path(d) / "fast", raws, sizes, ahead, True)
        slow = _ingest(Path(d) / "slow", raws, sizes, ahead, False)
    assert fast[0] == slow[0]          # fates: status, offsets, reasons, details
    assert fast[1:3] == slow[1:3]      # records and rejects, byte for byte
    assert fast[5] == slow[5]          # Merkle root
    assert fast[7] == slow[7]          # every index name and its postings
    assert_same_state(fast[3], slow[3], "fast path vs TrustState.apply")
    assert slow[4] == 0
    assert fast[4] <= _accepted_tags(fast[0], raws)  # only accepted ImageSigned events take it


def _accepted_tags(fates: list, raws: list[bytes]) -> int:
    """Accepted ``ImageSigned`` inputs (redeliveries included: they are answered, not folded)."""
    return sum(f.status == "accepted" and type(decode_event(_payload(r))) is ImageSigned for f, r in zip(fates, raws))


def _payload(raw: bytes) -> bytes:
    from trustlog.core.events import decode_envelope

    return decode_envelope(raw).payload


def test_the_fast_path_is_taken_and_rejects_keep_their_reasons(tmp_path: Path) -> None:
    """A fixed history: most signed tags take the fast path; forged, outsider, stale and
    odd tags are still refused, each with the validating fold's reason."""
    import random

    from test_trusted_fold import random_op

    from histories import A1, A2, T1, T2
    from sim import FAR

    rng = random.Random(7)
    h = Sim()
    start(h, 1, [T1, T2], FAR, [A1, A2], 1)
    for _ in range(300):
        run_op(h, random_op(rng))
    raws = [s.env.to_bytes() for s in h.trace]
    fast = _ingest(tmp_path / "fast", raws, [7, 1, 30], True, True)
    slow = _ingest(tmp_path / "slow", raws, [7, 1, 30], True, False)
    assert fast[0] == slow[0] and fast[1:3] == slow[1:3] and fast[5] == slow[5]
    assert_same_state(fast[3], slow[3])
    accepted_tags = _accepted_tags(fast[0], raws)
    assert fast[4] >= accepted_tags * 0.8 > 10, (fast[4], accepted_tags)
    reasons = {f.reason for f in fast[0] if f.status == "rejected"}
    assert {"BAD_SIGNATURE", "VERSION_ROLLBACK", "OUTSIDE_PATTERNS"} <= reasons, reasons
