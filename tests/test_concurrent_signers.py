"""Concurrent signers (docs/SECURITY.md, Versions): publishers who sign different tags,
or targets delegating two roles, from the same starting state all land — through files
(`trustlog sign --out`, then `trustlog ingest`) and through Kafka (a publisher without a
copy of the log: `trustlog sign --out` with no log, `trustlog publish --wait`); a replay
never rolls a tag back nor resurrects a deleted tag or a removed signer."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from trustlog.cli.main import main
from trustlog.core.evaluate import Request
from trustlog.core.events import TagDeleted, envelope_to_json, sign_event
from trustlog.ingest.keystore import KeyStore
from trustlog.ingest.pipeline import TrustLog
from trustlog.verifier.batch import BatchVerifier

REPO = "registry.example.com/team/app"
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.delenv("TRUSTLOG_PASSPHRASE", raising=False)

    def run(*argv: str, log: Path | None = None) -> tuple[int, dict]:
        capsys.readouterr()
        rc = main(["--log", str(log or tmp_path / "log"), "--keys", str(tmp_path / "keys"), *argv, "--json"])
        lines = capsys.readouterr().out.strip().splitlines()
        return rc, json.loads(lines[-1]) if lines else {}

    for name in ("root", "targets", "alice", "bob"):
        assert run("key", "generate", name)[0] == 0
    return run


def _signed(run, out: Path, *argv: str, log: Path | None = None) -> int:
    """Sign to ``out`` (a JSONL file of one event); its version."""
    rc, info = run(*argv, "--out", str(out), log=log)
    assert rc == 0 and info["written_to"] == str(out), info
    return info["version"]


def _codes(log_dir: Path, *tags: str) -> dict[str, str]:
    with TrustLog(log_dir, read_only=True) as tl:
        v = BatchVerifier(tl.state, ref_time=int(time.time()))
        return {t: (r.code if not r.ok else r.digest) for t, r in zip(tags, v.verify_all([Request(REPO, t) for t in tags]))}


def test_signers_from_one_state_all_land_through_files(cli, tmp_path: Path) -> None:
    run = cli
    assert run("repo", "create", REPO, "--root-key", "root", "--targets-key", "targets", "--init")[0] == 0
    # two delegations, both written before either is ingested (the same starting state)
    v_a = _signed(run, tmp_path / "alice.jsonl", "signer", "add", REPO, "alice", "--key", "alice", "--paths", "a*",
                  "--sign-with", "targets")
    v_b = _signed(run, tmp_path / "bob.jsonl", "signer", "add", REPO, "bob", "--key", "bob", "--paths", "b*",
                  "--sign-with", "targets")
    assert v_a == v_b  # one repository-wide counter would make the second a VERSION_ROLLBACK
    for f in ("alice.jsonl", "bob.jsonl"):
        rc, info = run("ingest", str(tmp_path / f))
        assert rc == 0 and info["accepted"] == 1, info
    # four signers of four tags, again from one state: two delegated roles and targets twice
    files = {"a1": ("--role", "targets/alice", "--sign-with", "alice"), "b1": ("--role", "targets/bob", "--sign-with", "bob"),
             "v1": ("--sign-with", "targets"), "v2": ("--sign-with", "targets")}
    versions = {tag: _signed(run, tmp_path / f"{tag}.jsonl", "sign", REPO, tag, D1, *opts) for tag, opts in files.items()}
    assert len(set(versions.values())) == 1
    for tag in files:
        rc, info = run("ingest", str(tmp_path / f"{tag}.jsonl"))
        assert rc == 0 and info["accepted"] == 1, (tag, info)
    assert _codes(tmp_path / "log", *files) == {t: D1 for t in files}

    # a newer binding of v1, then the old one again: a redelivery (same event), nothing rolls back
    assert run("sign", REPO, "v1", D2, "--sign-with", "targets")[0] == 0
    rc, info = run("ingest", str(tmp_path / "v1.jsonl"))
    assert rc == 0 and (info["accepted"], info["duplicates"]) == (0, 1)
    # an older binding never ingested (signed at the version v1 had before): refused
    _signed(run, tmp_path / "v1-old.jsonl", "sign", REPO, "v1", D3, "--sign-with", "targets",
            "--version", str(versions["v1"]))
    rc, info = run("ingest", str(tmp_path / "v1-old.jsonl"))
    assert rc == 1 and info["rejected"] == 1 and info["rejected_by_reason"] == {"VERSION_ROLLBACK": 1}, info
    assert _codes(tmp_path / "log", "v1") == {"v1": D2}

    # v2 deleted: its old signing, replayed or held back, does not bring it back
    targets = KeyStore(tmp_path / "keys").load("targets")
    with TrustLog(tmp_path / "log", read_only=True) as tl:
        cur = tl.state.repos[REPO].versions["v2"]
    held = tmp_path / "v2-held.jsonl"
    _signed(run, held, "sign", REPO, "v2", D3, "--sign-with", "targets", "--version", str(cur + 1))
    deletion = sign_event(TagDeleted(REPO, cur + 1, 0, "targets", "v2"), [targets])
    (tmp_path / "del.jsonl").write_bytes(envelope_to_json(deletion) + b"\n")
    assert run("ingest", str(tmp_path / "del.jsonl"))[1]["accepted"] == 1
    assert run("ingest", str(tmp_path / "v2.jsonl"))[1]["duplicates"] == 1
    rc, info = run("ingest", str(held))
    assert rc == 1 and info["rejected_by_reason"] == {"VERSION_ROLLBACK": 1}, info
    assert _codes(tmp_path / "log", "v2") == {"v2": "TAG_DELETED"}

    # bob removed: his delegation, replayed, does not restore him
    assert run("signer", "remove", REPO, "bob", "--sign-with", "targets")[0] == 0
    assert run("ingest", str(tmp_path / "bob.jsonl"))[1]["duplicates"] == 1
    with TrustLog(tmp_path / "log", read_only=True) as tl:
        assert "targets/bob" not in tl.state.repos[REPO].roles


def test_sign_without_a_log_uses_the_clock(cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A publisher with no copy of the log signs at the time in ms; the events land."""
    run, nolog = cli, tmp_path / "no-log"
    assert _signed(run, tmp_path / "e.jsonl", "repo", "create", REPO, "--root-key", "root", "--targets-key",
                   "targets", log=nolog) == 1
    rc, info = run("sign", REPO, "v1", D1, "--sign-with", "targets", "--out", str(tmp_path / "e.jsonl"), log=nolog)
    assert rc == 0 and info["version_from"] == "clock" and info["version"] > 1_700_000_000_000
    assert not nolog.exists()
    rc, info = run("ingest", str(tmp_path / "e.jsonl"), "--init")
    assert rc == 0 and info["accepted"] == 2, info
    capsys.readouterr()
    assert main(["--log", str(nolog), "--keys", str(tmp_path / "keys"), "sign", REPO, "v2", D1,
                 "--sign-with", "targets", "--out", str(tmp_path / "f.jsonl")]) == 0
    assert "signing at version" in capsys.readouterr().err


