"""The compiled trusted fold (``ingest/_fastfold.pyx``) against its pure-Python twin
(``ingest/replay.py`` ``TrustedFold``) and the validating fold (``TrustState.apply``
with every signature taken as valid): over hypothesis-generated histories of every event
kind, with replays, version clashes, compromised keys, removed roles, thresholds,
malformed and re-laid-out records, all three accept or refuse the same records with
the same reason and end in equal states. Then whole logs: opening one, ``fold_log`` and
the errors of a damaged segment are the same on both backends.

The compiled fold applies an ``ImageSigned`` itself only when it is sure the Python
fold would accept it with the same effect, and hands everything else to the Python
fold; so every divergence these tests can find is a fast-path bug.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import crc32c
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_compiled_fold
from trustlog.core import tagstore_backend
from trustlog.core.errors import EncodingError, LogCorruptionError, LogError
from trustlog.core.events import (
    Envelope, ImageSigned, KeyCompromised, MetadataImported, RepoCreated, RoleKeysSet, RoleRemoved, RootRotated,
    Signature, TagDeleted, sign_event, version_scope,
)
from trustlog.core.keys import SigningKey
from trustlog.core.merkle import leaf_hash
from trustlog.core.state import RejectedEventError, TrustState
from trustlog.ingest import fold_backend
from trustlog.ingest.records import KafkaPosition, LogRecord, encode_record, encode_record_v1
from trustlog.ingest.replay import TrustedFold, decode_trusted, fold_log, new_fold

REPOS = ["registry.example.com/team/app", "registry.example.com/team/db"]
FAR = 4_000_000_000
ROOTS = [SigningKey.from_seed(b"cf/root1"), SigningKey.from_seed(b"cf/root2")]
T = SigningKey.from_seed(b"cf/targets")
T2 = SigningKey.from_seed(b"cf/targets2")
ROLES = {"targets/alice": [SigningKey.from_seed(b"cf/alice1"), SigningKey.from_seed(b"cf/alice2")],
         "targets/bob": [SigningKey.from_seed(b"cf/bob1")]}
PATHS = {"targets/alice": ["a*", "v*"], "targets/bob": ["b*", "v[0-9]"]}
TAGS = ["a1", "a2", "b1", "v1", "v2", "latest"]
DIGESTS = ["sha256:" + f"{i:02x}" * 32 for i in range(4)]


@pytest.fixture(scope="module")
def compiled():
    """The compiled fold's module; under CI=true a missing build fails."""
    return require_compiled_fold()


def _trusted(_k, _m, _s) -> bool:
    return True


class Three:
    """One state per fold, fed the same record bodies."""

    def __init__(self, compiled) -> None:
        self.full, self.py_state, self.c_state = TrustState(), TrustState(), TrustState()
        self.py = TrustedFold(self.py_state)
        self.c = compiled.CompiledFold(TrustedFold(self.c_state), decode_trusted)
        self.offset = 0
        self.accepted: list[bytes] = []   # the bodies all three accepted, in order

    @staticmethod
    def _run(step) -> str:
        try:
            step()
        except EncodingError:
            return "UNDECODABLE"
        except RejectedEventError as e:
            return e.reason
        return "OK"

    def feed(self, body: bytes) -> str:
        off = self.offset

        def full() -> None:  # over dicts: the two trusted folds hold compact stores (when built)
            rec, env, ev = decode_trusted(body)
            with tagstore_backend.forced("dict"):
                self.full.apply(env, log_time=rec.log_time, offset=off, sigcheck=_trusted, event=ev)

        def py() -> None:
            rec, env, ev = decode_trusted(body)
            self.py.apply(env, ev, rec.log_time, off)

        def c() -> None:
            try:
                self.c.fold_bodies(off, [body])
            except LogError as e:  # as TrustedFold.fold_bodies: the cause says why
                raise e.__cause__ from None

        got = {"full": self._run(full), "py": self._run(py), "c": self._run(c)}
        assert len(set(got.values())) == 1, (got, off)
        if got["c"] == "OK":
            self.accepted.append(body)
        assert self.c_state.repos == self.py_state.repos == self.full.repos, off
        assert self.c_state.version == self.py_state.version == self.full.version, off
        if got["c"] == "OK":
            self.offset += 1
        return got["c"]


