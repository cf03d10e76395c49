"""Read-only views (ingest/view.py): they open beside the writer, follow what it appends
(also from another process, across segments, with a write in progress at the end) and
never write a byte."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from logtools import CI, REPO_A, REPO_B, TARGETS_A, history
from sim import DIGEST, FAR
from trustlog.core.events import ImageSigned, KeyCompromised, envelope_to_json, sign_event
from trustlog.core.errors import LogError
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.snapshots import encode_state
from trustlog.ingest.view import LogView, ViewSet, audit_source, read_record
from trustlog.services.audit import audit_key

PY = sys.executable


def _tree_digest(d: Path) -> dict[str, str]:
    """Every file under ``d`` with its content hash and mode: what "never writes" means."""
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
    return out


def _make_log(d: Path, envs, **kw) -> None:
    with TrustLog(d, **kw) as tl:
        r = tl.ingest_batch([(e.to_bytes(), None) for e in envs])
        assert r.rejected == 0


def _tags(version_from: int, n: int, prefix: str = "late"):
    return [sign_event(ImageSigned(REPO_A, version_from + i, 0, "targets", f"{prefix}-{i}", DIGEST, 1, FAR),
                       [TARGETS_A]) for i in range(n)]


def test_view_state_equals_the_writers_and_writes_nothing(tmp_path):
    envs = history(40)
    _make_log(tmp_path, envs)
    with TrustLog(tmp_path) as tl:
        tl.snapshot()
        want = encode_state(tl.state)
        want10 = encode_state(tl.state_at(offset=10))
    before = _tree_digest(tmp_path)
    with LogView(tmp_path) as v:
        assert v.snapshot_used == len(envs)
        assert encode_state(v.state) == want
        assert encode_state(v.state_at(offset=10)) == want10
        report = audit_key(audit_source(v), CI.keyid)
        assert report.signed
        assert read_record(tmp_path, 3) == v.read(3)
    assert _tree_digest(tmp_path) == before


def test_view_opens_while_the_writer_holds_the_lock_and_follows_it(tmp_path):
    envs = history(6)
    _make_log(tmp_path, envs)
    with TrustLog(tmp_path) as tl:           # the single writer, lock held
        with ViewSet(tmp_path) as v:         # a reader beside it: no LogError
            assert v.version == len(envs)
            version = tl.state.repos[REPO_A].version + 1
            tl.ingest_batch([(e.to_bytes(), None) for e in _tags(version, 5)])
            assert v.poll() == 5
            assert set(v.state.repos[REPO_A].tags) >= {f"late-{i}" for i in range(5)}
            assert encode_state(v.state) == encode_state(tl.state)
            assert v.poll() == 0


def test_view_follows_across_segments(tmp_path):
    envs = history(4)
    _make_log(tmp_path, envs, segment_bytes=2048)
    with LogView(tmp_path) as v, TrustLog(tmp_path, segment_bytes=2048) as tl:
        version = tl.state.repos[REPO_A].version + 1
        for i in range(30):  # many small batches: several segment rollovers between polls
            tl.ingest_batch([(e.to_bytes(), None) for e in _tags(version + 2 * i, 2, prefix=f"s{i}")])
            if i % 7 == 0:
                v.poll()
        while v.poll():
            pass
        assert len(list((tmp_path / "log").glob("*.seg"))) > 3
        assert encode_state(v.state) == encode_state(tl.state)


def test_a_write_in_progress_is_not_read_until_complete(tmp_path):
    envs = history(3)
    _make_log(tmp_path, envs)
    seg = sorted((tmp_path / "log").glob("*.seg"))[-1]
    whole = seg.read_bytes()
    with TrustLog(tmp_path) as tl:
        tl.ingest_batch([(e.to_bytes(), None) for e in _tags(tl.state.repos[REPO_A].version + 1, 1)])
    full = seg.read_bytes()
    tail = full[len(whole):]
    seg.write_bytes(whole + tail[: len(tail) // 2])   # the writer is half-way through its pwrite
    with LogView(tmp_path) as v:
        assert v.version == len(envs)
        assert v.poll() == 0
        seg.write_bytes(full)                         # ... and finishes it
        assert v.poll() == 1


def test_a_damaged_record_with_more_after_it_is_corruption(tmp_path):
    _make_log(tmp_path, history(3))
    seg = sorted((tmp_path / "log").glob("*.seg"))[-1]
    data = bytearray(seg.read_bytes())
    data[20] ^= 0x40
    seg.write_bytes(bytes(data))
    with pytest.raises(LogError):
        LogView(tmp_path)


_WRITER = r"""
import sys, time, msgspec
from trustlog.core.events import decode_envelope
import trustlog.verifier  # registers the default signature check
from trustlog.ingest.pipeline import TrustLog
lines = open(sys.argv[2], "rb").read().split(b"\n")
with TrustLog(sys.argv[1], segment_bytes=4096) as tl:
    for i in range(0, len(lines), 3):
        batch = [(l, None) for l in lines[i:i + 3] if l.strip()]
        if batch:
            r = tl.ingest_batch(batch)
            assert r.rejected == 0, r.reasons
        time.sleep(0.01)
