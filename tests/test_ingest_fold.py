"""The compiled ingest fold (``ingest/_ingestfold.pxi``: ``IngestFold.apply_record``, the
fast path of ``TrustLog.ingest_batch`` in C over the record body, and
``IngestBatchFold.ingest_image_signed``, that fast path with the record's bytes, the
pre-check's verdicts and the index postings in the same C call) against its
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

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_compiled_fold
from test_record_v2 import image_records, odd_image_records, records, texts
from trustlog.ingest.records import KafkaPosition, LogRecord, encode_record_py
from histories import START, run_op, start
from state_compare import assert_same_state
from test_fast_fold import HISTORY, SETTINGS, _accepted_tags, _envelopes
from test_fast_fold import _ingest as ingest_batches
from trustlog.ingest.records import encode_record_v1


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
    assert a[7] == b[7], what          # every index name and its postings
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


# odd sources too: KafkaPosition does not check its fields when built, so the writer's
# record may carry a partition or offset beyond int64, or a topic no UTF-8 encodes
odd_sources = st.none() | st.builds(
    KafkaPosition, topic=texts | st.sampled_from(["\ud800", "a\udfffb", "t" * 300]),
    partition=st.integers(0, 2**64) | st.integers(-5, -1), offset=st.integers(0, 2**64) | st.integers(-5, -1))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(records, image_records, odd_image_records), odd_sources)
def test_the_one_pass_body_is_what_encode_record_stores(compiled, rec: LogRecord, source) -> None:
    """``ingest_body`` (the record bytes of ``ingest_image_signed``, built in C from the
    log time, the canonical envelope and the source) answers exactly the bytes
    ``records.encode_record`` stores for that record, as v2, or None (the Python path
    then encodes); for an ImageSigned the C encoder takes it always answers."""
    rec = LogRecord(rec.log_time, rec.envelope, source)
    got = compiled.ingest_body(rec.log_time, rec.envelope, rec.source)
    try:
        want = encode_record_py(rec)
    except (msgspec.EncodeError, UnicodeEncodeError, OverflowError):
        assert got is None   # a record that cannot be encoded is never answered
        return
    if got is not None:
        assert got == want and want[:1] == b"\xc1"
    else:
        assert compiled.encode_v2(encode_record_v1(rec)) is None, rec


@pytest.mark.parametrize("log_time", [0, 1, 127, 128, 2**31, 2**63 - 1])
def test_the_one_pass_body_at_the_integer_edges(compiled, log_time: int) -> None:
    """The log time, partition and offset in every MessagePack integer width."""
    from trustlog.core.encoding import canonical_bytes
    from trustlog.core.events import Envelope, ImageSigned, Signature

    env = Envelope(canonical_bytes(ImageSigned("r", 1, 2, "targets", "t", "sha256:" + "ab" * 32, 3, 4)),
                   [Signature("cd" * 32, b"s" * 64)]).to_bytes()
    for n in (0, 5, 200, 70_000, 2**32 + 1, 2**63 - 1):
        for src in (None, KafkaPosition("topic", n, n), KafkaPosition("é" * 40, 0, n)):
            rec = LogRecord(log_time, env, src)
            assert compiled.ingest_body(log_time, env, src) == encode_record_py(rec)