def _body(env: Envelope, log_time: int, source: KafkaPosition | None = None, fmt: str = "v2") -> bytes:
    """The record as the writer stores it (v2), or in the v1 format of older logs."""
    return (encode_record_v1 if fmt == "v1" else encode_record)(LogRecord(log_time, env.to_bytes(), source))


def _relaid(env: Envelope, log_time: int, how: str) -> bytes:
    """An ImageSigned record in a layout the canonical writer never makes (or just
    outside the bounds): the compiled reader must hand it to msgspec, never misread it."""
    payload = msgspec.msgpack.decode(env.payload)
    sigs = [{"keyid": s.keyid, "sig": s.sig} for s in env.signatures]
    rec = {"log_time": log_time, "envelope": None, "source": None}
    if how == "payload-reordered":
        payload = dict(reversed(list(payload.items())))
    elif how == "payload-extra-field":
        payload["note"] = "x"
    elif how == "payload-missing-field":
        del payload["size"]
    elif how == "version-past-int64":
        payload["version"] = 2**63
    elif how == "size-past-int64":
        payload["size"] = 2**64 - 1
    elif how == "expires-negative":
        payload["expires"] = -(2**63)
    elif how == "tag-non-ascii":
        payload["tag"] = "v\u00e91"
    elif how == "tag-too-long":
        payload["tag"] = "v" * 129
    elif how == "tag-newline":
        payload["tag"] = "v1\n"
    elif how == "digest-upper":
        payload["digest"] = "sha256:" + "AB" * 32
    elif how == "role-as-bytes":
        payload["role"] = payload["role"].encode()
    elif how == "record-reordered":
        rec = {"envelope": None, "log_time": log_time, "source": None}
    elif how == "record-no-source":
        del rec["source"]
    elif how == "record-source":
        rec["source"] = {"topic": "t\u00e9", "partition": 3, "offset": 2**63 + 5}
    elif how == "log-time-negative":
        rec["log_time"] = -1
    elif how == "no-signatures":
        sigs = []
    elif how == "129-signatures":
        sigs = sigs * 129
    elif how == "duplicate-signatures":
        sigs = sigs * 2
    elif how == "signature-str":
        sigs = [{"keyid": s["keyid"], "sig": s["sig"].hex()} for s in sigs]
    elif how == "envelope-trailing":
        pass
    else:
        raise AssertionError(how)
    env_bytes = msgspec.msgpack.encode({"payload": msgspec.msgpack.encode(payload), "signatures": sigs})
    if how == "envelope-trailing":
        env_bytes += b"\xc0"
    rec["envelope"] = env_bytes
    return msgspec.msgpack.encode(rec)


RELAYOUTS = ["payload-reordered", "payload-extra-field", "payload-missing-field", "version-past-int64",
             "size-past-int64", "expires-negative", "tag-non-ascii", "tag-too-long", "tag-newline", "digest-upper",
             "role-as-bytes", "record-reordered", "record-no-source", "record-source", "log-time-negative",
             "no-signatures", "129-signatures", "duplicate-signatures", "signature-str", "envelope-trailing"]


def _signers(role: str) -> list[SigningKey]:
    return ROLES.get(role, [T])


