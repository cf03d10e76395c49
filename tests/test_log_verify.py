"""`trustlog log verify`: an offline audit that finds every kind of tampering, and says
exactly where the first inconsistency is."""
from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from logtools import decode_body, history, read_frames, reencode, segment_path, write_frames
from sim import key
from trustlog.cli.main import main as cli
from trustlog.core.checkpoint import Checkpoint, decode_checkpoint, sign_checkpoint
from trustlog.core.encoding import canonical_bytes
from trustlog.core.errors import LogError
from trustlog.core.events import Envelope
from trustlog.core.merkle import leaf_hash
from trustlog.ingest.logcheck import verify_log
from trustlog.ingest.merkle_store import CHECKPOINTS_FILE, _FRAME
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.records import LogRecord
from trustlog.ingest.transparency import load_public_key


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pristine")
    events = history(12)
    with TrustLog(d, checkpoint_every=10, snapshot_every=None) as tl:
        for i in range(0, len(events), 5):   # small batches: several checkpoints
            tl.ingest_batch([(e.to_bytes(), None) for e in events[i:i + 5]])
        assert tl.log.next_offset == len(events)
    return d


@pytest.fixture
def logdir(pristine: Path, tmp_path: Path) -> Path:
    d = tmp_path / "log"
    shutil.copytree(pristine, d)
    return d


def _frames(d: Path):
    seg = segment_path(d)
    return seg, read_frames(seg)


def _alter(d: Path, offset: int, change) -> tuple[str, int]:
    """Apply ``change(rec, env, event) -> bytes`` to record ``offset``; CRCs fixed up."""
    seg, frames = _frames(d)
    bodies = [b for _, b in frames]
    bodies[offset] = change(*decode_body(bodies[offset]))
    write_frames(seg, bodies)
    return seg.name, frames[offset][0]


def test_clean_log_verifies(logdir: Path) -> None:
    r = verify_log(logdir, load_public_key(logdir / "log.pub"))
    assert r.ok, r.to_dict()
    assert r.records == 27 and r.checkpoints >= 3 and r.checkpoints == r.checkpoints_verified
    assert r.signatures_verified >= 27
    assert cli(["log", "verify", "--log", str(logdir), "--json"]) == 0


