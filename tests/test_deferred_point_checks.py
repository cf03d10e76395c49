"""A trusted replay defers its Ed25519 point checks to a helper thread
(``core.keys.DeferredPointChecks``, ``ingest.replay.fold_segments``): the outcome
must be the one of checking each key on the spot — the same state when every key is
valid, and the same error, at the same record, when one is not, whatever else is wrong
with the log after it."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from trustlog.core import keys
from trustlog.core.errors import InvalidKeyError, LogCorruptionError, LogError
from trustlog.core.events import ImageSigned, RepoCreated, sign_event
from trustlog.core.keys import PublicKey, SigningKey, deferred_point_checks, validate_public_key
from trustlog.ingest import fold_backend
from trustlog.ingest.replay import fold_log

from conftest import require_compiled_fold

@pytest.fixture(scope="module")
def compiled():
    """The compiled fold's module; under CI=true a missing build fails."""
    return require_compiled_fold()


SMALL_ORDER = b"\x01" + b"\x00" * 31    # the neutral point's encoding: of small order, refused
FAR = 4_102_444_800


def test_only_a_check_with_its_words_and_inside_the_context_is_deferred() -> None:
    keys.clear_key_caches()
    bad = PublicKey("ed25519", SMALL_ORDER)
    good = SigningKey.from_seed(b"deferred-good").public_key
    with pytest.raises(InvalidKeyError):
        validate_public_key(bad, what="root")          # no deferral outside the context
    seen_in_thread: list[str] = []
    with deferred_point_checks() as d:
        with pytest.raises(InvalidKeyError):
            validate_public_key(bad)                   # no words: checked here
        keys.clear_key_caches()
        d.offset = 7
        assert validate_public_key(good, what="targets") == good
        assert validate_public_key(bad, what="root") == bad
        d.offset = 9
        assert validate_public_key(bad, what="new root") == bad

        def other_thread() -> None:                    # a thread of its own is not deferred
            try:
                validate_public_key(bad, what="root")
                seen_in_thread.append("accepted")
            except InvalidKeyError:
                seen_in_thread.append("refused")

        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert [(o, w) for _, o, w in d.pending] == [(7, "targets"), (7, "root"), (9, "new root")]
        assert d.first_failure() == (7, "root")
    assert seen_in_thread == ["refused"]
    with pytest.raises(InvalidKeyError):                # the real verdict is cached now
        validate_public_key(bad, what="root")


def test_settling_all_valid_keys_empties_the_list() -> None:
    made = [SigningKey.from_seed(b"settle%d" % i).public_key for i in range(3)]   # (checked as they are made)
    keys.clear_key_caches()
    with deferred_point_checks() as d:
        for k in made:
            validate_public_key(k, what="root")
        assert len(d.pending) == 3
        assert d.first_failure() is None
        assert d.pending == []


def _log_with_a_small_order_key(d: Path, *, where: str) -> int:
    """A log of a synthetic registry (several segments) in which one RepoCreated,
    at the returned offset, names a small-order key as ``where`` ("root keys" second,
    or the only "targets" key): written by lying to the point-check cache, as a log
    rewritten by hand, or by a build without the check, would hold it."""
    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.synthetic import SyntheticRegistry

    reg = SyntheticRegistry(repos=8, tags=80, ref_time=1_900_000_000)
    keys.clear_key_caches()
    keys._point_ok[SMALL_ORDER] = True        # the lie: the fold accepts the key as it is written
    try:
        with TrustLog(d, checkpoint_every=50, snapshot_every=None, segment_bytes=4_000) as tl:
            tl.ingest(((e.to_bytes(), None) for e in reg.phase1()), batch_size=32)
            at = tl.log.durable_offset
            root = SigningKey.from_seed(b"deferred-root")
            bad = PublicKey("ed25519", SMALL_ORDER)
            if where == "root":
                ev = RepoCreated("reg.example/bad", 1, 1_900_000_000, [root.public_key, bad], 1,
                                 [SigningKey.from_seed(b"t").public_key], 1, FAR)
            else:
                ev = RepoCreated("reg.example/bad", 1, 1_900_000_000, [root.public_key], 1, [bad], 1, FAR)
            tl.ingest([(sign_event(ev, [root]).to_bytes(), None)])
            assert tl.log.durable_offset == at + 1, "the lie did not get the key in"
            tl.ingest(((e.to_bytes(), None) for e in reg.phase2(tl.clock.last + 1)), batch_size=32)
            tl.ingest([(sign_event(ImageSigned("reg.example/bad", 2, 1_900_000_000, "targets", "v1",
                                               "sha256:" + "ab" * 32, 1, FAR), [root]).to_bytes(), None)])
    finally:
        keys.clear_key_caches()
    shutil.rmtree(d / "snapshots", ignore_errors=True)
    assert len(list((d / "log").glob("*.seg"))) > 2
    return at