def _event(data, three: Three, repo_name: str):
    """One event against the current state (drawn), with its signers."""
    repo = three.full.repos.get(repo_name)
    kind = data.draw(st.sampled_from(["image"] * 12 + ["keys"] * 3 + ["removed", "compromised", "deleted", "rotated",
                                                                    "imported", "created"]), label="kind")
    role = data.draw(st.sampled_from(["targets", "targets/alice", "targets/bob"] * 3 + ["root"]), label="role")
    tag = data.draw(st.sampled_from(TAGS), label="tag")
    if kind == "created" or repo is None:
        return RepoCreated(repo_name, 1, 0, [ROOTS[0].public_key], 1, [T.public_key], 1, FAR), [ROOTS[0]]
    if kind == "keys":
        if role in ("targets", "root"):
            keys = data.draw(st.sampled_from([[T], [T2], [T, T2]]))
            ev = RoleKeysSet(repo_name, 0, 0, "targets", [k.public_key for k in keys], data.draw(st.sampled_from([1, 2])),
                             FAR)
            return ev, [ROOTS[0], ROOTS[1]][:data.draw(st.integers(1, 2))]
        ev = RoleKeysSet(repo_name, 0, 0, role, [k.public_key for k in ROLES[role]],
                         data.draw(st.sampled_from([1, 2])) if role == "targets/alice" else 1, FAR, PATHS[role])
        return ev, [T, T2][:data.draw(st.integers(1, 2))]
    if kind == "removed":
        return RoleRemoved(repo_name, 0, 0, data.draw(st.sampled_from(list(ROLES)))), [T, T2]
    if kind == "compromised":
        victim = data.draw(st.sampled_from(ROLES["targets/alice"] + ROLES["targets/bob"] + [T2]))
        since = data.draw(st.sampled_from([0, 10**18, 5_000_000]))
        return KeyCompromised(repo_name, 0, 0, victim.keyid, since), [T]
    if kind == "deleted":
        return TagDeleted(repo_name, 0, 0, role, tag), _signers(role)
    if kind == "rotated":
        new = data.draw(st.sampled_from([[ROOTS[1]], [ROOTS[0], ROOTS[1]]]))
        return RootRotated(repo_name, 0, 0, [k.public_key for k in new], 1, FAR), [ROOTS[0], ROOTS[1]]
    if kind == "imported":
        return MetadataImported(repo_name, 0, 0, "root", data.draw(st.sampled_from([b"{}", b"not json"]))), []
    exp = data.draw(st.sampled_from([FAR] * 5 + [5, 2**63 - 1]))
    # (values either side of 2**32: a compact store's row keeps them narrow or wide)
    ev = ImageSigned(repo_name, 0, data.draw(st.sampled_from([10] * 4 + [2**32 - 1, 2**32 + 10])), role, tag,
                     data.draw(st.sampled_from(DIGESTS)),
                     data.draw(st.sampled_from([1, 1, 0, 7, -1, 2**32 - 1, 2**32, 2**63 - 1])), exp)
    keys = _signers(role)
    signers = data.draw(st.sampled_from([keys] * 4 + [keys[:1], [], keys + [T2], keys[::-1], [T2]]))
    return ev, signers


