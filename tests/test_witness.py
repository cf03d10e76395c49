"""Checkpoints off the host: publishing to an append-only directory, a Kafka topic and a
co-signing witness (a real `trustlog witness serve` process), and the history rewrites
of issue #10 that only they catch.

The attacker holds the host: the log directory and the log key in it. Each rewrite
below leaves a log that `log verify` alone accepts (it is self-consistent and signed
with the real key) and that `log verify --witness` refuses.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from logtools import CI, REPO_A, REPO_B, TARGETS_A, TARGETS_B, history, read_frames, segment_path, write_frames
from sim import DIGEST, FAR
from trustlog.cli.main import main as cli
from trustlog.core.events import ImageSigned, KeyCompromised, sign_event
from trustlog.ingest.logcheck import verify_log
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.transparency import load_public_key
from trustlog.ingest.witness import PUBLISH_ENV, parse_spec
from trustlog.core.errors import InputError


def _events() -> list:
    """history(6), then the CI key reported compromised, then more of repo B."""
    out = history(6)   # A: versions 1..8, B: 1..7
    out.append(sign_event(KeyCompromised(REPO_A, 9, 0, CI.keyid, 0, "leaked"), [TARGETS_A]))
    for v in (8, 9, 10):
        out.append(sign_event(ImageSigned(REPO_B, v, 0, "targets", f"late-{v}", DIGEST, v, FAR), [TARGETS_B]))
    return out


def _build(d: Path) -> None:
    with TrustLog(d, checkpoint_every=4, snapshot_every=None) as tl:
        events = _events()
        for i in range(0, len(events), 4):
            tl.ingest_batch([(e.to_bytes(), None) for e in events[i:i + 4]])


def _compromised(d: Path) -> dict:
    with TrustLog(d, snapshot_every=None) as tl:
        return dict(tl.state.repos[REPO_A].compromised_keyids)


def _rebuild_derived(d: Path) -> None:
    """What an attacker does after editing the segments: drop every derived file and let
    the log recompute the tree and re-sign it with the key it finds on the host."""
    for sub in ("merkle", "snapshots", "index"):
        shutil.rmtree(d / sub, ignore_errors=True)
    with TrustLog(d, snapshot_every=None):
        pass


def drop_key_compromised(d: Path) -> None:
    from logtools import decode_body

    seg = segment_path(d)
    bodies = [b for _, b in read_frames(seg)]
    kept = [b for b in bodies if not isinstance(decode_body(b)[2], KeyCompromised)]
    assert len(kept) == len(bodies) - 1
    write_frames(seg, kept)
    _rebuild_derived(d)


def truncate(d: Path, n: int = 4) -> None:
    seg = segment_path(d)
    write_frames(seg, [b for _, b in read_frames(seg)][:-n])
    _rebuild_derived(d)


def forged_snapshot(d: Path) -> None:
    """History rewritten as above, plus a snapshot of the rewritten state signed with the
    log key: an open starts from it, and `log verify` compares it with the forged fold."""
    drop_key_compromised(d)
    with TrustLog(d, snapshot_every=None) as tl:
        tl.snapshot()
    with TrustLog(d, snapshot_every=None) as tl:
        assert tl.snapshot_used is not None


def new_log_key(d: Path) -> None:
    """A new log key (and log.pub) for the rewritten history."""
    (d / "log.key").unlink()
    (d / "log.pub").unlink()
    drop_key_compromised(d)


ATTACKS = {"drop KeyCompromised, re-sign": drop_key_compromised, "truncate log, tree, checkpoints": truncate,
           "forged snapshot": forged_snapshot, "new log key": new_log_key}


@pytest.fixture
def witness_proc(tmp_path: Path):
    """Start `trustlog witness serve` (a separate process with its own key and state)
    once the log exists; yields (start(log_pub) -> (url, vkey_file, witness_dir))."""
    procs: list[subprocess.Popen] = []

    def start(log_pub: Path, wdir: Path | None = None) -> tuple[str, Path, Path]:
        wdir = wdir or tmp_path / f"witness-{len(procs)}"
        exe = Path(sys.executable).parent / "trustlog"
        argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "trustlog.cli.main"]
        p = subprocess.Popen([*argv, "witness", "serve", "--dir", str(wdir), "--log-key", str(log_pub),
                              "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        first = p.stdout.readline()
        assert "listening on" in first, p.stderr.read()
        return first.split("listening on ")[1].strip(), wdir / "witness.vkey", wdir

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def _init_log(d: Path) -> None:
    with TrustLog(d, snapshot_every=None):
        pass   # the log key and log.pub exist before the witness is told about them


def test_spec_grammar(tmp_path: Path) -> None:
    assert parse_spec(f"file:{tmp_path}").kind == "file"
    k = parse_spec("kafka:127.0.0.1:9092,127.0.0.2:9092/trustlog-cp")
    assert (k.kind, k.target, k.topic) == ("kafka", "127.0.0.1:9092,127.0.0.2:9092", "trustlog-cp")
    assert parse_spec("http://127.0.0.1:1/w").target == "http://127.0.0.1:1/w"
    for bad in ("ftp://x", "kafka:host:1", "kafka:/t", "http://h:1,key=x", f"http://h:1,vkey={tmp_path}/none"):
        with pytest.raises(InputError):
            parse_spec(bad)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_rewrites_are_caught_by_the_witnesses(attack: str, tmp_path: Path, witness_proc,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    d, copies = tmp_path / "log", tmp_path / "published"
    _init_log(d)
    url, vkey, wdir = witness_proc(d / "log.pub")
    witness = f"{url},vkey={vkey}"
    monkeypatch.setenv(PUBLISH_ENV, f"file:{copies} {url}")
    _build(d)
    shutil.copy(d / "log.pub", tmp_path / "out-of-band.pub")
    places = [parse_spec(f"file:{copies}"), parse_spec(witness)]
    clean = verify_log(d, witnesses=places)
    assert clean.ok, clean.to_dict()
    assert clean.witnessed_verified == len(list((copies).rglob("*.note"))) + 1 >= 4
    assert [w["checkpoints"] for w in clean.witnesses][1] == 1 and clean.witnesses[1]["cosigned"]
    assert CI.keyid in _compromised(d)
    log_pub = load_public_key(d / "log.pub")   # what an auditor obtained out of band

    ATTACKS[attack](d)          # publishing stays on: the witness sees the re-signed checkpoints too

    alone = verify_log(d)
    assert alone.ok, alone.to_dict()   # without a witness the rewrite passes: signed with the real key
    if attack != "truncate log, tree, checkpoints":
        assert CI.keyid not in _compromised(d)      # ...and the verdicts changed
    for place in places:
        r = verify_log(d, log_pub, witnesses=[place])
        assert not r.ok, (place.spec, r.to_dict())
        assert r.first.check in ("checkpoint", "witness"), r.first
    # the witness pins the log key itself: caught even with the log's own (replaced) log.pub
    assert cli(["log", "verify", "--log", str(d), "--witness", witness]) == 1
    assert cli(["log", "verify", "--log", str(d), "--log-key", str(tmp_path / "out-of-band.pub"),
                "--witness", f"file:{copies}"]) == 1
    if attack == "new log key":
        # a copy the host may append to takes the new identity's checkpoints too: only the
        # out-of-band log key tells them apart, and log verify says so
        r = verify_log(d, witnesses=[places[0]])
        assert r.ok and any("--log-key" in w for w in r.warnings)
    # the witness never co-signed the rewritten history: it still holds the real head
    (latest,) = (wdir / "state").glob("*.note")
    assert latest.read_text().splitlines()[1] == str(len(_events()))


def test_witness_checks_consistency_before_cosigning(tmp_path: Path, witness_proc) -> None:
    """The witness protocol itself: 409 with its size for a wrong old size, 422 for a
    proof that does not verify, 403 for another key, and a cosignature otherwise."""
    import base64

    from trustlog.core.checkpoint import checkpoint_note
    from trustlog.ingest.witness import WitnessError, _http, publish

    d = tmp_path / "log"
    _init_log(d)
    url, vkey, wdir = witness_proc(d / "log.pub")
    with TrustLog(d, checkpoint_every=None, snapshot_every=None) as tl:
        evs = _events()
        tl.ingest_batch([(e.to_bytes(), None) for e in evs[:6]])
        first = tl.checkpoint()
        assert publish(parse_spec(url), first, tl.tree)        # a cosignature line
        tl.ingest_batch([(e.to_bytes(), None) for e in evs[6:10]])
        second = tl.checkpoint()
        note = checkpoint_note(second, tl.tree.public_key)
        proof = tl.tree.merkle.consistency_proof(6, 10)
    body = lambda old, hashes: (f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in hashes)
                                + "\n").encode() + note
    assert _http("POST", url + "/add-checkpoint", body(0, [])) == (409, b"6\n")
    status, _ = _http("POST", url + "/add-checkpoint", body(6, [bytes(32)] * len(proof)))
    assert status == 422 and list((wdir / "evidence").iterdir())
    assert _http("POST", url + "/add-checkpoint", body(11, []))[0] == 400
    status, line = _http("POST", url + "/add-checkpoint", body(6, proof))
    assert status == 200 and line.startswith("— trustlog-witness/".encode())
    other = tmp_path / "other"
    with TrustLog(other, snapshot_every=None) as tl2:
        tl2.ingest_batch([(e.to_bytes(), None) for e in evs[:3]])
        foreign = checkpoint_note(tl2.checkpoint(), tl2.tree.public_key)
    assert _http("POST", url + "/add-checkpoint", b"old 0\n\n" + foreign)[0] == 404
    forged = note.replace(b"\n10\n", b"\n11\n")
    assert _http("POST", url + "/add-checkpoint", b"old 6\n\n" + forged)[0] in (400, 403)
    # a verifier given another witness's vkey finds no cosignature
    w2 = tmp_path / "w2"
    url2, vkey2, _ = witness_proc(d / "log.pub", w2)
    r = verify_log(d, witnesses=[parse_spec(f"{url},vkey={vkey2}")])
    assert not r.ok and "no cosignature" in r.first.what
    r = verify_log(d, witnesses=[parse_spec(f"{url2},vkey={vkey2}")])
    assert not r.ok and "holds no checkpoint" in r.first.what   # nothing was ever published there
    with pytest.raises(WitnessError, match="cannot reach"):
        with TrustLog(d, snapshot_every=None) as tl:
            publish(parse_spec("http://127.0.0.1:9"), second, tl.tree)


def test_publish_failure_is_a_warning_not_an_ingest_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(PUBLISH_ENV, "http://127.0.0.1:9")
    d = tmp_path / "log"
    with TrustLog(d, snapshot_every=None) as tl:
        r = tl.ingest_batch([(e.to_bytes(), None) for e in _events()[:5]])
        assert tl.checkpoint() is not None
    assert "not published" in caplog.text and "127.0.0.1:9" in caplog.text
    assert verify_log(d).ok and r is not None


def test_checkpoint_publish_command_and_file_copies_are_append_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d, copies = tmp_path / "log", tmp_path / "copies"
    _build(d)
    assert cli(["checkpoint", "publish", f"file:{copies}", "--log", str(d)]) == 0
    (note,) = copies.rglob("*.note")
    assert note.read_text().splitlines()[1] == str(len(_events()))
    assert cli(["checkpoint", "publish", f"file:{copies}", "--log", str(d)]) == 0   # same bytes: fine
    os.chmod(note, 0o644)
    n = len(_events())
    note.write_text(note.read_text().replace(f"\n{n}\n", f"\n{n + 1}\n"))
    capsys.readouterr()
    assert cli(["checkpoint", "publish", f"file:{copies}", "--log", str(d)]) == 1
    assert "fork" in capsys.readouterr().err
    assert cli(["log", "verify", "--log", str(d), "--witness", f"file:{copies}"]) == 1


def test_witness_serve_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _init_log(tmp_path / "log")
    pub = str(tmp_path / "log" / "log.pub")
    assert cli(["witness", "serve", "--dir", str(tmp_path / "w")]) == 2
    assert cli(["witness", "serve", "--dir", str(tmp_path / "w"), "--log-key", pub, "--listen", "nope"]) == 2
    assert cli(["log", "verify", "--log", str(tmp_path / "log"), "--witness", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "vkey" in err and "Traceback" not in err


@pytest.mark.kafka
def test_kafka_topic_witness_catches_a_rewrite(tmp_path: Path, kafka_bootstrap: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    spec = f"kafka:{kafka_bootstrap}/trustlog-checkpoints-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(PUBLISH_ENV, spec)
    d = tmp_path / "log"
    _build(d)
    clean = verify_log(d, witnesses=[parse_spec(spec)])
    assert clean.ok, clean.to_dict()
    assert clean.witnesses[0]["checkpoints"] >= 4 and clean.witnesses[0]["largest"] == len(_events())
    monkeypatch.delenv(PUBLISH_ENV)     # the attacker also stops publishing
    drop_key_compromised(d)
    assert verify_log(d).ok
    r = verify_log(d, witnesses=[parse_spec(spec)])
    assert not r.ok and r.first.check == "checkpoint" and "kafka" in r.first.what
    assert cli(["log", "verify", "--log", str(d), "--witness", spec]) == 1


def test_a_forged_snapshot_over_the_real_log_is_caught_without_a_witness(tmp_path: Path) -> None:
    """The snapshot alone (signed with the log key, the real root, a state without the
    compromise): an open starts from it, but `log verify` folds the log and compares."""
    from trustlog.ingest.snapshots import SnapshotStore
    from trustlog.ingest.transparency import load_or_create_log_key

    d = tmp_path / "log"
    _build(d)
    with TrustLog(d, snapshot_every=None) as tl:
        state, n, root, last = tl.state, tl.log.next_offset, tl.tree.merkle.root(), tl.clock.last
        state.repos[REPO_A].compromised_keyids.clear()
        SnapshotStore(d / "snapshots", load_or_create_log_key(d)).write(state, root=root, last_log_time=last)
    assert CI.keyid not in _compromised(d)       # the verdicts changed on open
    r = verify_log(d)
    assert not r.ok and r.first.check == "snapshot" and "does not equal" in r.first.what and r.first.offset == n
