"""The replay benchmark's log generator (benchmarks/replay.py): signing split between
processes and appending through the log's own parts must still make a real log, the
same one whoever signed it, that `log verify` passes in full and whose state is the
validating fold's."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from trustlog.core.events import ImageSigned, RepoCreated, RoleKeysSet, decode_envelope, sign_event
from trustlog.core.state import TrustState
from trustlog.ingest.logcheck import verify_log
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.records import decode_record
from trustlog.ingest.segment_log import SegmentLog
from trustlog.ingest.snapshots import encode_state

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import replay as bench  # noqa: E402

N = 3_000  # 15 repositories: 30 set-up events, then 198 rounds of re-signed tags


def _envelopes(d: Path) -> list[bytes]:
    log = SegmentLog.open(d / "log", create=False, read_only=True)
    try:
        return [decode_record(body).envelope for _, body in log.scan(0)]
    finally:
        log.close()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[int, Path]:
    """The same log made with signing in this process and in one other."""
    out = {}
    for workers in (0, 1):
        d = tmp_path_factory.mktemp(f"gen{workers}")
        info = bench.generate(d, N, progress=False, workers=workers, batch=500)
        assert info["events"] == N and info["since"] is not None
        out[workers] = d
    return out


def test_the_log_does_not_depend_on_who_signed(generated) -> None:
    assert _envelopes(generated[0]) == _envelopes(generated[1])


def test_the_plan_is_the_original_sequence() -> None:
    """Event i of the plan is what the original generator's loop made i-th."""
    plan = bench.Plan(N)
    n_repos = plan.repos
    want = []
    repos = []
    for i in range(n_repos):
        name = plan.name(i)
        targets, signer = plan.targets(i), plan.ci[i % len(plan.ci)]
        root = bench.SigningKey.from_seed(f"{plan.seed}/{i}/root".encode())
        repos.append([name, targets, signer, 2])
        want.append(sign_event(RepoCreated(name, 1, 1_700_000_000, [root.public_key], 1, [targets.public_key], 1,
                                           bench.FAR), [root]))
        want.append(sign_event(RoleKeysSet(name, 2, 1_700_000_000, "targets/ci", [signer.public_key], 1, bench.FAR,
                                           ["build-*"]), [targets]))
    rnd = 0
    while len(want) < N:
        for r in repos:
            if len(want) >= N:
                break
            name, targets, signer, v = r
            v += 1
            r[3] = v
            k = (rnd * 7 + v) % bench.TAGS_PER_REPO
            digest = "sha256:" + hashlib.sha256(f"{name}:{v}".encode()).hexdigest()
            if v % 4:
                ev = ImageSigned(name, v, 1_700_000_000 + v, "targets/ci", f"build-{k}", digest, 1000 + v, bench.FAR)
                want.append(sign_event(ev, [signer]))
            else:
                ev = ImageSigned(name, v, 1_700_000_000 + v, "targets", f"v1.{k}", digest, 1000 + v, bench.FAR)
                want.append(sign_event(ev, [targets]))
        rnd += 1
    assert [plan.envelope(i).to_bytes() for i in range(N)] == [e.to_bytes() for e in want]


def test_log_verify_passes_and_the_state_is_the_validating_folds(generated) -> None:
    d = generated[1]
    report = verify_log(d)
    assert report.ok and not report.findings, report.findings
    assert report.records == N and report.signatures_verified == N
    with TrustLog(d) as tl:  # opened as written: trusted replay from the checkpoint
        trusted = encode_state(tl.state)
        assert tl.opened_with["trusted"] == N and not tl.notices
    # the validating fold over the same records, every signature checked
    state = TrustState()
    log = SegmentLog.open(d / "log", create=False, read_only=True)
    try:
        for off, body in log.scan(0):
            rec = decode_record(body)
            state.apply(decode_envelope(rec.envelope), log_time=rec.log_time, offset=off)
    finally:
        log.close()
    assert encode_state(state) == trusted


def test_log_bytes_accounts_for_every_stored_byte(generated, capsys) -> None:
    """benchmarks/log_bytes.py: its stored figure is the segment files' size, the fields of
    the records it splits add up to their framed size, and neither floor is above what is
    stored (the v2 records here are ImageSigned fields except the set-up events)."""
    import json

    import log_bytes

    d = generated[0]
    assert log_bytes.main(["--log", str(d), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    seg_bytes = sum(f.stat().st_size for f in (d / "log").glob("*.seg"))
    assert out["records"] == N
    assert round(seg_bytes / N, 1) == out["bytes_per_event"]
    assert out["format_counts"] == {"v2": N}
    assert out["records_counted_whole"] == 30  # the RepoCreated and RoleKeysSet of 15 repositories
    fields = out["image_signed_field_bytes"]
    assert fields["frame"] == 8.0 and fields["digest"] == 34.0 and fields["signatures"] == 66.0
    assert fields["headers"] == 5.0  # marker, the record's, signatures', signature's and event's array headers
    assert out["floor_with_references_bytes_per_event"] < out["floor_self_contained_bytes_per_event"]
    assert out["floor_self_contained_bytes_per_event"] < out["bytes_per_event"] < out["v1_bytes_per_event"]
    assert out["distinct_repos"] == 15


def test_log_bytes_splits_fields_to_their_framed_size(generated) -> None:
    """Per record, what is left after the fields is exactly the MessagePack array headers
    (one signature: the marker and four one-byte headers), and the floor is below it."""
    import log_bytes

    log = SegmentLog.open(generated[0] / "log", create=False, read_only=True)
    try:
        for _, body in log.scan(0):
            t = log_bytes.Tally()
            t.add(body)
            if t.whole:
                assert t.whole_bytes == 8 + len(body)
            else:
                assert t.fields["headers"] == 5
                assert t.floor_alone < 8 + len(body)
    finally:
        log.close()