@pytest.mark.parametrize("fmt", ["v1", "v2"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_three_folds_agree_over_generated_histories(compiled, data, fmt: str) -> None:
    three = Three(compiled)
    sent: list[bytes] = []           # every body fed
    envelopes: list[bytes] = []      # the envelopes of the well-formed ones (to replay one)
    log_time = 1_000_000
    outcomes = []
    if data.draw(st.booleans(), label="preamble"):  # both repositories with both signers: more of the fast path
        for name in REPOS:
            log_time += 1_000_000
            outcomes.append(three.feed(_body(sign_event(
                RepoCreated(name, 1, 0, [ROOTS[0].public_key], 1, [T.public_key], 1, FAR), [ROOTS[0]]), log_time,
                fmt=fmt)))
            for v, role in enumerate(ROLES, start=2):
                log_time += 1_000_000
                ev = RoleKeysSet(name, v, 0, role, [k.public_key for k in ROLES[role]], 1, FAR, PATHS[role])
                outcomes.append(three.feed(_body(sign_event(ev, [T]), log_time, fmt=fmt)))
    for _ in range(data.draw(st.integers(5, 60), label="length")):
        log_time += 1_000_000
        what = data.draw(st.sampled_from(["event"] * 6 + ["replay", "flip", "cut", "relaid"]), label="what")
        if what == "replay" and envelopes:
            body = _body(msgspec.msgpack.decode(data.draw(st.sampled_from(envelopes)), type=Envelope), log_time,
                         fmt=fmt)
        elif what in ("flip", "cut") and any(sent):
            body = data.draw(st.sampled_from([b for b in sent if b]))
            i = data.draw(st.integers(0, len(body) - 1))
            body = body[:i] + bytes([body[i] ^ (1 << data.draw(st.integers(0, 7)))]) + body[i + 1:] if what == "flip" \
                else body[:i]
        else:
            repo_name = data.draw(st.sampled_from(REPOS), label="repo")
            ev, signers = _event(data, three, repo_name)
            repo = three.full.repos.get(repo_name)
            cur = repo.versions.get(version_scope(ev), 0) if repo is not None else 0
            if type(ev) is not RepoCreated:
                version = data.draw(st.sampled_from([cur + 1, cur + 1, cur, max(cur - 1, 1), cur + 1000, cur + 2**32]))
                ev = ev.__class__(**{**{f: getattr(ev, f) for f in ev.__struct_fields__}, "version": version})
            env = sign_event(ev, signers)
            if what == "relaid" and type(ev) is ImageSigned:
                body = _relaid(env, log_time, data.draw(st.sampled_from(RELAYOUTS)))
            else:
                src = data.draw(st.sampled_from([None, KafkaPosition("topic", 1, log_time)]))
                body = _body(env, log_time, src, fmt=fmt)
                envelopes.append(env.to_bytes())
        sent.append(body)
        outcomes.append(three.feed(body))
    assert three.c.fast + three.c.slow == len(outcomes)
    # the accepted records again, in one run of fold_segment calls over "segments" cut
    # anywhere (the read-ahead, the views kept across calls, the write-back at the end)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(three.accepted)), max_size=3), label="cuts"))
    chained = _fold_in_segments(compiled, three.accepted, cuts)
    py = TrustedFold(TrustState())
    py.fold_bodies(0, three.accepted)
    assert chained.repos == py.state.repos
    assert chained.version == py.state.version == len(three.accepted)


def _frame(body: bytes) -> bytes:
    head = len(body).to_bytes(4, "big")
    return head + crc32c.crc32c(body, crc32c.crc32c(head)).to_bytes(4, "big") + body


def _fold_in_segments(compiled, bodies: list[bytes], cuts: list[int]) -> TrustState:
    """``bodies`` folded by one compiled fold as ``replay.fold_segments`` runs it: one
    ``fold_segment`` call a segment (cut at ``cuts``), views kept, write-back deferred,
    then ``flush()``."""
    state = TrustState()
    fold = compiled.CompiledFold(TrustedFold(state), decode_trusted)
    edges = [0, *cuts, len(bodies)]
    for i, (a, b) in enumerate(zip(edges, edges[1:])):
        data = b"".join(_frame(x) for x in bodies[a:b])
        leaves = b"".join(leaf_hash(x) for x in bodies[a:b])
        assert compiled.check_frames(data, a, a, b, True, leaves) == (compiled.DONE, len(data), b)
        got = fold.fold_segment(data, a, a, b, i % 2 == 0, leaves if i % 3 == 1 else None, None, "test",
                                keep_views=i > 0, defer_flush=True)
        assert got == (compiled.DONE, len(data), b)
    fold.flush()
    return state


@pytest.mark.parametrize("how", RELAYOUTS)
def test_relaid_records_are_read_as_msgspec_reads_them(compiled, how: str) -> None:
    """Each layout the C reader must not take for the canonical one, after a history
    that puts the record on the fast path had it been canonical."""
    three = Three(compiled)
    repo = REPOS[0]
    three.feed(_body(sign_event(RepoCreated(repo, 1, 0, [ROOTS[0].public_key], 1, [T.public_key], 1, FAR),
                                [ROOTS[0]]), 1))
    env = sign_event(ImageSigned(repo, 2, 10, "targets", "v1", DIGESTS[0], 5, FAR), [T])
    assert three.feed(_body(env, 2)) == "OK" and three.c.fast == 1       # the canonical form: fast
    env = sign_event(ImageSigned(repo, 3, 10, "targets", "v1", DIGESTS[1], 5, FAR), [T])
    three.feed(_relaid(env, 3, how))
    # never misread as the fast layout (a repeated signature is the canonical layout: counted once)
    assert three.c.fast == (2 if how == "duplicate-signatures" else 1)


def test_every_kind_and_the_fast_path_are_exercised(compiled) -> None:
    """A fixed history: every native kind, a multi-signature threshold, a compromised
    key (before and after `since`), a removed role; most ImageSigned on the fast path."""
    three = Three(compiled)
    repo = REPOS[0]
    alice = ROLES["targets/alice"]
    steps = [
        (RepoCreated(repo, 1, 0, [ROOTS[0].public_key], 1, [T.public_key], 1, FAR), [ROOTS[0]], "OK"),
        (RoleKeysSet(repo, 2, 0, "targets/alice", [k.public_key for k in alice], 2, FAR, ["a*"]), [T], "OK"),
        (ImageSigned(repo, 3, 1, "targets/alice", "a1", DIGESTS[0], 1, FAR), alice, "OK"),         # 2 of 2: fast
        (ImageSigned(repo, 4, 1, "targets/alice", "a1", DIGESTS[1], 1, FAR), alice[:1], "THRESHOLD_NOT_MET"),
        (ImageSigned(repo, 5, 1, "targets/alice", "b1", DIGESTS[1], 1, FAR), alice, "OUTSIDE_PATTERNS"),
        (ImageSigned(repo, 5, 1, "targets", "v1", DIGESTS[1], 1, FAR), [T], "OK"),                 # fast
        (ImageSigned(repo, 5, 1, "targets", "v1", DIGESTS[1], 1, FAR), [T], "VERSION_ROLLBACK"),
        (KeyCompromised(repo, 6, 0, alice[1].keyid, 10**18), [T], "OK"),
        (ImageSigned(repo, 7, 1, "targets/alice", "a2", DIGESTS[2], 1, FAR), alice, "OK"),         # before since
        (KeyCompromised(repo, 8, 0, alice[1].keyid, 0), [T], "OK"),
        (ImageSigned(repo, 9, 1, "targets/alice", "a2", DIGESTS[3], 1, FAR), alice, "KEY_COMPROMISED"),
        (TagDeleted(repo, 10, 0, "targets", "v1"), [T], "OK"),
        (ImageSigned(repo, 11, 1, "targets", "v1", DIGESTS[0], 1, FAR), [T], "OK"),                # undeletes: fast
        (RoleRemoved(repo, 12, 0, "targets/alice"), [T], "OK"),
        (ImageSigned(repo, 13, 1, "targets/alice", "a1", DIGESTS[0], 1, FAR), alice[:1], "UNKNOWN_ROLE"),
        (RootRotated(repo, 14, 0, [ROOTS[1].public_key], 1, FAR), ROOTS, "OK"),
        (MetadataImported(repo, 15, 0, "root", b"{}"), [], None),
        (ImageSigned(REPOS[1], 2, 1, "targets", "v1", DIGESTS[0], 1, FAR), [T], "UNKNOWN_REPOSITORY"),
    ]
    t = 0
    for ev, signers, want in steps:
        t += 1000
        got = three.feed(_body(sign_event(ev, signers), t))
        assert want is None or got == want, (ev, got)
    assert three.c.fast == 4


def test_imported_tuf_metadata_replays_alike(compiled, tr, tmp_path: Path) -> None:
    """MetadataImported records of a real python-tuf repository, and native events on
    the imported repository (refused: its trust data is imported), fold alike."""
    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.tuf_import import IMPORT_MAX_EVENT_BYTES, DirSource, import_repository

    gun = "registry.example.com/tuf/app"
    repo = tr.TufRepo(tmp_path / "repo")
    repo.add_target("app/v1", b"one")
    repo.delegate("releases", paths=["rel/*"])
    repo.add_target("rel/v2", b"two", role="releases")
    repo.publish()
    with TrustLog(tmp_path / "log", max_event_bytes=IMPORT_MAX_EVENT_BYTES) as log:
        import_repository(log, gun, DirSource(repo.dir))
        n = log.log.next_offset
        bodies = [body for _, body in log.log.scan(0)]
    assert n >= 2
    three = Three(compiled)
    for body in bodies:
        assert three.feed(body) == "OK"
    assert three.c_state.repos[gun].tuf is not None
    t = decode_trusted(bodies[-1])[0].log_time
    env = sign_event(ImageSigned(gun, 99, 1, "targets", "v9", DIGESTS[0], 1, FAR), [T])
    assert three.feed(_body(env, t + 1)) == "INVALID_ROLE"


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600), crc=st.integers(0, 2**32 - 1))
def test_crc32c_and_leaf_hash_are_the_references(compiled, data: bytes, crc: int) -> None:
    assert compiled.crc32c(data, crc) == crc32c.crc32c(data, crc)
    assert compiled.leaf_hash(data) == leaf_hash(data)


