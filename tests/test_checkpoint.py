"""Signed checkpoints and their append-only file."""
from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from trustlog.core.checkpoint import (
    CHECKPOINT_CONTEXT,
    Checkpoint,
    SignedCheckpoint,
    _LegacyCheckpoint,
    decode_checkpoint,
    decode_signed_checkpoint,
    encode_signed_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from trustlog.core.encoding import canonical_bytes
from trustlog.core.errors import EncodingError, LogCorruptionError, LogError, SignatureError, TrustlogError
from trustlog.core.keys import SigningKey
from trustlog.core.merkle import leaf_hash
from trustlog.ingest.merkle_store import CHECKPOINTS_FILE, CheckpointStore, MerkleStore

KEY = SigningKey.from_seed(b"checkpoint test key")
OTHER = SigningKey.from_seed(b"another key")
ROOT = bytes(range(32))


def cp(size: int = 5, root: bytes = ROOT, origin: str = "trustlog/partition-0") -> Checkpoint:
    return Checkpoint(origin=origin, tree_size=size, root_hash=root, log_time=1_700_000_000_000_000_000 + size)


def resign(body: bytes, key: SigningKey = KEY) -> SignedCheckpoint:
    """A valid note signature over arbitrary bytes, to test what verification does after it."""
    return SignedCheckpoint(checkpoint=body, keyid=key.keyid, sig=key.sign(body))


def legacy(c: Checkpoint, key: SigningKey = KEY) -> SignedCheckpoint:
    """A checkpoint as logs before the note format stored it (MessagePack behind a context)."""
    body = canonical_bytes(_LegacyCheckpoint(c.origin, c.tree_size, c.root_hash, c.log_time))
    return SignedCheckpoint(checkpoint=body, keyid=key.keyid, sig=key.sign(CHECKPOINT_CONTEXT + body))


def test_round_trip() -> None:
    signed = sign_checkpoint(cp(), KEY)
    assert verify_checkpoint(signed, KEY.public_key) == cp()
    assert verify_checkpoint(signed, KEY.public_key, origin="trustlog/partition-0") == cp()
    again = decode_signed_checkpoint(encode_signed_checkpoint(signed))
    assert verify_checkpoint(again, KEY.public_key) == cp()
    assert signed.checkpoint == (b"trustlog/partition-0\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
                                 b"trustlog-log-time 1700000000000000005\n")


def test_extension_lines_round_trip() -> None:
    c = Checkpoint("trustlog/partition-0", 3, ROOT, 7, ("example-ext 2 " + "A" * 43 + "=",))
    signed = sign_checkpoint(c, KEY)
    assert signed.checkpoint.endswith(b"\nexample-ext 2 " + b"A" * 43 + b"=\n")
    assert verify_checkpoint(signed, KEY.public_key) == c
    # the rejects commitment is a field, written as its own extension line before the others
    r = Checkpoint("trustlog/partition-0", 3, ROOT, 7, ("example-ext x",), rejects_size=2, rejects_root=ROOT)
    signed = sign_checkpoint(r, KEY)
    assert b"\ntrustlog-rejects 2 " in signed.checkpoint and signed.checkpoint.endswith(b"\nexample-ext x\n")
    assert verify_checkpoint(signed, KEY.public_key) == r
    for bad in ("", "two\nlines", "trustlog-log-time 5", "trustlog-rejects 2 " + "A" * 43 + "="):
        with pytest.raises(ValueError, match="extension"):
            Checkpoint("o", 1, ROOT, 1, (bad,))


@pytest.mark.parametrize("keytype", ["ed25519", "ecdsa-p256", "ecdsa-p256-der"])
def test_legacy_checkpoints_still_verify(keytype: str) -> None:
    key = KEY if keytype == "ed25519" else SigningKey.generate(keytype)
    old = legacy(cp(), key)
    assert verify_checkpoint(old, key.public_key) == cp()
    assert decode_checkpoint(old.checkpoint) == cp()


def test_new_checkpoints_need_an_ed25519_key() -> None:
    with pytest.raises(SignatureError, match="Ed25519"):
        sign_checkpoint(cp(), SigningKey.generate("ecdsa-p256"))


def test_wrong_key_is_rejected() -> None:
    signed = sign_checkpoint(cp(), KEY)
    with pytest.raises(SignatureError, match="not by the expected key"):
        verify_checkpoint(signed, OTHER.public_key)
    forged = SignedCheckpoint(signed.checkpoint, OTHER.keyid, signed.sig)  # relabelled
    with pytest.raises(SignatureError, match="does not verify"):
        verify_checkpoint(forged, OTHER.public_key)


@pytest.mark.parametrize("make", [sign_checkpoint, legacy], ids=["note", "legacy"])
def test_tampering_is_rejected(make) -> None:
    signed = make(cp(), KEY)
    for i in range(len(signed.checkpoint)):
        body = bytearray(signed.checkpoint)
        body[i] ^= 0x01
        with pytest.raises(TrustlogError):
            verify_checkpoint(SignedCheckpoint(bytes(body), signed.keyid, signed.sig), KEY.public_key)
    sig = bytearray(signed.sig)
    sig[0] ^= 0x80
    with pytest.raises(SignatureError):
        verify_checkpoint(SignedCheckpoint(signed.checkpoint, signed.keyid, bytes(sig)), KEY.public_key)


def test_signature_is_domain_separated() -> None:
    """A legacy body signed bare, or a note body signed behind the legacy context, is refused."""
    body = legacy(cp()).checkpoint
    with pytest.raises(SignatureError):
        verify_checkpoint(SignedCheckpoint(body, KEY.keyid, KEY.sign(body)), KEY.public_key)
    note = sign_checkpoint(cp(), KEY).checkpoint
    with pytest.raises(SignatureError):
        verify_checkpoint(SignedCheckpoint(note, KEY.keyid, KEY.sign(CHECKPOINT_CONTEXT + note)), KEY.public_key)


def test_other_origin_is_rejected() -> None:
    signed = sign_checkpoint(cp(origin="trustlog/partition-1"), KEY)
    with pytest.raises(SignatureError, match="partition-1"):
        verify_checkpoint(signed, KEY.public_key, origin="trustlog/partition-0")


@pytest.mark.parametrize("body", [
    b"o\n01\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\ntrustlog-log-time 1\n",   # leading zero
    b"o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\ntrustlog-log-time 1\n",    # no padding
    b"o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\ntrustlog-log-time 1\n",   # 31 bytes
    b"o\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\ntrustlog-log-time 1\n",
    b"o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",                          # no log time
    b"o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\ntrustlog-log-time 1",      # no final newline
    b"o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\ntrustlog-log-time 1\n\n",  # empty extension
    b"o x\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\ntrustlog-log-time 1\n",  # space in origin
    b"\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\ntrustlog-log-time 1\n",     # empty origin
    b"o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\ntrustlog-log-time 1\xff\n",
])
def test_signed_but_malformed_note_bodies_are_rejected(body: bytes) -> None:
    with pytest.raises(EncodingError):
        verify_checkpoint(resign(body), KEY.public_key)


def test_signed_but_malformed_legacy_bodies_are_rejected() -> None:
    fields = {"origin": "o", "tree_size": 1, "root_hash": ROOT, "log_time": 1}
    non_canonical = msgspec.msgpack.encode(dict(reversed(fields.items())))
    with pytest.raises(EncodingError, match="canonical"):
        verify_checkpoint(legacy_resign(non_canonical), KEY.public_key)
    for bad in ({"root_hash": ROOT[:31]}, {"tree_size": -1}, {"origin": ""}, {"extra": 1}):
        body = canonical_bytes({**fields, **bad})
        with pytest.raises(EncodingError):
            verify_checkpoint(legacy_resign(body), KEY.public_key)


def legacy_resign(body: bytes) -> SignedCheckpoint:
    return SignedCheckpoint(checkpoint=body, keyid=KEY.keyid, sig=KEY.sign(CHECKPOINT_CONTEXT + body))


def test_checkpoint_fields_are_validated() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        cp(root=b"short")
    with pytest.raises(ValueError, match="tree_size"):
        cp(size=-1)


def test_store_reads_legacy_and_note_checkpoints_in_one_file(tmp_path: Path) -> None:
    """A log written before the note format keeps its old checkpoints; new ones follow."""
    store = CheckpointStore.open(tmp_path / CHECKPOINTS_FILE)
    store.append(legacy(cp(1)))
    store.append(sign_checkpoint(cp(2), KEY))
    store.close()
    store = CheckpointStore.open(tmp_path / CHECKPOINTS_FILE)
    assert [verify_checkpoint(s, KEY.public_key).tree_size for s in store] == [1, 2]
    assert store.latest_checkpoint() == cp(2)
    store.close()


# --- the checkpoints file --------------------------------------------------------------


def test_store_append_reopen_latest_all(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINTS_FILE
    store = CheckpointStore.open(path)
    assert store.latest() is None and store.all() == [] and len(store) == 0
    signed = [sign_checkpoint(cp(size), KEY) for size in (1, 5, 5, 9)]
    for s in signed:
        store.append(s)
    store.close()
    store = CheckpointStore.open(path)
    assert store.repairs == ()
    assert store.all() == signed and len(store) == 4
    assert store.latest() == signed[-1]
    assert store.latest_checkpoint() == cp(9)
    with pytest.raises(LogError, match="never decrease"):
        store.append(sign_checkpoint(cp(8), KEY))
    with pytest.raises(LogError, match="never decrease"):
        store.append(sign_checkpoint(cp(10, origin="elsewhere"), KEY))
    store.close()


def test_store_cuts_a_torn_last_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINTS_FILE
    store = CheckpointStore.open(path)
    store.append(sign_checkpoint(cp(1), KEY))
    good = path.stat().st_size
    store.append(sign_checkpoint(cp(2), KEY))
    store.close()
    for cut in (good + 3, path.stat().st_size - 1):
        os.truncate(path, cut)
        store = CheckpointStore.open(path)
        assert len(store) == 1 and store.latest_checkpoint() == cp(1)
        assert "torn" in store.repairs[0]
        assert path.stat().st_size == good
        store.append(sign_checkpoint(cp(2), KEY))
        store.close()


def test_store_refuses_a_damaged_middle_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINTS_FILE
    store = CheckpointStore.open(path)
    store.append(sign_checkpoint(cp(1), KEY))
    store.append(sign_checkpoint(cp(2), KEY))
    store.close()
    with open(path, "r+b") as f:
        f.seek(20)
        f.write(b"\x00")
    with pytest.raises(LogCorruptionError, match="checkpoints.log at byte 0"):
        CheckpointStore.open(path)


def test_merkle_store_only_accepts_checkpoints_of_its_tree(tmp_path: Path) -> None:
    with MerkleStore.open(tmp_path) as tree:
        tree.append_leaves(b"event %d" % i for i in range(10))
        good = sign_checkpoint(cp(7, tree.root_at(7)), KEY)
        assert tree.add_checkpoint(good).tree_size == 7
        with pytest.raises(LogError, match="does not match"):
            tree.add_checkpoint(sign_checkpoint(cp(8, leaf_hash(b"forged")), KEY))
        with pytest.raises(LogError, match="has 10"):
            tree.add_checkpoint(sign_checkpoint(cp(11, ROOT), KEY))
        with pytest.raises(LogError, match="refusing"):
            tree.truncate(6)
        tree.truncate(8)
    with MerkleStore.open(tmp_path) as tree:
        assert tree.size == 8
        assert tree.checkpoints.all() == [good]
        assert verify_checkpoint(tree.checkpoints.latest(), KEY.public_key).root_hash == tree.root_at(7)
