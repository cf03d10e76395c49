"""Snapshot format 3: the tags of a native repository as columns (core.tagstore's
columns_of / entries_from_columns and their compiled twins CTagStore.export_columns /
from_columns). States from generated histories and from arbitrary mappings round-trip
through a snapshot body with either store writing and either reading (the same bytes
each way); damaged columns are refused by both twins alike, and a damaged but correctly
signed snapshot is refused on open and the state folded from the log; a format-2
snapshot still loads."""
from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_or_skip
from histories import OPS, REFUSED_OPS, START, run_op, start
from logtools import history
from sim import Sim, key
from state_compare import assert_same_state
from test_tagstore import TAGS, entries
from trustlog.core import tagstore_backend
from trustlog.core.errors import EncodingError
from trustlog.core.state import RejectedEventError, RepoState, TagEntry, TrustState
from trustlog.core.tagstore import SnapColumns, columns_of, derive_payload, entries_from_columns, row_of_entry
from trustlog.ingest import snapshot_body, snapshots
from trustlog.ingest.logcheck import verify_log
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.snapshots import decode_state, encode_state

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REPO = "registry.example.com/cols/app"


def compiled() -> object:
    """core._tagstore_c; under CI=true a missing build fails the test."""
    try:
        return tagstore_backend.load()
    except ImportError as e:
        require_or_skip("the compiled tag store (build it with `pip install -e .`)", e)
        raise


def _fold(envs: list, kind: str) -> TrustState:
    """The validating fold of ``envs`` with tags in dicts or compact stores."""
    state = TrustState()
    with tagstore_backend.forced(kind):
        for off, env in enumerate(envs):
            try:
                state.apply(env, log_time=1_000 * (off + 1), offset=off)
            except RejectedEventError:
                pass
    return state


def _read(body: bytes, kind: str) -> TrustState:
    with tagstore_backend.forced(kind):
        return decode_state(body)


def _round_trip(dict_state: TrustState, compact_state: TrustState) -> bytes:
    """Both states write the same body; each store reads it back equal, into itself,
    and writes the same body again."""
    body = encode_state(dict_state)
    assert encode_state(compact_state) == body                 # written by either store
    mod = compiled()
    for kind in ("dict", "compact"):                           # read by either store
        back = _read(body, kind)
        back.version = dict_state.version                      # a snapshot's header says it
        assert_same_state(back, dict_state, f"read by the {kind} store")
        assert encode_state(back) == body
        for repo in back.repos.values():
            if repo.tuf is None:
                want = mod.CTagStore if kind == "compact" else dict
                assert type(repo.tags) is want
    return body


HISTORY = st.lists(st.one_of(OPS, OPS, REFUSED_OPS), min_size=5, max_size=40)


@settings(max_examples=40, **SETTINGS)
@given(setup=START, ops=HISTORY)
def test_states_of_generated_histories_round_trip(setup: dict, ops: list[tuple]) -> None:
    compiled()
    h = Sim()
    start(h, **setup)
    for op in ops:
        if op[0] != "check":
            run_op(h, op)
    envs = [s.env for s in h.trace]
    dict_state, compact_state = _fold(envs, "dict"), _fold(envs, "compact")
    body = _round_trip(dict_state, compact_state)
    # every native repository went into columns; their versions hold only what the rows do not imply
    decoded = msgspec.msgpack.decode(body, type=snapshot_body._Body3)
    for r in decoded.repos:
        assert r.columns is not None and r.tags == {}
        assert all(":" in s or s not in dict_state.repos[r.name].tags for s in r.versions)