def _errors(d: Path, tmp_path: Path, monkeypatch, damage=None) -> dict[str, str]:
    """The error of fold_log and of opening the log, on each fold backend."""
    from trustlog.ingest.pipeline import TrustLog

    out = {}
    for backend in ("c", "py"):
        copy = tmp_path / backend
        shutil.copytree(d, copy)
        if damage is not None:
            damage(copy)
        monkeypatch.setattr(fold_backend, "BACKEND", backend)
        for how in ("fold_log", "open"):
            keys.clear_key_caches()
            try:
                if how == "fold_log":
                    fold_log(copy)
                else:
                    TrustLog(copy, snapshot_every=None, read_only=True).close()
                out[f"{backend} {how}"] = "OK"
            except (LogCorruptionError, LogError) as e:
                out[f"{backend} {how}"] = f"{type(e).__name__}: {e}".replace(str(copy), "DIR")
    return out


@pytest.mark.parametrize("where", ["root", "targets"])
def test_a_small_order_key_stops_the_replay_at_its_record_on_both_backends(
        compiled, tmp_path: Path, monkeypatch, where: str) -> None:
    at = _log_with_a_small_order_key(tmp_path / "log", where=where)
    got = _errors(tmp_path / "log", tmp_path, monkeypatch)
    assert len(set(got.values())) <= 2, got              # fold_log and open may name the log differently
    assert got["c fold_log"] == got["py fold_log"], got
    assert got["c open"] == got["py open"], got
    assert f"record {at} cannot be replayed (INVALID_KEYS: {where}: {keys.ED25519_POINT_REFUSED})" in got["c fold_log"], got


def _rewrite_record(copy: Path, offset: int) -> None:
    """Replace record ``offset`` by one whose CRC is right but whose event has no fields
    (a log rewritten by hand: it does not replay, and its Merkle leaf no longer matches)."""
    import crc32c

    from trustlog.core.events import Envelope, Signature
    from trustlog.ingest.records import LogRecord, decode_record_trusted, encode_record

    for seg in sorted((copy / "log").glob("*.seg")):
        base = int(seg.name.split(".")[0])
        b = seg.read_bytes()
        pos, off = 0, base
        while pos < len(b):
            length = int.from_bytes(b[pos:pos + 4], "big")
            if off == offset:
                rec = decode_record_trusted(b[pos + 8:pos + 8 + length])[0]
                body = encode_record(LogRecord(rec.log_time, Envelope(b"\x80", [Signature("k", b"s")]).to_bytes()))
                head = len(body).to_bytes(4, "big")
                frame = head + crc32c.crc32c(body, crc32c.crc32c(head)).to_bytes(4, "big") + body
                seg.write_bytes(b[:pos] + frame + b[pos + 8 + length:])
                return
            pos += 8 + length
            off += 1
    raise AssertionError(f"no record {offset}")


def test_a_small_order_key_is_reported_before_a_later_record_that_does_not_replay(
        compiled, tmp_path: Path, monkeypatch) -> None:
    """The compiled fold goes on past a deferred key; a later record that fails must
    not hide it: the replay stops at the key's record, as the Python fold (which checks
    each key on the spot) does."""
    at = _log_with_a_small_order_key(tmp_path / "log", where="targets")
    segs = sorted(int(p.name.split(".")[0]) for p in (tmp_path / "log" / "log").glob("*.seg"))
    later = next(b for b in segs if b > at) + 1          # a record in a later segment
    got = _errors(tmp_path / "log", tmp_path, monkeypatch, lambda copy: _rewrite_record(copy, later))
    assert got["c fold_log"] == got["py fold_log"], got
    assert f"record {at} cannot be replayed (INVALID_KEYS: targets:" in got["c fold_log"], got
    assert got["c open"] == got["py open"], got


def test_a_log_of_valid_keys_opens_alike_with_the_checks_deferred(compiled, tmp_path: Path, monkeypatch) -> None:
    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.snapshots import encode_state
    from trustlog.ingest.synthetic import SyntheticRegistry

    d = tmp_path / "log"
    reg = SyntheticRegistry(repos=8, tags=80, ref_time=1_900_000_000)
    with TrustLog(d, snapshot_every=None, segment_bytes=10_000) as tl:
        tl.ingest(((e.to_bytes(), None) for e in reg.phase1()), batch_size=32)
    states = {}
    for backend in ("c", "py"):
        monkeypatch.setattr(fold_backend, "BACKEND", backend)
        keys.clear_key_caches()
        states[backend] = encode_state(fold_log(d))
        keys.clear_key_caches()
        with TrustLog(d, snapshot_every=None, read_only=True) as tl:
            assert encode_state(tl.state) == states[backend]
    assert states["c"] == states["py"]
