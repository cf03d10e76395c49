"""Fault injection on every derived file: the segments are the truth.

Each derived file of a log (Merkle levels and their checksums, the index files, the
segments' offset indexes, snapshots) is damaged in each way — a flipped byte, a cut,
deletion, a same-length edit — and then:

* a read-only open (what `inspect`, `verify`, `audit` use) gives the same state,
  verdicts and audit as before, says which file is wrong in one line, and changes no
  byte on disk;
* `log verify` names the file, and blames no record;
* a writer open rebuilds the file from the segments, after which `log verify` is clean;
* the CLI never prints a traceback.
"""
from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from logtools import CI, history
from sim import NOW
from trustlog.cli.main import main as cli
from trustlog.core.errors import LogCorruptionError, LogError
from trustlog.ingest.logcheck import verify_log
from trustlog.ingest.pipeline import TrustLog
from trustlog.services.audit import audit_key
from trustlog.verifier.batch import BatchVerifier, requests_for_state


def _flip(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:]


def _cut(data: bytes) -> bytes:
    return data[:len(data) * 2 // 3]


def _same_length(data: bytes) -> bytes:
    """Overwrite 8 bytes in the middle with other bytes (a plausible, careful edit)."""
    i = len(data) // 3
    return data[:i] + bytes((b + 1) & 0xFF for b in data[i:i + 8]) + data[i + 8:]


DAMAGE: dict[str, Callable[[bytes], bytes] | None] = {
    "flip": _flip, "truncate": _cut, "delete": None, "same-length": _same_length,
}
DERIVED = ["merkle/leaves.hashes", "merkle/level-01.hashes", "merkle/level-03.hashes", "merkle/sums.dat",
           "index/names.dat", "index/postings.dat", "index/heads.dat", "log/*.idx", "snapshots/*.snap"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("derived") / "log"
    events = history(30)
    with TrustLog(d, checkpoint_every=16, snapshot_every=None, segment_bytes=8 * 1024) as tl:
        for i in range(0, len(events), 7):
            tl.ingest_batch([(e.to_bytes(), None) for e in events[i:i + 7]])
        tl.snapshot()
    return d


def flipped_copy(pristine: Path, tmp_path: Path, rel: str, index: int) -> tuple[Path, Path, bytes]:
    """A copy of the pristine log with one bit of byte ``index`` of file ``rel`` flipped:
    (the log, the file, its new bytes)."""
    d = tmp_path / "log"
    shutil.copytree(pristine, d)
    f = d / rel
    data = bytearray(f.read_bytes())
    data[index] ^= 1
    f.write_bytes(bytes(data))
    return d, f, bytes(data)


def _facts(tl: TrustLog) -> tuple:
    verdicts = [(v.repo, v.tag, v.code) for v in BatchVerifier(tl.state, ref_time=NOW).verify(
        list(requests_for_state(tl.state)))]
    return tl.state.version, sorted(tl.state.repos), verdicts, audit_key(tl, CI.keyid, ref_time=NOW).summary()


@pytest.fixture(scope="module")
def baseline(pristine: Path) -> tuple:
    with TrustLog(pristine, read_only=True) as tl:
        assert tl.notices == []
        return _facts(tl)


def _digest(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _target(d: Path, pattern: str) -> Path:
    found = sorted(d.glob(pattern))
    assert found, pattern
    return found[0]


@pytest.mark.parametrize("how", list(DAMAGE))
@pytest.mark.parametrize("pattern", DERIVED)
def test_damaged_derived_file(pristine: Path, baseline: tuple, tmp_path: Path, pattern: str, how: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "log"
    shutil.copytree(pristine, d)
    target = _target(d, pattern)
    rel = str(target.relative_to(d))
    change = DAMAGE[how]
    if change is None:
        target.unlink()
    else:
        target.write_bytes(change(target.read_bytes()))
    before = _digest(d)

    # (1) read-only: same answers, one line naming the file, nothing written
    with TrustLog(d, read_only=True) as tl:
        assert _facts(tl) == baseline
        notices = list(tl.notices)
    assert _digest(d) == before, "a read-only open changed the log directory"
    # a deleted checksum file means the levels are checked by rehashing; a deleted
    # snapshot means replaying from an older one: nothing is wrong, nothing to report
    quiet = how == "delete" and pattern in ("merkle/sums.dat", "snapshots/*.snap")
    if not quiet:
        assert any(rel in n or str(target.parent.relative_to(d)) in n for n in notices), notices
    assert all("\n" not in n for n in notices)

    # (2) log verify: names the file, blames no record
    r = verify_log(d)
    blamed = [f for f in r.findings if f.check not in ("snapshot",)]
    assert blamed == [], [f.describe() for f in r.findings]
    if pattern.startswith("snapshots/") and not quiet:
        assert any(target.name in f.what for f in r.findings)
    elif not quiet:
        assert not r.derived_ok and any(f.segment and (f.segment == rel or rel.startswith(f.segment) or
                                                       f.segment.startswith(rel.split("/")[0]))
                                        for f in r.derived), [vars(f) for f in r.derived]
    capsys.readouterr()
    code = cli(["log", "verify", "--log", str(d)])
    out = capsys.readouterr()
    assert code == (0 if quiet else 1) and "Traceback" not in out.err + out.out
    assert cli(["inspect", "--log", str(d), "registry.example.com/team/a"]) == 0
    assert "Traceback" not in capsys.readouterr().err

    # (3) the writer rebuilds from the segments (a snapshot: `log repair` sets it aside
    # and writes it again); then everything is clean again
    with TrustLog(d) as tl:
        assert _facts(tl)[:3] == baseline[:3]
    if pattern.startswith("snapshots/") and not quiet:
        assert cli(["log", "repair", "--log", str(d)]) == 0
        assert rel in capsys.readouterr().out
    r = verify_log(d)
    assert r.ok and r.derived_ok, ([f.describe() for f in r.findings], [vars(f) for f in r.derived])
    with TrustLog(d, read_only=True) as tl:
        assert _facts(tl) == baseline
        assert tl.notices == []


def test_leaf_flip_does_not_blame_the_record(pristine: Path, tmp_path: Path) -> None:
    """The finding from the review: a flipped leaf hash made `log verify` say an intact
    record was altered. Now the leaf file is named and the record is not."""
    d, _, _ = flipped_copy(pristine, tmp_path, "merkle/leaves.hashes", 32 * 20 + 5)
    r = verify_log(d)
    assert r.ok and not r.derived_ok
    assert [(f.segment, f.offset) for f in r.derived] == [("merkle/leaves.hashes", 20)]


@pytest.mark.parametrize("read_only", [True, False])
def test_leaf_flip_with_its_checksum_fixed_is_decided_by_the_records(pristine: Path, baseline: tuple,
                                                                    tmp_path: Path, read_only: bool) -> None:
    """Someone who also rewrites sums.dat gets past the checksum; the record-to-leaf
    comparison of the trusted replay then finds the leaf, and the signed root over the
    records says the leaf file, not the record, is wrong."""
    from trustlog.ingest.merkle_store import SUMS_FILE, MerkleStore

    d = tmp_path / "log"
    shutil.copytree(pristine, d)
    (d / "snapshots").rename(tmp_path / "no-snapshots")    # replay every record
    leaves = d / "merkle" / "leaves.hashes"
    data = bytearray(leaves.read_bytes())
    data[32 * 2] ^= 1                                      # leaf 2: no peak of the tree
    leaves.write_bytes(bytes(data))
    store = MerkleStore.open(d / "merkle", read_only=True)
    (d / "merkle" / SUMS_FILE).write_bytes(store.sums_bytes())
    store.close()
    with TrustLog(d, read_only=read_only) as tl:
        assert _facts(tl) == baseline
        assert any("leaf 2 of leaves.hashes" in n and "checkpoints match" in n for n in tl.notices), tl.notices
    assert (leaves.read_bytes() == bytes(data)) is read_only


def test_inner_node_that_is_no_peak_is_found_and_proofs_still_verify(pristine: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # node (1, 0): not a peak of a tree of 63 leaves
    d, level, data = flipped_copy(pristine, tmp_path, "merkle/level-01.hashes", 0)
    assert cli(["proof", "inclusion", "0", "--log", str(d), "--json"]) == 0
    captured = capsys.readouterr()
    assert "level-01.hashes" in captured.err and '"proof"' in captured.out
    assert level.read_bytes() == data                # a reader rebuilt it in memory only
    r = verify_log(d)
    assert r.ok and [f.segment for f in r.derived] == ["merkle/level-01.hashes"]


def test_edited_name_changes_no_answer(pristine: Path, baseline: tuple, tmp_path: Path) -> None:
    """The review's same-length edit of one repository name in names.dat."""
    d = tmp_path / "log"
    shutil.copytree(pristine, d)
    names = d / "index" / "names.dat"
    names.write_bytes(names.read_bytes().replace(b"team/a", b"team/z", 1))
    with TrustLog(d) as tl:
        assert any("names.dat" in n for n in tl.notices)
        assert _facts(tl) == baseline
        again = tl.ingest_batch([(e.to_bytes(), None) for e in history(30)[:5]])
        assert (again.accepted, again.rejected, again.duplicates) == (0, 0, 5)


def test_garbage_postings_is_no_memory_error(pristine: Path, baseline: tuple, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "log"
    shutil.copytree(pristine, d)
    postings = d / "index" / "postings.dat"
    postings.write_bytes(b"\xff" * len(postings.read_bytes()))
    assert cli(["audit", "--log", str(d), "--key", CI.keyid, "--json"]) == 0
    err = capsys.readouterr().err
    assert "postings.dat" in err and "Traceback" not in err


# -- checkpoints: a torn tail is cut by the writer, tampering is kept -------------------------


def test_complete_checkpoint_frame_with_bad_crc_is_tampering(pristine: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    d, cps, data = flipped_copy(pristine, tmp_path, "merkle/checkpoints.log", -10)  # inside the last, complete frame
    for argv in (["inspect", "registry.example.com/team/a"], ["log", "repair"], ["ingest", str(tmp_path / "x")]):
        (tmp_path / "x").write_text("")
        assert cli([*argv, "--log", str(d)]) == 2
        err = capsys.readouterr().err
        assert "checkpoints.log" in err and "altered" in err and "Traceback" not in err
    assert cps.read_bytes() == data                  # the evidence is still there
    with pytest.raises(LogCorruptionError, match="kept as evidence"):
        TrustLog(d)
    r = verify_log(d)
    assert not r.ok and r.first.check == "checkpoint" and "CRC" in r.first.what


@pytest.mark.parametrize("tail", ["partial", "zeros"])
def test_torn_checkpoint_tail_is_cut_by_the_writer_only(pristine: Path, tmp_path: Path, tail: str) -> None:
    d = tmp_path / "log"
    shutil.copytree(pristine, d)
    cps = d / "merkle" / "checkpoints.log"
    good = cps.read_bytes()
    torn = good + (b"\x00\x00\x01" if tail == "partial" else b"\x00\x00\x00\x10" + b"\x00" * 4 + b"\x00" * 16)
    cps.write_bytes(torn)
    with TrustLog(d, read_only=True) as tl:
        assert tl.tree.latest() is not None
    assert cps.read_bytes() == torn                  # a reader leaves it
    r = verify_log(d)
    assert r.ok and any("torn" in w for w in r.warnings), r.to_dict()
    with TrustLog(d) as tl:
        assert any("torn" in n for n in tl.notices)
    assert cps.read_bytes() == good


# -- read-only commands on a torn segment ----------------------------------------------------


def test_read_only_commands_do_not_cut_a_torn_segment(pristine: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "log"
    shutil.copytree(pristine, d)
    last = sorted((d / "log").glob("*.seg"))[-1]
    torn = last.read_bytes() + b"\x00\x00\x01\x00garbage"
    last.write_bytes(torn)
    before = _digest(d)
    for argv in (["inspect", "registry.example.com/team/a"], ["verify"], ["audit", "--key", CI.keyid],
                 ["state", "registry.example.com/team/a", "--at", "10"], ["checkpoint", "list"],
                 ["proof", "inclusion", "3"], ["snapshot", "list"], ["log", "verify"]):
        assert cli([*argv, "--log", str(d)]) == 0, argv
        assert "Traceback" not in capsys.readouterr().err
    assert _digest(d) == before
    assert cli(["log", "repair", "--log", str(d)]) == 0
    assert "recovered" in capsys.readouterr().out
    assert len(last.read_bytes()) == len(torn) - len(b"\x00\x00\x01\x00garbage")


# -- the writer lock ---------------------------------------------------------------------


def test_deleting_lock_does_not_let_a_second_writer_in(pristine: Path, tmp_path: Path) -> None:
    d = tmp_path / "log"
    shutil.copytree(pristine, d)
    with TrustLog(d):
        (d / "log" / "LOCK").unlink()
        with pytest.raises(LogError, match="already open for writing"):
            TrustLog(d)
        with TrustLog(d, read_only=True) as reader:   # readers never lock
            assert reader.state.version > 0


# -- the rejects log is evidence too -----------------------------------------------------------


@pytest.fixture(scope="module")
def with_rejects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from logtools import TARGETS_A

    d = tmp_path_factory.mktemp("rejects") / "log"
    events = history(6)
    forged = events[4].to_bytes()[:-3] + b"\x00\x00\x00"        # a forged signature attempt
    with TrustLog(d, snapshot_every=None) as tl:
        tl.ingest_batch([(e.to_bytes(), None) for e in events])
        r = tl.ingest_batch([(b"{not an envelope", None), (forged, None)])
        assert r.rejected == 2, r
    assert TARGETS_A is not None
    return d


def _reject_damage(d: Path, how: str) -> None:
    rdir = d / "rejects"
    if how == "delete":
        shutil.rmtree(rdir)
    elif how == "replace":
        shutil.rmtree(rdir)
        with TrustLog(d.parent / "other") as other:
            other.ingest_batch([(b"{something else", None)])
        shutil.copytree(d.parent / "other" / "rejects", rdir)
    else:
        seg = sorted(rdir.glob("*.seg"))[0]
        data = bytearray(seg.read_bytes())
        data[len(data) // 4] ^= 1
        seg.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["delete", "replace", "flip"])
def test_rejects_log_tampering_is_caught(with_rejects: Path, tmp_path: Path, how: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "log"
    shutil.copytree(with_rejects, d)
    assert verify_log(d).ok and verify_log(d).rejects == 2
    _reject_damage(d, how)
    r = verify_log(d)
    assert not r.ok and r.first.check == "rejects" and "rejects" in r.first.what, r.to_dict()
    assert cli(["log", "verify", "--log", str(d)]) == 1
    capsys.readouterr()
    for argv in (["ingest", str(tmp_path / "empty.jsonl")], ["log", "repair"]):
        (tmp_path / "empty.jsonl").write_text("")
        assert cli([*argv, "--log", str(d)]) == 2
        err = capsys.readouterr().err
        assert f"{d}/rejects" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not verify_log(d).ok                       # still caught: nothing was papered over
    code = cli(["inspect", "registry.example.com/team/a", "--log", str(d)])   # a reader: says so, or refuses
    err = capsys.readouterr().err
    assert code in (0, 2) and f"{d}/rejects" in err and "Traceback" not in err


# -- disk full, bad numbers ------------------------------------------------------------------


def test_disk_full_after_the_records_are_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The final checkpoint cannot be written: the records are durable, the command says
    so and where the disk is full, exits 0, and the next open signs the checkpoint."""
    import errno

    from trustlog.core.events import envelope_to_json
    from trustlog.ingest.merkle_store import CheckpointStore

    events = history(8)
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"".join(envelope_to_json(e) + b"\n" for e in events))
    d = tmp_path / "log"

    def full(self, signed, fsync=True):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(CheckpointStore, "append", full)
    assert cli(["ingest", str(f), "--log", str(d), "--init"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "checkpoints.log" in warning[0] and "durable" in warning[0], err
    monkeypatch.undo()
    with TrustLog(d) as tl:
        assert tl.state.version == len(events)
    assert verify_log(d).ok and verify_log(d).checkpoints >= 1
    assert not list(d.glob(".log-key.*"))


def test_log_key_on_a_full_disk_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from trustlog.ingest.keystore import KeyStore

    def full(self, *a, **kw):
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "log.key").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(KeyStore, "save", full)
    with pytest.raises(LogError, match=f"cannot create the log key in {tmp_path / 'log'}: No space left"):
        TrustLog(tmp_path / "log")
    assert not list((tmp_path / "log").glob(".log-key.*"))


@pytest.mark.parametrize("argv", [["--batch", "0"], ["--max-event-bytes", "0"], ["--max-event-bytes", "-1"],
                                  ["--batch", "x"]])
def test_numeric_options_are_checked(tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text("")
    with pytest.raises(SystemExit) as e:
        cli(["ingest", str(f), "--log", str(tmp_path / "log"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and argv[0] in err[0], err
    assert not (tmp_path / "log").exists()


def test_readers_while_a_writer_appends(tmp_path: Path) -> None:
    """Readers take no lock: opened while a writer appends and checkpoints, each sees a
    consistent prefix (never "records were lost", never a false alarm about the rejects
    log or the index) and writes nothing."""
    import threading

    d = tmp_path / "log"
    events = history(60)
    with TrustLog(d, checkpoint_every=1, snapshot_every=None) as tl:
        tl.ingest_batch([(e.to_bytes(), None) for e in events[:3]])
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with TrustLog(d, checkpoint_every=1, snapshot_every=None) as tl:
                for i in range(3, len(events), 3):
                    tl.ingest_batch([(e.to_bytes(), None) for e in events[i:i + 3]]
                                    + [(b"{bad %d" % i, None)])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            done.set()

    t = threading.Thread(target=write)
    t.start()
    seen = []
    while not done.is_set() or len(seen) < 3:
        with TrustLog(d, read_only=True) as reader:
            seen.append(reader.state.version)
            assert all("torn" in n for n in reader.notices), reader.notices
    t.join()
    assert not errors, errors
    assert seen == sorted(seen) and seen[-1] == len(events)
    assert verify_log(d).ok and verify_log(d).derived_ok