# -- whole logs: TrustLog's open and fold_log on both backends -----------------------


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log of a synthetic registry with Kafka positions on its records."""
    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.synthetic import SyntheticRegistry

    d = tmp_path_factory.mktemp("cfold")
    reg = SyntheticRegistry(repos=8, tags=120, ref_time=1_900_000_000)
    with TrustLog(d, checkpoint_every=50, snapshot_every=None, segment_bytes=10_000) as tl:  # v2: >2 segments
        envs = list(reg.phase1())
        tl.ingest(((e.to_bytes(), KafkaPosition("events", i % 3, i)) for i, e in enumerate(envs)), batch_size=32)
        since = tl.clock.last + 1
        tl.ingest(((e.to_bytes(), None) for e in reg.phase2(since)), batch_size=32)
    shutil.rmtree(d / "snapshots", ignore_errors=True)
    return d


def _open(d: Path, backend: str, monkeypatch: pytest.MonkeyPatch):
    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.snapshots import encode_state

    monkeypatch.setattr(fold_backend, "BACKEND", backend)
    with TrustLog(d, snapshot_every=None, read_only=True) as tl:
        return encode_state(tl.state), dict(tl.positions), tl.clock.last, tl.opened_with


def test_open_and_fold_log_agree_on_both_backends(compiled, small_log: Path, monkeypatch) -> None:
    from trustlog.ingest.snapshots import encode_state

    c, py = _open(small_log, "c", monkeypatch), _open(small_log, "py", monkeypatch)
    assert c == py
    assert c[1] and c[3]["trusted"] > 0 and c[3]["snapshot"] == 0
    assert len(list((small_log / "log").glob("*.seg"))) > 2               # the fold crosses segments
    monkeypatch.setattr(fold_backend, "BACKEND", "c")
    a = encode_state(fold_log(small_log))
    monkeypatch.setattr(fold_backend, "BACKEND", "py")
    assert encode_state(fold_log(small_log)) == a == c[0]


def test_fold_log_reads_a_log_that_a_writer_holds(compiled, small_log: Path, tmp_path: Path, monkeypatch) -> None:
    """fold_log only reads: it takes no writer lock, so it folds a log open for writing."""
    from trustlog.ingest.pipeline import TrustLog
    from trustlog.ingest.snapshots import encode_state

    copy = tmp_path / "held"
    shutil.copytree(small_log, copy)
    with TrustLog(copy, snapshot_every=None) as tl:
        want = encode_state(tl.state)
        for backend in ("c", "py"):
            monkeypatch.setattr(fold_backend, "BACKEND", backend)
            assert encode_state(fold_log(copy)) == want, backend


def _damaged_errors(d: Path, tmp_path: Path, monkeypatch, damage) -> dict[str, str]:
    out = {}
    for backend in ("c", "py"):
        copy = tmp_path / backend
        shutil.copytree(d, copy)
        damage(copy)
        monkeypatch.setattr(fold_backend, "BACKEND", backend)
        try:
            fold_log(copy)
            out[backend] = "OK"
        except (LogCorruptionError, LogError) as e:
            out[backend] = f"{type(e).__name__}: {e}".replace(str(copy), "DIR")
    return out


def _seg(d: Path, i: int) -> Path:
    return sorted((d / "log").glob("*.seg"))[i]


@pytest.mark.parametrize("damage", ["flip", "truncate", "length"])
def test_a_damaged_segment_fails_alike(compiled, small_log: Path, tmp_path: Path, monkeypatch, damage: str) -> None:
    def do(copy: Path) -> None:
        seg = _seg(copy, 1)
        b = bytearray(seg.read_bytes())
        if damage == "flip":
            b[len(b) // 2] ^= 0x20
        elif damage == "truncate":
            del b[len(b) - 30:]
        else:
            b[0:4] = (len(b) + 1).to_bytes(4, "big")
        seg.write_bytes(bytes(b))

    got = _damaged_errors(small_log, tmp_path, monkeypatch, do)
    assert got["c"] == got["py"] and got["c"] != "OK", got


@pytest.mark.parametrize("damage", ["none", "flip", "truncate", "length", "leaf"])
@pytest.mark.parametrize("crc", [True, False])
def test_the_helpers_checks_stop_where_the_fold_does(compiled, small_log: Path, damage: str, crc: bool) -> None:
    """``check_frames`` (the checks fold_segments runs on a helper thread) ends with the
    status, position and offset of ``fold_segment`` over the same damaged segment."""
    data = bytearray(_seg(small_log, 0).read_bytes())
    bodies, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        bodies.append(bytes(data[pos + 8:pos + 8 + n]))
        pos += 8 + n
    leaves = bytearray(b"".join(leaf_hash(b) for b in bodies))
    mid = len(bodies) // 2
    at = sum(8 + len(b) for b in bodies[:mid])       # where record `mid` starts
    if damage == "flip":
        data[at + 20] ^= 0x10
    elif damage == "truncate":
        del data[at + 10:]
    elif damage == "length":
        data[at:at + 4] = (len(data)).to_bytes(4, "big")
    elif damage == "leaf":
        leaves[32 * mid + 5] ^= 1
    data = bytes(data)
    lv = bytes(leaves) if damage == "leaf" or not crc else None   # (no check at all is not a case)
    want = compiled.check_frames(data, 0, 0, len(bodies), crc, lv)
    fold = compiled.CompiledFold(TrustedFold(TrustState()), decode_trusted)
    got = fold.fold_segment(data, 0, 0, len(bodies), crc, lv, None, "test")
    assert got == want
    if damage == "none":
        assert got == (compiled.DONE, len(data), len(bodies))
    else:
        expected = {"flip": compiled.CRC_MISMATCH if crc else compiled.LEAF_MISMATCH, "truncate": compiled.PAST_END,
                    "length": compiled.PAST_END, "leaf": compiled.LEAF_MISMATCH}[damage]
        assert got == (expected, at, mid)
    assert fold.fast + fold.slow == got[2]   # every record before the damage folded, none after


def test_a_record_that_does_not_replay_fails_alike(compiled, small_log: Path, tmp_path: Path, monkeypatch) -> None:
    """A record whose CRC is right but whose event breaks the rules (a rewritten log)."""
    def do(copy: Path) -> None:
        seg = _seg(copy, 0)
        b = seg.read_bytes()
        length = int.from_bytes(b[0:4], "big")
        rec = decode_trusted(b[8:8 + length])[0]
        env = Envelope(b"\x80", [Signature("k", b"s")])               # an event without fields
        body = encode_record(LogRecord(rec.log_time, env.to_bytes()))
        frame = len(body).to_bytes(4, "big") + crc32c.crc32c(body, crc32c.crc32c(len(body).to_bytes(4, "big"))).to_bytes(
            4, "big") + body
        seg.write_bytes(frame + b[8 + length:])

    got = _damaged_errors(small_log, tmp_path, monkeypatch, do)
    assert got["c"] == got["py"] and "record 0 cannot be replayed" in got["c"], got


def test_the_backend_is_chosen_like_the_verifiers(monkeypatch) -> None:
    import importlib

    monkeypatch.setenv("TRUSTLOG_PUREPYTHON", "1")
    mod = importlib.reload(fold_backend)
    try:
        assert mod.BACKEND == "py" and type(new_fold(TrustState())) is TrustedFold
    finally:
        # the environment as it was before this test (TRUSTLOG_PUREPYTHON=1 on the pure-Python
        # run: deleting it would leave the compiled fold selected for every later test)
        monkeypatch.undo()
        importlib.reload(fold_backend)
    if os.environ.get("TRUSTLOG_PUREPYTHON") != "1":
        try:
            fold_backend.load()
        except ImportError:
            return
        assert fold_backend.BACKEND == "c"


# -- the segment frame reader (SegmentLog's open) -----------------------------------


def _scan(data: bytes, compiled_reader, max_record_bytes: int, interval: int):
    """What a segment reader makes of ``data``: the compiled one (``compiled_reader``:
    the module, also under TRUSTLOG_PUREPYTHON=1) or, when None, ``_iter_frames``."""
    import io

    from trustlog.ingest import segment_log as sl

    seg = sl._Segment(0, Path("00000000000000000000.seg"))
    f = io.BytesIO(data)
    try:
        if compiled_reader is not None:
            saved, sl._FRAMES = sl._FRAMES, compiled_reader
            try:
                sl._scan_compiled(f, seg, len(data), max_record_bytes, interval)
            finally:
                sl._FRAMES = saved
        else:
            for pos, _body in sl._iter_frames(f, 0, len(data), max_record_bytes):
                seg.note_record(pos, interval)
                seg.count += 1
        err = None
    except sl._FrameError as e:
        err = (e.pos, e.detail, e.torn)
    return seg.count, list(seg.index_rel), list(seg.index_pos), err


@settings(max_examples=300, deadline=None)
@given(bodies=st.lists(st.binary(max_size=300), max_size=40), damage=st.sampled_from(["none", "cut", "flip", "zeros",
                                                                                     "garbage"]),
       where=st.floats(0, 1), interval=st.sampled_from([1, 64, 4096]), max_record_bytes=st.sampled_from([100, 1 << 20]),
       extra=st.binary(min_size=1, max_size=20))
def test_the_compiled_frame_reader_is_the_python_one(compiled, bodies, damage, where, interval, max_record_bytes,
                                                      extra) -> None:
    from trustlog.ingest.segment_log import encode_frame

    data = bytearray(b"".join(encode_frame(b) for b in bodies))
    i = int(where * max(len(data) - 1, 0))
    if damage == "cut":
        del data[i:]
    elif damage == "flip" and data:
        data[i] ^= 0x01
    elif damage == "zeros":
        data += bytes(len(extra))
    elif damage == "garbage":
        data += extra
    assert _scan(bytes(data), compiled, max_record_bytes, interval) == _scan(bytes(data), None, max_record_bytes, interval)


_PATTERN_CHARS = "ab-.*?[]!\\é"


@settings(max_examples=500, deadline=None)
@given(paths=st.lists(st.text(_PATTERN_CHARS, max_size=6), max_size=4), tag=st.text("ab-.*?[]!\\", max_size=7))
def test_the_fast_paths_tag_patterns_are_fnmatchs(compiled, paths: list[str], tag: str) -> None:
    """Where the compiled fold decides a delegation's patterns itself (a literal, or a
    literal and one trailing '*'), it decides as fnmatch.fnmatchcase; anything else it
    leaves to fnmatch (None)."""
    import fnmatch

    got = compiled.simple_may_sign(paths, tag)
    want = any(fnmatch.fnmatchcase(tag, p) for p in paths)
    def literal(p: str) -> str:
        return p[:-1] if p.endswith("*") else p

    simple = all(p.isascii() and not any(c in literal(p) for c in "*?[") for p in paths)
    if got is None:
        assert not simple or not tag.isascii(), (paths, tag)
    else:
        assert got == want, (paths, tag)


def test_a_delegations_tag_patterns_on_the_fast_path(compiled) -> None:
    cases = [(["build-*"], "build-", True), (["build-*"], "build-1", True), (["build-*"], "build", False),
             (["v1.0"], "v1.0", True), (["v1.0"], "v1.01", False), (["*"], "x", True), ([], "x", False),
             (["a*", "b"], "b", True), (["a\\*"], "a\\x", True), (["a]"], "a]", True),
             (["a**"], "a", None), (["a?"], "ab", None), (["[ab]"], "a", None), (["é*"], "x", None),
             ([f"p{i}" for i in range(17)], "p1", None)]
    for paths, tag, want in cases:
        assert compiled.simple_may_sign(paths, tag) is want, (paths, tag)