"""


def test_readers_run_while_a_writer_process_appends(tmp_path):
    envs = history(4)
    _make_log(tmp_path, envs, segment_bytes=4096)
    with TrustLog(tmp_path, segment_bytes=4096) as tl:
        version = tl.state.repos[REPO_A].version + 1
    late = _tags(version, 120)
    late.append(sign_event(KeyCompromised(REPO_A, version + 120, 0, CI.keyid, 0), [TARGETS_A]))
    src = tmp_path / "late.jsonl"
    src.write_bytes(b"\n".join(envelope_to_json(e) for e in late) + b"\n")
    writer = subprocess.Popen([PY, "-c", _WRITER, str(tmp_path), str(src)])
    seen = []
    try:
        with ViewSet(tmp_path) as v:
            deadline = time.monotonic() + 120
            while v.version < len(envs) + len(late) and time.monotonic() < deadline:
                v.poll()
                seen.append(v.version)
                time.sleep(0.005)
            assert writer.wait(timeout=120) == 0
            v.poll()
            with TrustLog(tmp_path, segment_bytes=4096) as tl:
                assert encode_state(v.state) == encode_state(tl.state)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert seen == sorted(seen) and len(set(seen)) > 2  # it followed in steps, never backwards


def test_partition_directories_are_merged_and_new_ones_picked_up(tmp_path):
    envs = history(4)
    a = [e for e in envs if b"team/a" in e.payload]
    b = [e for e in envs if b"team/b" in e.payload]
    _make_log(tmp_path / "p0", a)
    with ViewSet(tmp_path) as v:
        assert set(v.state.repos) == {REPO_A}
        _make_log(tmp_path / "p1", b)
        assert v.poll() > 0
        assert len(v.state.repos) == 2
        assert v.version == len(envs)


def test_no_log_is_a_clear_error(tmp_path):
    with pytest.raises(LogError, match="no log at"):
        ViewSet(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    os.makedirs(tmp_path / "empty")
    with pytest.raises(LogError, match="no log at"):
        LogView(tmp_path / "empty")


def test_a_view_of_some_repositories_equals_the_full_fold_for_them(tmp_path):
    from trustlog.ingest.snapshots import encode_state as enc
    from trustlog.core.state import TrustState

    envs = history(30)
    _make_log(tmp_path, envs[:40])
    with TrustLog(tmp_path) as tl:
        tl.snapshot()
        tl.ingest_batch([(e.to_bytes(), None) for e in envs[40:]])  # records after the snapshot
        full = tl.state
        for wanted in ({REPO_A}, {REPO_B}, {REPO_A, REPO_B}, {"registry.example.com/team/none"}):
            with LogView(tmp_path, repos=wanted) as v:
                assert v.snapshot_used == 40
                assert v.version == full.version
                assert set(v.state.repos) == wanted & set(full.repos)
                sub = TrustState()
                sub.repos = {n: full.repos[n] for n in v.state.repos}
                assert enc(v.state) == enc(sub)


def test_the_snapshot_index_is_used_and_a_bad_one_falls_back_to_the_whole_body(tmp_path):
    envs = history(20)
    _make_log(tmp_path, envs)
    with TrustLog(tmp_path) as tl:
        snap = tl.snapshot()
        full = encode_state(tl.state)
    sidx = snap.with_suffix(".sidx")
    assert sidx.is_file()
    with LogView(tmp_path, repos={REPO_A, REPO_B}) as v:
        assert v.snapshot_used == len(envs) and not v.snapshots_skipped
        assert encode_state(v.state) == full
    data = bytearray(sidx.read_bytes())
    data[-3] ^= 0x01  # an entry altered: its digest no longer matches
    sidx.write_bytes(bytes(data))
    with LogView(tmp_path, repos={REPO_A, REPO_B}) as v:
        assert any("index not used" in s for s in v.snapshots_skipped)
        assert encode_state(v.state) == full
    sidx.unlink()
    with LogView(tmp_path, repos={REPO_A}) as v:
        assert v.snapshot_used == len(envs) and REPO_A in v.state.repos


def test_a_forged_grant_in_the_files_is_refused_not_followed(tmp_path):
    """A record written straight into a segment (valid CRC, bad signature) that grants
    authority stops the view instead of handing out trust."""
    from logtools import decode_body, reencode, read_frames, segment_path, write_frames
    from trustlog.core.events import Envelope, RoleKeysSet, Signature
    from sim import key

    _make_log(tmp_path, history(2))
    seg = segment_path(tmp_path)
    frames = read_frames(seg)
    rec, env, ev = decode_body(frames[-1][1])
    with TrustLog(tmp_path) as tl:
        version = tl.state.repos[REPO_A].version + 1
    evil = key("evil")
    forged = sign_event(RoleKeysSet(REPO_A, version, 0, "targets/evil", [evil.public_key], 1, FAR, ["*"]), [evil])
    forged = Envelope(forged.payload, [Signature(TARGETS_A.keyid, forged.signatures[0].sig)])
    write_frames(seg, [b for _, b in frames] + [reencode(rec, forged)])
    with pytest.raises(LogError, match="cannot be replayed"):
        LogView(tmp_path)