def test_altered_payload_with_fixed_crc(logdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def new_digest(rec, env, ev):
        forged = msgspec.structs.replace(ev, digest="sha256:" + "ee" * 32)
        return reencode(rec, Envelope(canonical_bytes(forged), env.signatures))

    seg, pos = _alter(logdir, 7, new_digest)
    r = verify_log(logdir)
    assert not r.ok
    assert (r.first.offset, r.first.segment, r.first.position) == (7, seg, pos)
    assert any(f.check == "fold" and "BAD_SIGNATURE" in f.what and f.offset == 7 for f in r.findings)
    assert cli(["log", "verify", "--log", str(logdir), "--json"]) == 1
    out = msgspec.json.decode(capsys.readouterr().out)
    assert out["ok"] is False and out["first_inconsistency"]["offset"] == 7
    with pytest.raises(LogError):   # the writer refuses it too
        TrustLog(logdir)


def test_unsigned_field_altered_is_caught_by_the_merkle_tree(logdir: Path) -> None:
    """The log time is not covered by any event signature; moving it (e.g. before a
    compromise point) is caught by the leaf hash, and by the checkpoint root when the
    stored tree is gone too."""
    def earlier(rec, env, ev):
        return reencode(LogRecord(rec.log_time - 1, rec.envelope, rec.source), env)

    _alter(logdir, 9, earlier)
    r = verify_log(logdir)
    assert not r.ok and r.first.offset == 9 and r.first.check == "merkle"
    shutil.rmtree(logdir / "merkle" / "leaves.hashes", ignore_errors=True)
    (logdir / "merkle" / "leaves.hashes").unlink(missing_ok=True)
    r = verify_log(logdir)
    assert not r.ok and r.first.check == "checkpoint" and "root" in r.first.what


def test_removed_record(logdir: Path) -> None:
    seg, frames = _frames(logdir)
    bodies = [b for _, b in frames]
    del bodies[11]
    write_frames(seg, bodies)
    r = verify_log(logdir)
    assert not r.ok
    assert (r.first.offset, r.first.position) == (11, frames[11][0])


def test_removed_last_record(logdir: Path) -> None:
    seg, frames = _frames(logdir)
    write_frames(seg, [b for _, b in frames][:-1])
    (logdir / "merkle" / "leaves.hashes").unlink()
    r = verify_log(logdir)
    assert not r.ok and r.first.check == "checkpoint" and "removed" in r.first.what


def test_swapped_records(logdir: Path) -> None:
    seg, frames = _frames(logdir)
    bodies = [b for _, b in frames]
    bodies[5], bodies[6] = bodies[6], bodies[5]
    write_frames(seg, bodies)
    r = verify_log(logdir)
    assert not r.ok
    assert (r.first.offset, r.first.position) == (5, frames[5][0])
    (logdir / "merkle" / "leaves.hashes").unlink()  # without the stored tree: log time order
    r = verify_log(logdir)
    assert not r.ok and r.first.offset == 6 and r.first.check == "order"


def test_signature_swapped_between_two_events(logdir: Path) -> None:
    seg, frames = _frames(logdir)
    bodies = [b for _, b in frames]
    # offsets 3 and 7: both ImageSigned by the targets key of repo A
    (r3, e3, _), (r7, e7, _) = decode_body(bodies[3]), decode_body(bodies[7])
    assert e3.signatures[0].keyid == e7.signatures[0].keyid
    bodies[3] = reencode(r3, Envelope(e3.payload, e7.signatures))
    bodies[7] = reencode(r7, Envelope(e7.payload, e3.signatures))
    write_frames(seg, bodies)
    shutil.rmtree(logdir / "merkle")   # leave the signatures alone to catch it
    shutil.rmtree(logdir / "snapshots", ignore_errors=True)
    r = verify_log(logdir, load_public_key(logdir / "log.pub"))
    assert not r.ok
    assert r.first.offset == 3 and r.first.check == "fold" and "BAD_SIGNATURE" in r.first.what


def _rewrite_checkpoints(d: Path, change) -> None:
    from trustlog.ingest.merkle_store import CheckpointStore

    store = CheckpointStore.open(d / "merkle" / CHECKPOINTS_FILE)
    cps = store.all()
    store.close()
    cps = change(cps)
    import crc32c
    data = b""
    for s in cps:
        payload = canonical_bytes(s)
        data += _FRAME.pack(len(payload), crc32c.crc32c(payload)) + payload
    (d / "merkle" / CHECKPOINTS_FILE).write_bytes(data)


def test_checkpoint_resigned_by_another_key(logdir: Path) -> None:
    impostor = key("impostor-log-key")

    def resign(cps):
        cp = decode_checkpoint(cps[1].checkpoint)
        cps[1] = sign_checkpoint(cp, impostor)
        return cps

    _rewrite_checkpoints(logdir, resign)
    r = verify_log(logdir, load_public_key(logdir / "log.pub"))
    assert not r.ok and r.first.check == "checkpoint" and "#1" in r.first.what
    assert cli(["log", "verify", "--log", str(logdir)]) == 1


def test_checkpoint_root_changed_even_with_the_real_key(logdir: Path) -> None:
    """An attacker holding the log key can sign anything, but not a root that the
    records hash to: the checkpoint no longer matches the log."""
    from trustlog.ingest.transparency import load_or_create_log_key

    real = load_or_create_log_key(logdir)

    def forge(cps):
        cp = decode_checkpoint(cps[0].checkpoint)
        cps[0] = sign_checkpoint(Checkpoint(cp.origin, cp.tree_size, leaf_hash(b"forged"), cp.log_time), real)
        return cps

    _rewrite_checkpoints(logdir, forge)
    r = verify_log(logdir)
    assert not r.ok and r.first.check == "checkpoint" and "root" in r.first.what


def test_checkpoint_with_wrong_signature_bytes(logdir: Path) -> None:
    def flip(cps):
        s = cps[-1]
        sig = bytearray(s.sig)
        sig[3] ^= 1
        cps[-1] = msgspec.structs.replace(s, sig=bytes(sig))
        return cps

    _rewrite_checkpoints(logdir, flip)
    r = verify_log(logdir)
    assert not r.ok and r.first.check == "checkpoint"


def test_crc_damage_in_the_middle(logdir: Path) -> None:
    seg, frames = _frames(logdir)
    data = bytearray(seg.read_bytes())
    pos = frames[4][0] + 20
    data[pos] ^= 0xFF
    seg.write_bytes(bytes(data))
    r = verify_log(logdir)
    assert not r.ok and (r.first.check, r.first.offset, r.first.position) == ("crc", 4, frames[4][0])


def test_external_checkpoint_from_a_witness(logdir: Path, tmp_path: Path) -> None:
    """A checkpoint kept elsewhere still catches a log rewritten together with its tree
    and checkpoints by someone holding the log key."""
    from trustlog.ingest.transparency import checkpoint_to_json

    with TrustLog(logdir) as tl:
        witness = tl.tree.latest()[0]
    seg, frames = _frames(logdir)
    bodies = [b for _, b in frames]
    shutil.rmtree(logdir / "merkle")
    shutil.rmtree(logdir / "snapshots", ignore_errors=True)
    rec, env, ev = decode_body(bodies[-1])
    write_frames(seg, bodies[:-1])         # drop the last event, then re-sign everything
    with TrustLog(logdir):
        pass
    assert verify_log(logdir).ok           # self-consistent again...
    cp = tmp_path / "witness.json"
    cp.write_bytes(msgspec.json.encode(checkpoint_to_json(witness)))
    r = verify_log(logdir, checkpoints=[witness])
    assert not r.ok and "removed" in r.first.what                # ...but not to the witness
    assert cli(["log", "verify", "--log", str(logdir), "--checkpoint", str(cp)]) == 1


def test_proofs_verify_against_a_checkpoint_without_the_log(logdir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    def run(*argv: str) -> tuple[int, str]:
        rc = cli(list(argv))
        return rc, capsys.readouterr().out

    rc, out = run("checkpoint", "latest", "--log", str(logdir))
    assert rc == 0
    (tmp_path / "cp.json").write_text(out)
    rc, old = run("checkpoint", "list", "--log", str(logdir), "--json")
    first = msgspec.json.decode(old)[0]
    (tmp_path / "old.json").write_bytes(msgspec.json.encode(first))
    rc, out = run("proof", "inclusion", "13", "--log", str(logdir), "--json")
    (tmp_path / "inc.json").write_text(out)
    rc, out = run("proof", "consistency", str(first["tree_size"]), "--log", str(logdir), "--json")
    (tmp_path / "con.json").write_text(out)
    offline = tmp_path / "elsewhere"
    offline.mkdir()
    shutil.copy(logdir / "log.pub", offline / "log.pub")
    shutil.rmtree(logdir)                  # no log from here on
    pub = str(offline / "log.pub")
    assert run("proof", "verify", str(tmp_path / "inc.json"), "--checkpoint", str(tmp_path / "cp.json"),
               "--log-key", pub)[0] == 0
    assert run("proof", "verify", str(tmp_path / "con.json"), "--checkpoint", str(tmp_path / "cp.json"),
               "--checkpoint", str(tmp_path / "old.json"), "--log-key", pub)[0] == 0
    proof = msgspec.json.decode((tmp_path / "inc.json").read_bytes())
    proof["leaf_index"] = 12
    (tmp_path / "bad.json").write_bytes(msgspec.json.encode(proof))
    assert run("proof", "verify", str(tmp_path / "bad.json"), "--checkpoint", str(tmp_path / "cp.json"),
               "--log-key", pub)[0] == 1
    other = tmp_path / "other"
    other.mkdir()
    from trustlog.ingest.keystore import KeyStore
    KeyStore(other).generate("log")
    assert run("proof", "verify", str(tmp_path / "inc.json"), "--checkpoint", str(tmp_path / "cp.json"),
               "--log-key", str(other / "log.pub"))[0] == 1
