"""C2SP formats: signed notes, tlog-checkpoint bodies, cosignatures — and trustlog's
checkpoints verified by an independent implementation (Go's golang.org/x/mod/sumdb)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require_or_skip
from logtools import history
from trustlog.cli.main import main as cli
from trustlog.core.checkpoint import checkpoint_from_note, checkpoint_note, verify_checkpoint
from trustlog.core.errors import SignatureError
from trustlog.core.keys import PublicKey, SigningKey
from trustlog.core.note import (
    ALG_COSIGNATURE_V1, NoteError, cosignature, cosignature_message, key_hash, parse_note, parse_verifier_key,
    split_cosignature, verifier_key,
)
from trustlog.ingest.pipeline import TrustLog

REPO = Path(__file__).resolve().parent.parent
GO_SRC = REPO / "tests" / "go" / "c2spverify"

# The example in golang.org/x/mod/sumdb/note's package documentation.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n"
           "\n"
           "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
           ).encode()


def test_go_documentation_vector() -> None:
    name, alg, public = parse_verifier_key(GO_VKEY)
    assert (name, alg) == ("PeterNeumann", 1)
    note = parse_note(GO_NOTE)
    (sig,) = note.signatures
    assert sig.name == name and sig.key_hash == key_hash(name, alg, public) == bytes.fromhex("c74f20a3")
    PublicKey("ed25519", public).verify(note.text, sig.sig)
    assert note.encode() == GO_NOTE
    assert verifier_key(name, alg, public) == GO_VKEY


@pytest.mark.parametrize("bad", [
    GO_NOTE.replace(b"\n\n", b"\n"),                       # no blank line
    GO_NOTE.replace("— ".encode(), b"- "),                 # not an em dash
    GO_NOTE[:-1],                                          # no final newline
    GO_NOTE.replace(b"problem,", b"problem,\x01"),         # control character
    GO_NOTE.replace(b"PeterNeumann x", b"Peter+Neumann x"),  # '+' in the name
    GO_NOTE.replace(b"JnAM=", b"JnAM"),                    # not base64
    b"text\n\n" + "— k AAAA\n".encode(),                   # fewer than 5 bytes
    b"text\n\n" + "".join(f"— k{i} AAAAAAAA\n" for i in range(101)).encode(),
])
def test_malformed_notes_are_refused(bad: bytes) -> None:
    with pytest.raises(NoteError):
        parse_note(bad)


def test_vkey_with_a_wrong_hash_is_refused() -> None:
    with pytest.raises(NoteError, match="key hash"):
        parse_verifier_key(GO_VKEY.replace("c74f20a3", "c74f20a4"))


def test_cosignature_v1_round_trip() -> None:
    w = SigningKey.from_seed(b"witness test key")
    text = b"example.com/log\n5\n" + base64.b64encode(bytes(32)) + b"\n"
    msg = cosignature_message(text, 1679315147)
    assert msg.startswith(b"cosignature/v1\ntime 1679315147\nexample.com/log\n")
    line = cosignature("w.example/w1", w.public_key.public, 1679315147, w.sign(msg))
    assert line.key_hash == key_hash("w.example/w1", ALG_COSIGNATURE_V1, w.public_key.public)
    ts, sig = split_cosignature(line)
    assert ts == 1679315147
    w.public_key.verify(cosignature_message(text, ts), sig)


def _small_log(d: Path) -> TrustLog:
    tl = TrustLog(d, checkpoint_every=10, snapshot_every=None)
    events = history(6)
    tl.ingest_batch([(e.to_bytes(), None) for e in events])
    tl.checkpoint()
    return tl


def test_note_of_a_log_checkpoint_round_trips(tmp_path: Path) -> None:
    with _small_log(tmp_path / "log") as tl:
        signed, cp = tl.tree.latest()
        note = checkpoint_note(signed, tl.tree.public_key)
        back, parsed = checkpoint_from_note(note, tl.tree.public_key)
        assert back == signed and verify_checkpoint(back, tl.tree.public_key) == cp
        assert parsed.signatures[0].name == cp.origin
        other = SigningKey.from_seed(b"not the log key")
        with pytest.raises(SignatureError, match="no signature by the log key"):
            checkpoint_from_note(note, other.public_key)


@pytest.fixture(scope="session")
def go_verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/go/c2spverify built with the Go toolchain; the module download and the
    build are cached by Go (GOMODCACHE, GOCACHE), so later runs take about a second."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if go is None:
        require_or_skip("the Go toolchain (to verify checkpoints with golang.org/x/mod/sumdb/note)",
                        FileNotFoundError("go"))
    out = tmp_path_factory.mktemp("go") / "c2spverify"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    try:
        subprocess.run([go, "build", "-o", str(out), "."], cwd=GO_SRC, env=env, check=True,
                       capture_output=True, text=True, timeout=300)
    except subprocess.CalledProcessError as e:
        require_or_skip("golang.org/x/mod (go build tests/go/c2spverify)", RuntimeError(e.stderr.strip()[-500:]))
    return out


def test_go_sumdb_note_verifies_a_trustlog_checkpoint_and_inclusion_proof(
        tmp_path: Path, go_verifier: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "log"
    _small_log(d).close()

    def run(*argv: str) -> str:
        assert cli([*argv, "--log", str(d)]) == 0
        return capsys.readouterr().out

    (tmp_path / "cp.note").write_text(run("checkpoint", "latest", "--note"))
    (tmp_path / "log.vkey").write_text(run("checkpoint", "vkey"))
    (tmp_path / "inc.json").write_text(run("proof", "inclusion", "7", "--json"))

    def go(*files: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(go_verifier), *map(str, files)], capture_output=True, text=True, timeout=60)

    r = go(tmp_path / "log.vkey", tmp_path / "cp.note", tmp_path / "inc.json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    with TrustLog(d) as tl:
        cp = tl.tree.latest()[1]
    assert (got["origin"], got["tree_size"], got["root_hash"]) == (cp.origin, cp.tree_size, cp.root_hash.hex())
    assert got["signatures"] == 1 and got["inclusion_verified"] == 7
    rejects = f"trustlog-rejects {cp.rejects_size} {base64.b64encode(cp.rejects_root).decode()}"
    assert got["extensions"] == [f"trustlog-log-time {cp.log_time}", rejects]
    # and trustlog's own offline check accepts the note file as the checkpoint
    assert cli(["proof", "verify", str(tmp_path / "inc.json"), "--checkpoint", str(tmp_path / "cp.note"),
                "--log-key", str(d / "log.pub")]) == 0
    # what Go refuses: a changed body, a changed proof
    note = (tmp_path / "cp.note").read_bytes()
    (tmp_path / "bad.note").write_bytes(note.replace(f"\n{cp.tree_size}\n".encode(), f"\n{cp.tree_size + 1}\n".encode()))
    r = go(tmp_path / "log.vkey", tmp_path / "bad.note")
    assert r.returncode == 1 and "invalid signature" in r.stderr
    proof = json.loads((tmp_path / "inc.json").read_text())
    proof["leaf_index"] = 6
    (tmp_path / "bad.json").write_text(json.dumps(proof))
    r = go(tmp_path / "log.vkey", tmp_path / "cp.note", tmp_path / "bad.json")
    assert r.returncode == 1 and "inclusion proof" in r.stderr


def test_a_log_with_legacy_messagepack_checkpoints_still_opens_verifies_and_proves(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Logs written before the note format: their checkpoints.log is rewritten here into
    the old form; the log opens, appends note checkpoints after them, `log verify`
    checks both kinds, and a proof verifies against an old checkpoint file."""
    import crc32c

    from logtools import REPO_B, TARGETS_B
    from sim import DIGEST, FAR
    from test_checkpoint import legacy
    from trustlog.core.events import ImageSigned, sign_event
    from trustlog.core.checkpoint import decode_checkpoint
    from trustlog.core.encoding import canonical_bytes
    from trustlog.ingest.logcheck import verify_log
    from trustlog.ingest.merkle_store import _FRAME, CHECKPOINTS_FILE, CheckpointStore
    from trustlog.ingest.transparency import checkpoint_to_json, load_or_create_log_key

    d = tmp_path / "log"
    _small_log(d).close()
    key = load_or_create_log_key(d)
    path = d / "merkle" / CHECKPOINTS_FILE
    store = CheckpointStore.open(path)
    old = [legacy(decode_checkpoint(s.checkpoint), key) for s in store]
    store.close()
    path.write_bytes(b"".join(_FRAME.pack(len(p), crc32c.crc32c(p)) + p for p in map(canonical_bytes, old)))
    (tmp_path / "old.json").write_bytes(json.dumps(checkpoint_to_json(old[-1])).encode())
    assert checkpoint_to_json(old[-1])["format"] == "legacy-msgpack"
    with TrustLog(d, snapshot_every=None) as tl:
        assert tl.tree.latest()[0] == old[-1]
        size = tl.tree.latest()[1].tree_size
        more = [sign_event(ImageSigned(REPO_B, v, 0, "targets", f"late-{v}", DIGEST, v, FAR), [TARGETS_B])
                for v in (8, 9)]
        tl.ingest_batch([(e.to_bytes(), None) for e in more])
        tl.checkpoint()
    r = verify_log(d)
    assert r.ok and r.checkpoints_verified == len(old) + 1, r.to_dict()
    assert cli(["proof", "inclusion", "2", "--size", str(size), "--log", str(d), "--json"]) == 0
    (tmp_path / "inc.json").write_text(capsys.readouterr().out)
    assert cli(["proof", "verify", str(tmp_path / "inc.json"), "--checkpoint", str(tmp_path / "old.json"),
                "--log-key", str(d / "log.pub")]) == 0
    capsys.readouterr()
    assert cli(["checkpoint", "latest", "--note", "--log", str(d)]) == 0   # the new one is a note
    assert capsys.readouterr().out.splitlines()[1] == str(size + 2)


