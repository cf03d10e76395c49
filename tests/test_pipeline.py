"""The embedded pipeline: batches in, durable log and rejects out, state rebuilt on open."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import msgspec
import pytest

from sim import DIGEST, FAR, key
from trustlog.core.errors import LogError
from trustlog.core.events import ImageSigned, RepoCreated, envelope_to_json, sign_event
from trustlog.ingest.pipeline import TrustLog, read_lines
from trustlog.ingest.synthetic import SyntheticRegistry

REPO = "registry.example.com/team/app"
R, T = key("p-root"), key("p-targets")


def _events(n_tags: int = 5) -> list[bytes]:
    out = [sign_event(RepoCreated(REPO, 1, 0, [R.public_key], 1, [T.public_key], 1, FAR), [R]).to_bytes()]
    for i in range(n_tags):
        out.append(sign_event(ImageSigned(REPO, 2 + i, 0, "targets", f"v{i}", DIGEST, 1, FAR), [T]).to_bytes())
    return out


def test_ingest_and_reopen_rebuilds_state(tmp_path: Path, crypto) -> None:
    with TrustLog(tmp_path, crypto=crypto) as log:
        r = log.ingest([(e, None) for e in _events()])
        assert (r.accepted, r.rejected) == (6, 0)
        before = {t: e.digest for t, e in log.state.repos[REPO].tags.items()}
    with TrustLog(tmp_path) as log:
        assert log.state.version == 6
        assert {t: e.digest for t, e in log.state.repos[REPO].tags.items()} == before


def test_redelivery_is_recognised_not_duplicated(tmp_path: Path) -> None:
    events = _events()
    bad = b"not an envelope"
    with TrustLog(tmp_path) as log:
        log.ingest([(e, None) for e in events] + [(bad, None)])
    with TrustLog(tmp_path) as log:
        r = log.ingest([(e, None) for e in events] + [(bad, None)])
        assert (r.accepted, r.rejected, r.duplicates) == (0, 0, 7)
        assert log.log.next_offset == 6
        assert sum(1 for _ in log.rejects) == 1


@pytest.mark.parametrize(
    "raw,reason",
    [
        (b"\x93\x01\x02", "MALFORMED"),
        (b"{not json", "MALFORMED"),
        (b'{"payload": "AAAA", "signatures": 5}', "MALFORMED"),
        (b'{"payload": "AAAA", "signatures": []}', "MALFORMED"),
        (b"\x00" * (70 * 1024), "TOO_LARGE"),
    ],
    ids=["msgpack-garbage", "bad-json", "wrong-schema", "payload-not-event", "oversized"],
)
def test_malformed_inputs_are_rejected_with_a_reason(tmp_path: Path, raw: bytes, reason: str, crypto) -> None:
    with TrustLog(tmp_path, crypto=crypto) as log:
        r = log.ingest([(raw, None)] + [(e, None) for e in _events(1)])
        assert r.reasons == {reason: 1}
        assert r.accepted == 2  # the worker went on
        rec = next(iter(log.rejects))
        assert rec.reason == reason and rec.detail


def test_unknown_key_type_is_rejected(tmp_path: Path) -> None:
    from trustlog.core.keys import PublicKey

    weird = PublicKey("dsa-1024", b"\x01" * 32)
    env = sign_event(RepoCreated(REPO, 1, 0, [weird], 1, [T.public_key], 1, FAR), [R])
    with TrustLog(tmp_path) as log:
        r = log.ingest([(env.to_bytes(), None)])
        assert r.reasons == {"INVALID_KEYS": 1}


def test_jsonl_source(tmp_path: Path) -> None:
    f = tmp_path / "events.jsonl"
    from trustlog.core.events import decode_envelope

    f.write_bytes(b"".join(envelope_to_json(decode_envelope(e)) + b"\n" for e in _events(2)) + b"\n{oops\n")
    with TrustLog(tmp_path / "log") as log:
        r = log.ingest(read_lines(f))
        assert (r.accepted, r.rejected) == (3, 1)
        assert r.last_reject is not None and f"[{f} line 5]" in r.last_reject[1]   # line 4 is blank
        assert [rec.detail for rec in log.rejects][0].endswith(f"[{f} line 5]")


def test_fsync_failure_stops_and_loses_nothing(tmp_path: Path) -> None:
    calls = {"n": 0, "armed": False}

    def failing_fsync(fd: int) -> None:
        if not calls["armed"]:
            return os.fsync(fd)
        calls["n"] += 1
        raise OSError(errno.EIO, "injected fsync failure")

    events = _events(3)
    log = TrustLog(tmp_path, fsync_fn=failing_fsync)
    calls["armed"] = True
    with pytest.raises(LogError):
        log.ingest([(e, None) for e in events])
    assert calls["n"] >= 1
    assert log.log.durable_offset == 0
    log.close()
    with TrustLog(tmp_path) as log2:  # restart: ingest again, nothing duplicated
        r = log2.ingest([(e, None) for e in events])
        assert r.accepted + r.duplicates == len(events)
        assert log2.log.next_offset == len(events)


def test_synthetic_registry_incidents(tmp_path: Path, crypto) -> None:
    reg = SyntheticRegistry(repos=40, tags=400, ref_time=1_900_000_000)
    with TrustLog(tmp_path, crypto=crypto) as log:
        r1 = log.ingest((e.to_bytes(), None) for e in reg.phase1())
        since = log.clock.last + 1
        r2 = log.ingest((e.to_bytes(), None) for e in reg.phase2(since))
        reasons = r1.reasons + r2.reasons
        assert dict(reasons) == reg.incidents.expected_rejects
        assert sum(len(x.tags) for x in log.state.repos.values()) == reg.expected_tags + 1  # + rollback's tag
        assert reg.incidents.compromised_repos


def test_state_is_deterministic_over_replay(tmp_path: Path) -> None:
    reg = SyntheticRegistry(repos=16, tags=64, ref_time=1_900_000_000)
    with TrustLog(tmp_path) as log:
        log.ingest((e.to_bytes(), None) for e in reg.phase1())
        snap = msgspec.json.encode({r.name: sorted((t, e.digest, e.offset) for t, e in r.tags.items())
                                    for r in log.state.repos.values()})
    with TrustLog(tmp_path) as log:
        again = msgspec.json.encode({r.name: sorted((t, e.digest, e.offset) for t, e in r.tags.items())
                                     for r in log.state.repos.values()})
    assert snap == again
    assert os.path.isdir(tmp_path / "rejects")
