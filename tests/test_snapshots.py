"""Snapshots and replay: a restart from a snapshot equals a full replay, the state at a
past offset or log time gives the verdicts of then, and nothing untrustworthy on disk
(a damaged snapshot, a crashed tree) changes the state."""
from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from logtools import CI, REPO_A, TARGETS_A, history
from sim import DIGEST, FAR
from trustlog.cli.main import main as cli
from trustlog.core.evaluate import Request
from trustlog.core.events import ImageSigned, KeyCompromised, RoleRemoved, sign_event
from trustlog.ingest.logcheck import verify_log
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.history import state_at
from trustlog.ingest.replay import fold_log
from trustlog.ingest.snapshots import encode_state
from trustlog.ingest.synthetic import SyntheticRegistry
from trustlog.verifier.batch import BatchVerifier

REF = 1_900_000_000


def _verdict(state, repo: str, tag: str) -> str:
    return BatchVerifier(state, ref_time=REF).verify_all([Request(repo, tag)])[0].code


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("synth")
    reg = SyntheticRegistry(repos=24, tags=480, ref_time=REF)
    with TrustLog(d, checkpoint_every=100, snapshot_every=150, snapshot_keep=2) as tl:
        tl.ingest(((e.to_bytes(), None) for e in reg.phase1()), batch_size=64)
        since = tl.clock.last + 1
        tl.ingest(((e.to_bytes(), None) for e in reg.phase2(since)), batch_size=64)
    return d


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_snapshot_restart_equals_full_replay(synth: Path, tmp_path: Path) -> None:
    snaps = sorted((synth / "snapshots").glob("*.snap"))
    assert 1 <= len(snaps) <= 3                         # pruned to the newest automatic ones (+ the close one)
    with TrustLog(synth) as tl:
        assert tl.opened_with["snapshot"] > 0 and tl.opened_with["verified"] == 0
        restarted = encode_state(tl.state)
        n = tl.log.next_offset
    # the same log with no snapshot: trusted fold from 0
    nosnap = _copy(synth, tmp_path / "nosnap")
    shutil.rmtree(nosnap / "snapshots")
    with TrustLog(nosnap) as tl:
        assert tl.opened_with == {"snapshot": 0, "trusted": n, "verified": 0, "indexed": 0}
        assert encode_state(tl.state) == restarted
    # no tree, no checkpoint, no snapshot: every signature verified again, as at ingest
    bare = _copy(synth, tmp_path / "bare")
    for sub in ("snapshots", "merkle", "index"):
        shutil.rmtree(bare / sub)
    with TrustLog(bare) as tl:
        assert tl.opened_with["verified"] == n and tl.opened_with["indexed"] == n
        assert encode_state(tl.state) == restarted
    # and the library's plain fold
    assert encode_state(fold_log(synth)) == restarted
    # log verify compares every snapshot with the validating fold at its offset
    r = verify_log(synth)
    assert r.ok and r.snapshots_verified == len(list((synth / "snapshots").glob("*.snap")))


def test_damaged_or_foreign_snapshots_are_skipped(synth: Path, tmp_path: Path) -> None:
    d = _copy(synth, tmp_path / "d")
    with TrustLog(d) as tl:
        want = encode_state(tl.state)
    newest = sorted((d / "snapshots").glob("*.snap"))[-1]
    data = bytearray(newest.read_bytes())
    data[-10] ^= 0xFF                                   # body no longer matches its signed digest
    newest.write_bytes(bytes(data))
    with TrustLog(d) as tl:
        assert any("digest" in s for s in tl.snapshots.skipped)
        assert tl.opened_with["snapshot"] < int(newest.stem)
        assert encode_state(tl.state) == want
    assert not verify_log(d).ok                          # the audit reports it
    # a snapshot signed by another log's key is never used
    other = _copy(synth, tmp_path / "other")
    for f in ("log.key", "log.pub"):
        (other / f).unlink()
    shutil.rmtree(other / "merkle")
    with TrustLog(other) as tl:                          # a new identity: re-verifies everything
        assert tl.opened_with["snapshot"] == 0
        assert any("another key" in s for s in tl.snapshots.skipped) or not list((other / "snapshots").glob("*"))