# -- through Kafka: publishers that only talk to the broker ---------------------------------------


@pytest.mark.kafka
def test_signers_from_one_state_all_land_through_kafka(cli, kafka_bootstrap, tmp_path: Path) -> None:
    from kafka_broker import delete_topics, new_topic
    from test_kafka_ingest import start_worker, stderr_of, stop
    from test_kafka_outcomes import _publish_wait

    run, nolog = cli, tmp_path / "no-log"  # no publisher has a log
    topic = new_topic(kafka_bootstrap, "tl-conc-" + uuid.uuid4().hex[:6], partitions=2)
    setup = tmp_path / "setup.jsonl"
    _signed(run, setup, "repo", "create", REPO, "--root-key", "root", "--targets-key", "targets", log=nolog)
    for who in ("alice", "bob"):
        _signed(run, setup, "signer", "add", REPO, who, "--key", who, "--paths", f"{who[0]}*", "--sign-with",
                "targets", "--version", "7", log=nolog)  # the same version: different roles never collide
    pubs = {"a1": ("--role", "targets/alice", "--sign-with", "alice"), "b1": ("--role", "targets/bob", "--sign-with", "bob"),
            "v1": ("--sign-with", "targets"), "v2": ("--sign-with", "targets")}
    for tag, opts in pubs.items():
        _signed(run, tmp_path / f"{tag}.jsonl", "sign", REPO, tag, D1, *opts, "--version", "9", log=nolog)
    old_v1 = tmp_path / "v1.jsonl"
    newer_v1 = tmp_path / "v1-new.jsonl"
    v_new = _signed(run, newer_v1, "sign", REPO, "v1", D2, "--sign-with", "targets", log=nolog)  # clock version
    group = f"g-{uuid.uuid4().hex[:8]}"
    logdir = tmp_path / "logs"
    w = start_worker(kafka_bootstrap, topic, group, logdir, tmp_path)
    try:
        rc, out = _publish_wait(kafka_bootstrap, topic, setup)
        assert rc == 0 and out["outcome_counts"] == {"accepted": 3}, out
        both = tmp_path / "all.jsonl"  # the four publishers' events, sent together
        both.write_bytes(b"".join((tmp_path / f"{t}.jsonl").read_bytes() for t in pubs))
        rc, out = _publish_wait(kafka_bootstrap, topic, both)
        assert rc == 0 and out["outcome_counts"] == {"accepted": 4}, out
        rc, out = _publish_wait(kafka_bootstrap, topic, newer_v1)
        assert rc == 0 and out["outcome_counts"] == {"accepted": 1}, out
        # the old v1 binding replayed (the same event) and re-signed at its old version
        _signed(run, tmp_path / "v1-again.jsonl", "sign", REPO, "v1", D3, "--sign-with", "targets",
                "--version", "9", log=nolog)
        rc, out = _publish_wait(kafka_bootstrap, topic, old_v1)
        assert rc == 0 and out["outcome_counts"] == {"accepted": 1}, out  # answered with the stored copy
        rc, out = _publish_wait(kafka_bootstrap, topic, tmp_path / "v1-again.jsonl")
        assert rc == 1 and [o["reason"] for o in out["outcomes"]] == ["VERSION_ROLLBACK"], out
    finally:
        assert stop(w) == 0, stderr_of(w)
        delete_topics(kafka_bootstrap, topic, f"{topic}.layout", f"{topic}.outcomes")
    from trustlog.ingest.partitioning import partition_dirs

    owners = []
    for _, d in partition_dirs(logdir):
        with TrustLog(d, read_only=True) as tl:
            if REPO in tl.state.repos:
                owners.append(d)
                assert tl.state.repos[REPO].versions["v1"] == v_new
    assert len(owners) == 1
    assert _codes(owners[0], *pubs) == {"a1": D1, "b1": D1, "v1": D2, "v2": D1}