@st.composite
def mapping_states(draw: st.DrawFn) -> TrustState:
    """A native repository whose tags are any entries (some only a mapping holds: kept
    verbatim), some of them under names the fold would not accept (the repository is
    then a map), and versions with tag scopes removed, changed or of deleted tags."""
    names = TAGS + (["bad tag", "-x", "a:b"] if draw(st.integers(0, 3)) == 0 else [])
    tags = {}
    for name in draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names))):
        e = draw(entries(name))
        try:                             # an int MessagePack cannot write, a bool for an int: no
            if msgspec.msgpack.decode(msgspec.msgpack.encode(e), type=TagEntry) != e:   # snapshot holds it
                continue
        except (OverflowError, msgspec.ValidationError):
            continue
        tags[name] = e
    versions: dict[str, int] = {}
    for name, e in tags.items():
        v = e.version if isinstance(e.version, int) and -(1 << 63) <= e.version < (1 << 63) else 1
        kind = draw(st.sampled_from(["row", "row", "none", "other"]))
        if kind == "row":
            versions[name] = v
        elif kind == "other":
            versions[name] = draw(st.integers(-(1 << 63), (1 << 63) - 1))
    for scope in draw(st.lists(st.sampled_from(["gone", "deleted-1", "role:targets", "key:" + "ab" * 32]),
                               unique=True)):
        versions[scope] = draw(st.integers(0, 1 << 40))
    state = TrustState()
    state.repos[REPO] = RepoState(REPO, "tofu", 3, tags=tags, versions=versions)
    return state


def _adopted(state: TrustState) -> TrustState:
    out = TrustState()
    with tagstore_backend.forced("compact"):
        for name, r in state.repos.items():
            out.repos[name] = tagstore_backend.adopt(dataclasses.replace(r, tags=dict(r.tags),
                                                                         versions=dict(r.versions)))
    return out


@settings(max_examples=200, **SETTINGS)
@given(state=mapping_states())
def test_any_mapping_round_trips(state: TrustState) -> None:
    compiled()
    compact = _adopted(state)
    _round_trip(state, compact)
    got = tagstore_backend.export_columns(compact.repos[REPO])
    assert got == columns_of(REPO, state.repos[REPO].tags, state.repos[REPO].versions)


# -- damaged columns ------------------------------------------------------------------


def _sample_repo() -> RepoState:
    """A repository with column rows, a verbatim entry, several keys, an absent version,
    versions of deleted tags and of other scopes."""
    s = Sim(repo=REPO)
    root, targets = key("cols-root"), key("cols-targets")
    s.create([root], [targets])
    for t in range(6):
        s.sign_tag(f"t{t}", [targets])
    s.delete_tag("t2", [targets])
    state = _fold(s.sent, "dict")
    repo = state.repos[REPO]
    odd = dataclasses.replace(repo.tags["t1"], digest="sha256:" + "AB" * 32)   # not canonical: verbatim
    t5 = repo.tags["t5"]
    repo.tags["t5"] = dataclasses.replace(t5, signatures=(("ee" * 32, b"second"), *t5.signatures))
    repo.tags["odd"] = odd
    del repo.versions["t3"]
    return repo


def _both(cols: SnapColumns, versions: dict[str, int]) -> tuple[object, object]:
    """What each twin makes of ``cols``: ("refused",) or (tags as a dict, versions as a dict)."""
    out = []
    for kind in ("dict", "compact"):
        with tagstore_backend.forced(kind):
            try:
                tags, vers = tagstore_backend.import_columns(REPO, cols, versions)
            except EncodingError:
                out.append(("refused",))
                continue
        out.append((list(tags.items()), dict(vers.items())))
    return out[0], out[1]