def test_state_and_verdicts_at_a_past_offset_and_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = history(4)
    with TrustLog(tmp_path, snapshot_every=None) as tl:
        tl.ingest_batch([(e.to_bytes(), None) for e in events])
        t_signed = tl.clock.last
        off_signed = tl.log.next_offset
        repo = tl.state.repos[REPO_A]
        v = repo.version
        tl.ingest_batch([(sign_event(RoleRemoved(REPO_A, v + 1, 0, "targets/ci"), [TARGETS_A]).to_bytes(), None)])
        off_removed = tl.log.next_offset
        tl.snapshot()
        tl.ingest_batch([(sign_event(ImageSigned(REPO_A, v + 2, 0, "targets", "late", DIGEST, 1, FAR),
                                     [TARGETS_A]).to_bytes(), None)])
        since = tl.clock.last
        tl.ingest_batch([(sign_event(KeyCompromised(REPO_A, v + 3, 0, TARGETS_A.keyid, since), [TARGETS_A]).to_bytes(),
                          None)])
        now = tl.state
        assert _verdict(now, REPO_A, "build-1") == "ROLE_REMOVED"
        assert _verdict(now, REPO_A, "late") == "KEY_COMPROMISED"
        then = tl.state_at(offset=off_signed)
        assert then.version == off_signed
        assert _verdict(then, REPO_A, "build-1") == "VALID"
        assert _verdict(then, REPO_A, "late") == "UNKNOWN_TAG"
        mid = tl.state_at(offset=off_removed + 1)     # from the snapshot at off_removed
        assert _verdict(mid, REPO_A, "late") == "VALID" and _verdict(mid, REPO_A, "build-1") == "ROLE_REMOVED"
        assert encode_state(tl.state_at(log_time=t_signed)) == encode_state(then)
        assert tl.state_at(log_time=0).version == 0
        assert tl.state_at() is tl.state
    assert encode_state(state_at(tmp_path, offset=off_signed)) == encode_state(then)
    # the CLI: state --at and replay verify --at
    assert cli(["state", "--log", str(tmp_path), REPO_A, "--at", str(off_signed), "--json"]) == 0
    info = msgspec.json.decode(capsys.readouterr().out)
    assert info["state_version"] == off_signed and "targets/ci" in {r["role"] for r in info["roles"]}
    reqs = tmp_path / "reqs.jsonl"
    reqs.write_text('{"repo": "%s", "tag": "build-1"}\n' % REPO_A)
    out = tmp_path / "verdicts.jsonl"
    assert cli(["replay", "verify", "--log", str(tmp_path), str(reqs), "--at", str(off_signed), "-o", str(out),
                "--ref-time", "2030-01-01T00:00:00Z"]) == 0
    assert msgspec.json.decode(out.read_bytes().splitlines()[0])["code"] == "VALID"
    assert cli(["replay", "verify", "--log", str(tmp_path), str(reqs), "--at", f"ns:{since}", "-o", str(out)]) == 0
    assert msgspec.json.decode(out.read_bytes().splitlines()[0])["code"] == "ROLE_REMOVED"


def _crash(tl: TrustLog) -> None:
    """Stop like a killed process: what was written stays, nothing is finalised."""
    tl.index.close()
    tl.tree.merkle.close(fsync=False)   # leaves past the last checkpoint reach the disk
    tl.rejects.close()
    tl.log.close()
    tl._closed = True


def test_crash_after_the_last_checkpoint(tmp_path: Path) -> None:
    events = history(20)
    tl = TrustLog(tmp_path, checkpoint_every=10, snapshot_every=None)
    for i in range(0, len(events), 4):
        tl.ingest_batch([(e.to_bytes(), None) for e in events[i:i + 4]])
    want = encode_state(tl.state)
    n = tl.log.next_offset
    cp = tl.tree.latest()[1].tree_size
    assert cp < n
    _crash(tl)
    with TrustLog(tmp_path) as tl:
        assert tl.opened_with["trusted"] == cp and tl.opened_with["verified"] == n - cp
        assert encode_state(tl.state) == want
        assert tl.tree.latest()[1].tree_size == n      # re-verified, then checkpointed
    assert verify_log(tmp_path).ok


def test_torn_log_tail_cuts_the_tree_back(tmp_path: Path) -> None:
    events = history(20)
    tl = TrustLog(tmp_path, checkpoint_every=8, snapshot_every=None)
    for i in range(0, len(events), 4):
        tl.ingest_batch([(e.to_bytes(), None) for e in events[i:i + 4]])
    n = tl.log.next_offset
    _crash(tl)
    seg = sorted((tmp_path / "log").glob("*.seg"))[0]
    seg.write_bytes(seg.read_bytes()[:-5])              # the last record is torn
    with TrustLog(tmp_path) as tl:
        assert tl.log.next_offset == n - 1 and tl.tree.merkle.size == n - 1
        assert tl.index.covered == n - 1
        # the lost event can be ingested again
        r = tl.ingest_batch([(events[-1].to_bytes(), None)])
        assert r.accepted == 1
    assert verify_log(tmp_path).ok


def test_redelivery_after_a_snapshot_restart_is_a_duplicate(tmp_path: Path) -> None:
    """Event ids before a snapshot are not kept in memory: a redelivered old event is
    still recognised (by the repository index), not rejected."""
    events = history(6)
    with TrustLog(tmp_path) as tl:
        tl.ingest_batch([(e.to_bytes(), None) for e in events])
        tl.snapshot()
    with TrustLog(tmp_path) as tl:
        assert tl.opened_with["snapshot"] == len(events) and not tl.event_ids
        r = tl.ingest_batch([(e.to_bytes(), None) for e in events])
        assert (r.accepted, r.rejected, r.duplicates) == (0, 0, len(events))
        forged = sign_event(ImageSigned(REPO_A, 3, 0, "targets", "v0", "sha256:" + "11" * 32, 1, FAR), [TARGETS_A])
        r = tl.ingest_batch([(forged.to_bytes(), None)])   # same version, different event: a real rollback
        assert r.reasons == {"VERSION_ROLLBACK": 1}


def test_cli_snapshot_create_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with TrustLog(tmp_path, snapshot_every=None) as tl:
        tl.ingest_batch([(e.to_bytes(), None) for e in history(3)])
    assert cli(["snapshot", "create", "--log", str(tmp_path), "--at", "4"]) == 0
    assert cli(["snapshot", "list", "--log", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert [s["offset"] for s in msgspec.json.decode(out)["snapshots"]] == [4]
    with TrustLog(tmp_path) as tl:
        assert tl.state_at(offset=5).version == 5
    assert CI.keyid  # (keys used by the history helper)