def test_redelivery_with_gapped_versions_is_recognised_after_a_snapshot(tmp_path: Path) -> None:
    """Versions no longer name log offsets: a redelivered event (here of a log reopened
    from a snapshot, so its id is not among those folded since) is still found by its
    event id and answered with the stored copy's offset and source."""
    from trustlog.core.events import ImageSigned, RepoCreated
    from trustlog.core.keys import SigningKey
    from trustlog.ingest.records import KafkaPosition

    r, t = SigningKey.from_seed(b"cs/root"), SigningKey.from_seed(b"cs/targets")
    far = 4_000_000_000
    envs = [sign_event(RepoCreated(REPO, 1, 0, [r.public_key], 1, [t.public_key], 1, far), [r])]
    envs += [sign_event(ImageSigned(REPO, 1_700_000_000_000 + 7 * i, 0, "targets", f"t{i % 5}", D1, 1, far), [t])
             for i in range(12)]
    first = [(e.to_bytes(), KafkaPosition("events", 0, i)) for i, e in enumerate(envs)]
    with TrustLog(tmp_path / "log", snapshot_every=4) as tl:
        assert tl.ingest_batch(first).accepted == len(envs)
    with TrustLog(tmp_path / "log") as tl:
        assert tl.snapshot_used is not None and tl.snapshot_used > 0
        again = tl.ingest_batch([(raw, KafkaPosition("events", 0, 100 + i)) for i, (raw, _) in enumerate(first)])
        assert (again.accepted, again.rejected, again.duplicates) == (0, 0, len(envs))
        assert [(f.status, f.log_offset, f.stored_source) for f in again.fates] == [
            ("accepted", i, KafkaPosition("events", 0, i)) for i in range(len(envs))]


def test_a_snapshot_without_scoped_versions_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A format-1 snapshot (before per-scope versions) would forget what a replay must
    exceed; it is skipped and the state folded from the log, replay protection intact."""
    from trustlog.core.events import ImageSigned, RepoCreated
    from trustlog.core.keys import SigningKey
    from trustlog.ingest import snapshots

    r, t = SigningKey.from_seed(b"cs/root"), SigningKey.from_seed(b"cs/targets")
    far = 4_000_000_000
    old = sign_event(ImageSigned(REPO, 5, 0, "targets", "v1", D1, 1, far), [t])
    envs = [sign_event(RepoCreated(REPO, 1, 0, [r.public_key], 1, [t.public_key], 1, far), [r]), old,
            sign_event(ImageSigned(REPO, 6, 0, "targets", "v1", D2, 1, far), [t])]
    monkeypatch.setattr(snapshots, "SNAPSHOT_FORMAT", 1)
    with TrustLog(tmp_path / "log") as tl:
        assert tl.ingest_batch([(e.to_bytes(), None) for e in envs]).accepted == 3
        tl.snapshot()
    monkeypatch.undo()
    with TrustLog(tmp_path / "log") as tl:
        assert tl.snapshot_used is None
        assert tl.state.repos[REPO].versions["v1"] == 6
        replay = sign_event(ImageSigned(REPO, 5, 1, "targets", "v1", D3, 1, far), [t])
        assert tl.ingest_batch([(replay.to_bytes(), None)]).reasons == {"VERSION_ROLLBACK": 1}


def test_a_burnt_scope_blocks_no_other_signer(cli, tmp_path: Path) -> None:
    """A delegated signer that signs its tag at the largest version uses up only that
    tag: the CLI's defaults for other tags and for compromise reports are their own
    scopes' last + 1, so a report against the signer's key still lands."""
    run = cli
    assert run("repo", "create", REPO, "--root-key", "root", "--targets-key", "targets", "--init")[0] == 0
    assert run("signer", "add", REPO, "alice", "--key", "alice", "--paths", "a*", "--sign-with", "targets")[0] == 0
    rc, info = run("sign", REPO, "a1", D1, "--role", "targets/alice", "--sign-with", "alice", "--version", str(2**63 - 1))
    assert rc == 0 and info["accepted"], info
    rc, info = run("sign", REPO, "v1", D1, "--sign-with", "targets")
    assert rc == 0 and info["accepted"] and info["version"] == 1, info
    rc, info = run("compromise-everywhere", "alice", "--since", "0")
    assert rc == 0 and info["signed"] == 1, info
    assert _codes(tmp_path / "log", "a1", "v1") == {"a1": "KEY_COMPROMISED", "v1": D1}