from hypothesis import given, settings, strategies as st  # noqa: E402

from trustlog.core.checkpoint import Checkpoint, checkpoint_body, parse_checkpoint_body  # noqa: E402
from trustlog.core.errors import EncodingError  # noqa: E402

_ext = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF), min_size=1, max_size=20).filter(
    lambda s: s.split(" ")[0] not in ("trustlog-log-time", "trustlog-rejects"))
_rejects = st.just((0, b"")) | st.tuples(st.integers(0, 2**63), st.binary(min_size=32, max_size=32))
_cps = st.builds(lambda o, n, r, t, e, rj: Checkpoint(o, n, r, t, e, rejects_size=rj[0], rejects_root=rj[1]),
                 st.from_regex(r"[a-z0-9./_-]{1,30}", fullmatch=True), st.integers(0, 2**63),
                 st.binary(min_size=32, max_size=32), st.integers(0, 2**63), st.tuples(_ext) | st.just(()), _rejects)


@settings(max_examples=200, deadline=None)
@given(_cps, st.data())
def test_checkpoint_bodies_have_exactly_one_byte_form(cp: Checkpoint, data: st.DataObject) -> None:
    """Round trip, and no other bytes parse to a checkpoint unless they are its body:
    a mutated body is refused or is the canonical body of what it parses to."""
    body = checkpoint_body(cp)
    assert parse_checkpoint_body(body) == cp
    i = data.draw(st.integers(0, len(body) - 1))
    mutated = body[:i] + bytes([data.draw(st.integers(0, 255))]) + body[i + 1:]
    try:
        got = parse_checkpoint_body(mutated)
    except EncodingError:
        return
    assert checkpoint_body(got) == mutated