def _mutations(cols: SnapColumns, versions: dict[str, int], rng: random.Random):
    """(what, columns, versions): a bit flipped in each blob, every blob cut short, and
    edits to the lists."""
    for field in ("names", "ends", "rows", "sigs"):
        blob = getattr(cols, field)
        positions = range(len(blob)) if len(blob) <= 200 else rng.sample(range(len(blob)), 200)
        for at in positions:
            b = bytearray(blob)
            b[at] ^= 1 << rng.randrange(8)
            yield f"{field}[{at}] flipped", cols._replace(**{field: bytes(b)}), versions
        for cut in sorted({1, 2, 4, 6, len(blob) // 2, len(blob) - 1}):
            if 0 < cut <= len(blob):
                yield f"{field} cut by {cut}", cols._replace(**{field: blob[:-cut]}), versions
        yield f"{field} one byte longer", cols._replace(**{field: blob + b"\0"}), versions
    s = cols.strings
    yield "a string twice", cols._replace(strings=s + s[:1]), versions
    yield "an unused string", cols._replace(strings=s + ["unused"]), versions
    yield "strings permuted (rows then name other strings: a valid other state)", cols._replace(strings=s[::-1]), versions
    yield "a string missing", cols._replace(strings=s[:-1]), versions
    yield "no verbatim entry", cols._replace(verbatim=[]), versions
    yield "a verbatim entry too many", cols._replace(verbatim=cols.verbatim * 2), versions
    e0 = entries_from_columns(REPO, cols, versions)[0]["t0"]
    issued = row_of_entry(REPO, "t0", e0)[0][5]
    payload = derive_payload(REPO, "odd", e0.role, bytes.fromhex(e0.digest[7:]), e0.size, e0.expires, e0.version,
                             issued)
    yield "a verbatim entry a row holds", cols._replace(verbatim=[dataclasses.replace(
        e0, tag="odd", payload=payload)]), versions
    yield "absent unknown", cols._replace(absent=cols.absent + ["zz"]), versions
    yield "absent twice", cols._replace(absent=cols.absent * 2), versions
    yield "absent and a version", cols._replace(absent=cols.absent), {**versions, cols.absent[0]: 5}
    implied = entries_from_columns(REPO, cols, versions)[1]
    t0 = next(t for t in implied if ":" not in t and t not in versions)
    yield "an implied version said again", cols, dict(sorted({**versions, t0: implied[t0]}.items()))
    yield "versions out of order", cols, dict(reversed(list(versions.items())))


def test_damaged_columns_are_refused_by_both_twins_alike() -> None:
    compiled()
    repo = _sample_repo()
    cols, versions = columns_of(REPO, repo.tags, repo.versions)
    assert cols.verbatim and cols.absent and len(cols.strings) >= 3
    assert any(":" not in s for s in versions) and any(":" in s for s in versions)
    ok = _both(cols, versions)
    assert ok[0] == ok[1] == (list(repo.tags.items()), dict(repo.versions))
    refused, accepted = 0, 0
    for what, bad, vers in _mutations(cols, versions, random.Random(14)):
        a, b = _both(bad, vers)
        assert a == b, what                                  # the twins agree on every input
        if a == ("refused",):
            refused += 1
            continue
        accepted += 1
        # only a value any row may hold changed (an int, a digest or signature byte, a
        # string): the result is canonical, it writes exactly the damaged columns back
        assert "permuted" in what or ("flipped" in what and what.split("[")[0] in ("rows", "sigs", "names")), what
        back = columns_of(REPO, dict(a[0]), a[1])
        assert back == (bad, vers), what
    assert refused > 100 and accepted > 10


def test_every_cut_and_every_structural_flip_is_refused() -> None:
    compiled()
    repo = _sample_repo()
    cols, versions = columns_of(REPO, repo.tags, repo.versions)
    rng = random.Random(5)
    for what, bad, vers in _mutations(cols, versions, rng):
        structural = ("cut" in what or "longer" in what or what.startswith("ends")
                      or what.startswith("rows") and int(what[5:].split("]")[0]) % 92 >= 84)
        if structural or ("flipped" not in what and "permuted" not in what):
            assert _both(bad, vers) == (("refused",), ("refused",)), what


def _resign(path: Path, log_dir: Path, body: bytes) -> None:
    """Write ``body`` into the snapshot at ``path`` with a correct digest and signature
    (as a writer with a bug, or a hostile one holding the key, would)."""
    from trustlog.core.encoding import canonical_bytes, decode_canonical
    from trustlog.ingest.signed_file import read_signed_header, write_signed_file
    from trustlog.ingest.transparency import load_or_create_log_key

    sk = load_or_create_log_key(log_dir)
    with open(path, "rb") as f:
        raw, _ = read_signed_header(f, snapshots.MAGIC, "trustlog snapshot", 1 << 20)
    signed = decode_canonical(raw, snapshots.SignedSnapshotHeader)
    header = decode_canonical(signed.header, snapshots.SnapshotHeader)
    header = msgspec.structs.replace(header, body_sha256=hashlib.sha256(body).digest(), body_len=len(body))
    hb = canonical_bytes(header)
    write_signed_file(path, snapshots.MAGIC, canonical_bytes(snapshots.SignedSnapshotHeader(
        hb, sk.keyid, sk.sign(snapshots.SNAPSHOT_CONTEXT + hb))), body)
    path.with_suffix(".sidx").unlink(missing_ok=True)


@pytest.mark.parametrize("kind", ["dict", "compact"])
def test_a_signed_snapshot_with_damaged_columns_is_refused_and_the_log_replayed(tmp_path: Path, kind: str) -> None:
    if kind == "compact":
        compiled()
    events = history(4)
    with tagstore_backend.forced(kind):
        with TrustLog(tmp_path, snapshot_every=None) as tl:
            tl.ingest_batch([(e.to_bytes(), None) for e in events])
            path = tl.snapshot()
            want = encode_state(tl.state)
        snap = next(x for x in tl.snapshots.list() if x.path == path)
        decoded = msgspec.msgpack.decode(tl.snapshots.check_body(snap), type=snapshot_body._Body3)
        repo = next(r for r in decoded.repos if r.columns is not None and r.columns.ends)
        ends = bytearray(repo.columns.ends)
        ends[0] ^= 0x40                                       # the first name now ends past the names
        bad = msgspec.structs.replace(repo, columns=repo.columns._replace(ends=bytes(ends)))
        body = msgspec.msgpack.encode(snapshot_body._Body3([bad if r is repo else r for r in decoded.repos]))
        _resign(path, tmp_path, body)
        with TrustLog(tmp_path, snapshot_every=None) as tl:
            assert tl.snapshot_used is None
            assert any("tag columns" in s and "damaged" in s for s in tl.snapshots.skipped), tl.snapshots.skipped
            assert encode_state(tl.state) == want


def test_a_format_2_snapshot_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = history(4)
    monkeypatch.setattr(snapshots, "SNAPSHOT_FORMAT", 2)
    with TrustLog(tmp_path, snapshot_every=None) as tl:
        tl.ingest_batch([(e.to_bytes(), None) for e in events])
        tl.snapshot()
        want, n = encode_state(tl.state, 3), tl.log.next_offset
    monkeypatch.undo()
    with TrustLog(tmp_path, snapshot_every=None) as tl:
        assert [s.header.format for s in tl.snapshots.list()] == [2]
        assert tl.snapshot_used == n and tl.opened_with["snapshot"] == n
        assert encode_state(tl.state) == want
    r = verify_log(tmp_path)                                  # log verify compares it in its own format
    assert r.ok and r.snapshots_verified == len(list((tmp_path / "snapshots").glob("*.snap"))) >= 1


I64 = st.integers(-(1 << 63), (1 << 63) - 1)
NAMES = st.one_of(st.text(max_size=40), st.text(max_size=300), st.sampled_from(["\udc80", "a\ud800b", "targets"]))


@settings(max_examples=300, **SETTINGS)
@given(repo=NAMES, tag=NAMES, role=NAMES, digest=st.binary(min_size=32, max_size=32), size=I64, expires=I64,
       version=I64, issued=I64)
def test_the_derived_payload_is_the_compiled_stores(repo: str, tag: str, role: str, digest: bytes, size: int,
                                                     expires: int, version: int, issued: int) -> None:
    """derive_payload (msgspec's encoding; the exact writer for a str msgspec refuses) is the
    payload the compiled store re-derives from a row: an entry carrying it is a C row."""
    from trustlog.core.tagstore import _derive_exact, _name_bytes

    mod = compiled()
    payload = derive_payload(repo, tag, role, digest, size, expires, version, issued)
    assert payload == _derive_exact(_name_bytes(repo), _name_bytes(tag), _name_bytes(role), digest, size, expires,
                                    version, issued)
    e = TagEntry(tag, "sha256:" + digest.hex(), size, expires, role, 3, 1, 2, version, payload, (("k", b"s"),))
    store = mod.CTagStore(repo, [(tag, e)])
    assert store.verbatim_count() == 0 and store[tag] == e
    assert row_of_entry(repo, tag, e) is not None
