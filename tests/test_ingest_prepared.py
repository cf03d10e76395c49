"""A batch decoded and pre-verified ahead (``TrustLog.prepare``) is ingested exactly as
the same batch decoded inside ``ingest_batch``: the same records, byte for byte, the same
rejects with the same reasons, the same fates, the same state and tree.

The Kafka worker prepares batch N+1 on a background thread while batch N is folded; the
inputs below mix everything a topic can carry (MessagePack and JSON envelopes, garbage,
oversized messages, forged signatures, rollbacks, redeliveries within and across
batches), drawn by hypothesis.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import require_compiled_fold
from sim import DIGEST, FAR, key
from trustlog.core.events import (
    Envelope, ImageSigned, RepoCreated, RoleKeysSet, Signature, decode_wire, envelope_to_json, sign_event,
)
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.records import KafkaPosition, LogClock, decode_record

REPO = "registry.example.com/team/prep"
R, T, CI = key("prep-root"), key("prep-targets"), key("prep-ci")


def _pool() -> list[bytes]:
    """Inputs to draw from: a history and its incidents, in several wire forms."""
    created = sign_event(RepoCreated(REPO, 1, 0, [R.public_key], 1, [T.public_key], 1, FAR), [R])
    ci = sign_event(RoleKeysSet(REPO, 2, 0, "targets/ci", [CI.public_key], 1, FAR, ["build-*"]), [T])
    tags = [sign_event(ImageSigned(REPO, 3 + i, 0, "targets", f"v{i}", DIGEST, 1, FAR), [T]) for i in range(4)]
    ci_tag = sign_event(ImageSigned(REPO, 8, 0, "targets/ci", "build-1", DIGEST, 1, FAR), [CI])
    outside = sign_event(ImageSigned(REPO, 9, 0, "targets/ci", "latest", DIGEST, 1, FAR), [CI])
    good = sign_event(ImageSigned(REPO, 10, 0, "targets", "forged", DIGEST, 1, FAR), [T])
    sig = bytearray(good.signatures[0].sig)
    sig[3] ^= 1
    forged = Envelope(good.payload, [Signature(T.keyid, bytes(sig))])
    rollback = sign_event(ImageSigned(REPO, 3, 0, "targets", "v0", "sha256:" + "ab" * 32, 1, FAR), [T])
    out = [e.to_bytes() for e in (created, ci, *tags, ci_tag, outside, forged, rollback)]
    out += [envelope_to_json(tags[1]), envelope_to_json(created)]   # the same events as JSON
    out += [b"", b"\x93\x01\x02", b"{not json", b"\x00" * (70 * 1024)]
    return out


POOL = _pool()


def _run(directory: Path, batches: list[list[int]], prepared: bool, crypto) -> tuple:
    clock = LogClock(now_ns=lambda: 1_000)  # the same log times for both runs
    with TrustLog(directory, crypto=crypto, clock=clock, checkpoint_every=None, snapshot_every=None) as tl:
        fates = []
        offset = 0
        for batch in batches:
            raws = []
            for i in batch:
                raws.append((POOL[i], KafkaPosition("events", 0, offset)))
                offset += 1
            prep = tl.prepare(raws) if prepared else None
            res = tl.ingest_batch(raws, prep)
            for (raw, _), f in zip(raws, res.fates, strict=True):
                if f.status == "accepted" and f.source == f.stored_source:  # stored from this very input
                    env = decode_wire(raw)
                    assert f.event_id == env.event_id
                    assert decode_record(tl.log.read(f.log_offset)).envelope == env.to_bytes()
            fates.append([(f.status, f.event_id, f.log_offset, f.reason, f.detail, f.source, f.stored_source)
                          for f in res.fates])
        records = [tl.log.read(o) for o in range(tl.log.next_offset)]
        rejects = [body for _, body in tl.rejects.log.scan()]
        tags = {t: (e.digest, e.offset) for r in tl.state.repos.values() for t, e in r.tags.items()}
        return fates, records, rejects, tags, tl.tree.merkle.root(), tl.state.version


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=12), min_size=1, max_size=4))
def test_prepared_batches_ingest_exactly_as_unprepared(batches: list[list[int]], crypto) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        assert _run(Path(a), batches, True, crypto) == _run(Path(b), batches, False, crypto)


def test_event_id_is_the_hash_of_the_canonical_envelope(tmp_path: Path) -> None:
    """A JSON input is stored (and identified) by its canonical MessagePack form."""
    created = sign_event(RepoCreated(REPO, 1, 0, [R.public_key], 1, [T.public_key], 1, FAR), [R])
    with TrustLog(tmp_path) as tl:
        raws = [(envelope_to_json(created), None)]
        res = tl.ingest_batch(raws, tl.prepare(raws))
        assert res.fates[0].event_id == created.event_id == hashlib.sha256(created.to_bytes()).hexdigest()
        assert decode_record(tl.log.read(0)).envelope == created.to_bytes()


def test_a_prepared_batch_of_other_inputs_or_another_log_is_not_used(tmp_path: Path) -> None:
    created = sign_event(RepoCreated(REPO, 1, 0, [R.public_key], 1, [T.public_key], 1, FAR), [R]).to_bytes()
    with TrustLog(tmp_path / "a") as a, TrustLog(tmp_path / "b") as b:
        prep = a.prepare([(b"garbage", None)])
        raws = [(created, None)]
        assert a.ingest_batch(raws, prep).accepted == 1          # another list: decoded afresh
        assert b.ingest_batch(raws, a.prepare(raws)).accepted == 1
        assert b.log.next_offset == 1                               # another log's: decoded afresh


def _run_fold(directory: Path, batches: list[list[int]], fold: str, crypto) -> tuple:
    clock = LogClock(now_ns=lambda: 1_000)
    with TrustLog(directory, crypto=crypto, clock=clock, checkpoint_every=None, snapshot_every=None) as tl:
        tl.ingest_fold = fold
        out = []
        offset = 0
        for batch in batches:
            raws = []
            for i in batch:
                raws.append((POOL[i], KafkaPosition("events", offset % 2, offset)))
                offset += 1
            res = tl.ingest_batch(raws, tl.prepare(raws))
            out.append((res.fates, dict(res.last_positions), res.accepted, res.rejected, res.duplicates,
                        dict(res.reasons), dict(res.rejected_items)))
        records = [tl.log.read(o) for o in range(tl.log.next_offset)]
        rejects = [body for _, body in tl.rejects.log.scan()]
        return out, records, rejects, tl.tree.merkle.root(), tl.state.version, tl.clock.last, dict(tl.positions)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=12), min_size=1, max_size=4))
def test_the_compiled_run_does_what_the_python_loop_does(batches: list[list[int]], crypto) -> None:
    """On the compiled fold a run of fast-path ImageSigned goes through one C call
    (``IngestBatchFold.ingest_run``); with the Python fold, the loop of
    ``_ingest_decoded`` does each input: the same fates, positions, counts, records,
    rejects, tree, state version and log times, over inputs from two partitions that mix
    every kind (redeliveries within and across batches included)."""
    require_compiled_fold()   # ingest_fold="c" loads it even under TRUSTLOG_PUREPYTHON=1
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        assert _run_fold(Path(a), batches, "c", crypto) == _run_fold(Path(b), batches, "py", crypto)
