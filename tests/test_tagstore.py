"""core.tagstore and core._tagstore_c: both compact per-tag stores (the pure-Python
columns and the compiled C rows) behave exactly like ``dict[str, TagEntry]`` over any
sequence of mapping operations (hypothesis), keep entries they cannot hold verbatim,
and load back equal (TagStore's dump, with damaged columns refused; CTagStore's pickle);
the compiled store's versions of tag scopes equal the dict they replace; and the fold
over each store gives the state and verdicts of the fold over dicts."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pickle

from conftest import require_or_skip
from sim import Sim, key
from trustlog.core import tagstore_backend
from trustlog.core.errors import EncodingError
from trustlog.core.evaluate import Request
from trustlog.core.events import ImageSigned, encode_event
from trustlog.core.state import RejectedEventError, TagEntry, TrustState
from trustlog.core.tagstore import TagColumns, TagStore
from trustlog.ingest.synthetic import SyntheticRegistry
from trustlog.verifier.batch import BatchVerifier

REF = 1_900_000_000

TAGS = ["v1", "v2", "latest", "a" * 40, "x.y-z_1"]
KEYIDS = ["ab" * 32, "cd" * 32, "k"] + [f"{i:064x}" for i in range(6)]   # with the roles, past the scan limit
I64 = st.integers(-(1 << 63), (1 << 63) - 1)
HEX = "0123456789abcdef"


def _canonical_digest() -> st.SearchStrategy[str]:
    return st.text(HEX, min_size=64, max_size=64).map(lambda h: "sha256:" + h)


# mostly what the fold makes, sometimes what only a mapping must keep (a digest in upper
# case or of the wrong length, ints outside int64/int32, a bool, a tag field other than its key)
def _one_digit_off() -> st.SearchStrategy[str]:
    """A canonical digest with one digit replaced by a byte next to the hex ranges (or
    beyond ASCII): the store's hex decoding must refuse each and keep the entry as given."""
    return st.tuples(_canonical_digest(), st.integers(7, 70), st.sampled_from("/:@`gGA\x00é")).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:])


digests = st.one_of(_canonical_digest(), _canonical_digest(), _one_digit_off(),
                    st.sampled_from(["sha256:" + "AB" * 32, "sha256:ab", "", "md5:0"]))
big_ints = st.one_of(I64, I64, st.sampled_from([1 << 63, -(1 << 63) - 1, 1 << 70]))
grant_ids = st.one_of(st.integers(0, 40), st.integers(-(1 << 31), (1 << 31) - 1), st.sampled_from([1 << 31, True]))
roles = st.sampled_from(["targets", "targets/ci", "targets/a/b", "root"])
signatures = st.lists(
    st.tuples(st.sampled_from(KEYIDS), st.binary(max_size=80)), max_size=4).map(tuple)


REPO = "registry.example.com/store/app"


def compiled_store() -> type:
    """core._tagstore_c.CTagStore; under CI=true a missing build fails the test."""
    try:
        return tagstore_backend.load().CTagStore
    except ImportError as e:
        require_or_skip("the compiled tag store (build it with `pip install -e .`)", e)
        raise


@st.composite
def fold_entries(draw: st.DrawFn, tag: str) -> TagEntry:
    """An entry as the fold makes it: its payload the canonical ImageSigned of its fields
    (sometimes of another repository, which the compiled store must keep verbatim)."""
    ints = st.one_of(st.integers(0, 300), st.integers(-(1 << 40), 1 << 40), I64)
    repo = REPO if draw(st.integers(0, 7)) else "registry.example.com/other"
    ev = ImageSigned(repo, draw(ints), draw(ints), draw(roles), tag, draw(_canonical_digest()), draw(ints), draw(ints))
    return TagEntry(tag, ev.digest, ev.size, ev.expires, ev.role, draw(st.integers(0, 40)), draw(I64), draw(I64),
                    ev.version, encode_event(ev), draw(signatures))


@st.composite
def entries(draw: st.DrawFn, tag: str) -> TagEntry:
    if draw(st.booleans()):
        return draw(fold_entries(tag))
    etag = tag if draw(st.integers(0, 15)) else draw(st.sampled_from(TAGS))
    return TagEntry(etag, draw(digests), draw(big_ints), draw(big_ints), draw(roles), draw(grant_ids),
                    draw(big_ints), draw(big_ints), draw(big_ints), draw(st.binary(max_size=300)), draw(signatures))


@st.composite
def operations(draw: st.DrawFn) -> list[tuple]:
    ops = []
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["set", "set", "set", "del", "pop", "get", "compact", "roundtrip", "clear"]))
        tag = draw(st.sampled_from(TAGS))
        ops.append((kind, tag, draw(entries(tag)) if kind == "set" else None))
    return ops


def _same(store: TagStore, model: dict[str, TagEntry]) -> None:
    assert len(store) == len(model) and bool(store) == bool(model)
    assert list(store) == list(model)                      # the iteration order of a dict, too
    assert list(store.keys()) == list(model.keys())
    assert list(store.items()) == list(model.items())
    assert list(store.values()) == list(model.values())
    assert len(store.values()) == len(model)
    assert store == model and model == dict(store.items())
    for t in TAGS:
        assert (t in store) == (t in model)
        assert store.get(t) == model.get(t)


def _new_store(kind: str):
    return TagStore() if kind == "py" else compiled_store()(REPO)


def _roundtrip(store):
    return TagStore.load(store.dump()) if type(store) is TagStore else pickle.loads(pickle.dumps(store))


@pytest.mark.parametrize("kind", ["py", "c"])
@settings(max_examples=150, deadline=None)
@given(ops=operations())
def test_store_behaves_like_a_dict_of_tag_entries(kind: str, ops: list[tuple]) -> None:
    store, model = _new_store(kind), {}
    for op, tag, entry in ops:
        if op == "set":
            store[tag] = entry
            model[tag] = entry
        elif op == "del":
            if tag in model:
                del store[tag]
                del model[tag]
            else:
                with pytest.raises(KeyError):
                    del store[tag]
        elif op == "pop":
            assert store.pop(tag, None) == model.pop(tag, None)
        elif op == "get":
            if tag in model:
                assert store[tag] == model[tag]
            else:
                with pytest.raises(KeyError):
                    store[tag]
        elif op == "compact":
            store.compact()
        elif op == "roundtrip":
            store = _roundtrip(store)
        elif op == "clear":
            store.clear()
            model.clear()
        _same(store, model)
    assert _roundtrip(store) == model


SCOPES = TAGS + ["role:targets", "role:root", "key:" + "ab" * 32]


@st.composite
def version_operations(draw: st.DrawFn) -> list[tuple]:
    ops = []
    for _ in range(draw(st.integers(0, 50))):
        kind = draw(st.sampled_from(["set", "set", "del", "vset", "vset", "vset", "vdel", "compact", "roundtrip",
                                     "clear"]))
        tag = draw(st.sampled_from(TAGS if kind in ("set", "del") else SCOPES))
        value = draw(st.one_of(st.integers(0, 40), st.integers(0, 40), I64, st.sampled_from([True, 1 << 70, "x"])))
        ops.append((kind, tag, draw(entries(tag)) if kind == "set" else value))
    return ops


@settings(max_examples=200, deadline=None)
@given(version_operations())
def test_versions_over_a_compiled_store_equal_the_dict_they_replace(ops: list[tuple]) -> None:
    """``RepoState.versions`` over a CTagStore (TagVersions): a tag scope's version is its
    row's version column unless a write said otherwise (a deleted tag's, one never set);
    whatever the interleaving of tag writes and version writes, it equals the dict."""
    mod = tagstore_backend.load() if tagstore_backend.compiled is None else tagstore_backend.compiled
    compiled_store()
    store = mod.CTagStore(REPO)
    versions = mod.TagVersions(store)
    tags: dict[str, TagEntry] = {}
    model: dict[str, object] = {}
    for kind, scope, arg in ops:
        if kind == "set":
            store[scope] = tags[scope] = arg
        elif kind == "del" and scope in tags:
            del store[scope], tags[scope]
        elif kind == "vset":
            versions[scope] = model[scope] = arg
        elif kind == "vdel":
            if scope in model:
                del versions[scope], model[scope]
            else:
                with pytest.raises(KeyError):
                    del versions[scope]
        elif kind == "compact":
            store.compact()
        elif kind == "roundtrip":
            store = pickle.loads(pickle.dumps(store))
            versions = mod.TagVersions(store, versions.other)
        elif kind == "clear":
            store.clear()
            tags.clear()
        assert store == tags and list(store) == list(tags)
        assert versions == model and model == versions and len(versions) == len(model)
        assert sorted(versions) == sorted(model)
        for sc in SCOPES:
            assert versions.get(sc) == model.get(sc) and (sc in versions) == (sc in model)
            got = versions.get(sc, "none")
            assert type(got) is type(model.get(sc, "none"))


def test_backend_adopts_a_dict_state_into_equal_compact_maps() -> None:
    mod = tagstore_backend.load() if tagstore_backend.compiled is None else tagstore_backend.compiled
    compiled_store()
    s = Sim(repo=REPO)
    root, targets = key("ts-root"), key("ts-targets")
    with tagstore_backend.forced("dict"):
        s.create([root], [targets])
        for t in range(6):
            s.sign_tag(f"t{t}", [targets])
        s.delete_tag("t2", [targets])
    repo = s.state.repos[REPO]
    assert type(repo.tags) is dict
    tags, versions = dict(repo.tags), dict(repo.versions)
    with tagstore_backend.forced("compact"):
        tagstore_backend.adopt(repo)
    assert type(repo.tags) is mod.CTagStore and type(repo.versions) is mod.TagVersions
    assert repo.tags == tags and list(repo.tags) == list(tags) and repo.versions == versions
    assert repo.tags.verbatim_count() == 0 and repo.versions.store is repo.tags


def test_a_compiled_store_refuses_to_change_while_it_is_read() -> None:
    mod = tagstore_backend.load() if tagstore_backend.compiled is None else tagstore_backend.compiled
    compiled_store()
    store = mod.CTagStore(REPO, {"v1": _entry("v1", 1)})
    gen = store.generation
    with mod.reading():
        with pytest.raises(RuntimeError, match="cannot change"):
            store["v2"] = _entry("v2", 2)
        with pytest.raises(RuntimeError, match="cannot change"):
            del store["v1"]
        assert store["v1"] == _entry("v1", 1)      # reading is fine
    assert store.generation == gen and mod.readers() == 0
    store["v2"] = _entry("v2", 2)
    assert store.generation > gen


def _entry(tag: str, i: int, **kw: object) -> TagEntry:
    e = dict(tag=tag, digest="sha256:" + f"{i:064x}", size=1234, expires=4_102_444_800, role="targets",
             grant_id=1, log_time=1_700_000_000_000_000_000 + i, offset=i, version=i + 2,
             payload=bytes(range(200)), signatures=(("ab" * 32, bytes(64)),))
    e.update(kw)
    return TagEntry(**e)  # type: ignore[arg-type]


def test_fold_entries_live_in_the_columns_and_odd_ones_verbatim() -> None:
    store = TagStore({f"v{i}": _entry(f"v{i}", i) for i in range(100)})
    assert not store._verbatim and store._strs == ["targets", "ab" * 32]
    assert store.nbytes() == 100 * (6 * 8 + 4 * 4 + 32 + 200 + 6 + 64)
    odd = _entry("odd", 1, digest="sha256:" + "AB" * 32)   # not canonical: kept as given, never re-cased
    store["odd"] = odd
    assert store["odd"] is odd and store["odd"].digest == odd.digest
    got = store["v7"]
    assert got == _entry("v7", 7) and got is not store["v7"]   # a copy on each access
    assert type(got.payload) is bytes and type(got.signatures) is tuple and type(got.signatures[0][1]) is bytes


def test_overwrites_and_deletes_compact_the_arena() -> None:
    store = TagStore()
    for rnd in range(40):
        for i in range(100):
            store[f"v{i}"] = _entry(f"v{i}", i, payload=bytes([rnd]) * 500)
    live = 100 * (500 + 6 + 64)
    assert len(store._arena) <= 2 * live + (1 << 16) + 570
    for i in range(50):
        del store[f"v{i}"]
    store.compact()
    assert len(store._arena) == 50 * (500 + 6 + 64) and store["v99"].payload == bytes([39]) * 500
    for i in range(50, 100):
        del store[f"v{i}"]
    assert store.nbytes() == 0 and not store


def _cols(**kw: object) -> TagColumns:
    return TagStore({"v1": _entry("v1", 1), "v2": _entry("v2", 2)}).dump()._replace(**kw)


@pytest.mark.parametrize("damage", [
    dict(q=b"\x00" * 7),                                   # not whole int64s
    dict(i=b""),                                           # rows without their int32 columns
    dict(digests=b"\x00" * 10),
    dict(names=["v1", "v1"]),                              # a tag twice
    dict(arena=b"\x00" * 10),                              # rows point past the arena
    dict(strings=[]),                                      # a role index with no role
    dict(strings=["targets", "targets", "ab" * 32]),       # a string twice
    dict(verbatim=[_entry("v1", 1)]),                      # a verbatim entry no row refers to
])
def test_damaged_columns_are_refused(damage: dict) -> None:
    with pytest.raises(EncodingError):
        TagStore.load(_cols(**damage))


def test_dump_is_bulk_and_keeps_order() -> None:
    store = TagStore({f"t{i}": _entry(f"t{i}", i) for i in range(10)})
    del store["t3"]
    store["t3"] = _entry("t3", 33)
    store["odd"] = _entry("x", 5)          # tag field other than its key: verbatim
    cols = store.dump()
    assert cols.names == [f"t{i}" for i in range(10) if i != 3] + ["t3", "odd"]
    back = TagStore.load(cols)
    assert list(back.items()) == list(store.items())


# -- the narrow columns at the bounds --------------------------------------------------
# A compiled row holds size, offset, version and issued_at as uint32 and keeps a row where
# one of them is outside [0, 2**32) "wide" (the four as int64 beside the rows): every value
# the fold accepts (core.bounds: int64) must still be a C row, equal on every read, in the
# snapshot columns and after compaction, whichever side of the boundary it is on.

EDGES = st.sampled_from([-(1 << 63), -(1 << 32), -1, 0, 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32,
                         (1 << 63) - 1])
EDGE_INTS = st.one_of(EDGES, EDGES, I64, st.integers(0, 300))


@st.composite
def edge_entries(draw: st.DrawFn, tag: str) -> TagEntry:
    """A fold entry of REPO (its payload the canonical ImageSigned of its fields) whose
    integers sit at the int64 and uint32 bounds."""
    ev = ImageSigned(REPO, draw(EDGE_INTS), draw(EDGE_INTS), "targets", tag, draw(_canonical_digest()),
                     draw(EDGE_INTS), draw(EDGE_INTS))
    return TagEntry(tag, ev.digest, ev.size, ev.expires, ev.role, draw(st.integers(0, 40)), draw(EDGE_INTS),
                    draw(EDGE_INTS), ev.version, encode_event(ev), draw(signatures))


@st.composite
def edge_operations(draw: st.DrawFn) -> list[tuple]:
    ops = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["set"] * 6 + ["del", "compact"]))
        tag = draw(st.sampled_from(TAGS))
        ops.append((kind, tag, draw(edge_entries(tag)) if kind == "set" else None))
    return ops


@settings(max_examples=200, deadline=None)
@given(ops=edge_operations())
def test_fold_entries_at_the_int64_bounds_are_c_rows(ops: list[tuple]) -> None:
    from trustlog.core.tagstore import columns_of

    store, model = compiled_store()(REPO), {}
    for op, tag, entry in ops:
        if op == "set":
            store[tag] = entry
            model[tag] = entry
        elif op == "del" and tag in model:
            del store[tag]
            del model[tag]
        elif op == "compact":
            store.compact()
        assert store.verbatim_count() == 0           # wide or narrow, a C row
        _same(store, model)
    rows = [store.row_index(t) for t in model]
    blob, offs = store.derive_payloads(rows)
    assert [blob[offs[i]:offs[i + 1]] for i in range(len(rows))] == [e.payload for e in model.values()]
    assert pickle.loads(pickle.dumps(store)) == model
    got = store.export_columns()
    want = columns_of(REPO, model, {t: e.version for t, e in model.items()})
    assert want is not None and got is not None
    cols, rest = want
    assert (got[0], got[1], got[2], got[3], got[4], got[5]) == tuple(cols)[:6] and not rest
    back = compiled_store().from_columns(REPO, *got)
    assert back == model and back.verbatim_count() == 0 and back.export_columns() == got
    store.compact()
    assert store == model and store.export_columns() == got


def test_wide_rows_are_dropped_by_compaction() -> None:
    """Overwriting a wide row leaves its int64 columns dead beside the rows until the
    store compacts: the dead ones never outgrow the live ones for long."""
    store = compiled_store()(REPO)
    ev = ImageSigned(REPO, 1 << 40, 7, "targets", "v1", "sha256:" + "ab" * 32, 1 << 50, 1 << 60)
    for i in range(1000):
        store["v1"] = TagEntry("v1", ev.digest, ev.size, ev.expires, "targets", 1, i, i << 33, ev.version,
                               encode_event(ev), ())
    assert store.nbytes() < 4096 and store["v1"].offset == 999 << 33 and store.verbatim_count() == 0


def test_strings_are_read_in_place_and_odd_ones_kept_beside() -> None:
    """The string table's roles and key ids are read as UTF-8 from the str objects
    themselves (no bytes copy per store); a str with lone surrogates, which has no
    strict UTF-8, keeps its bytes beside the table and is still a C row's."""
    from trustlog.core.tagstore import columns_of, derive_payload

    odd_repo = "registry.example.com/odd\udc80"
    for repo, role, kid in [(REPO, "targets", "k\udc80"), (REPO, "targets/\u00e9\udc80", "ab" * 32),
                            (odd_repo, "targets", "k\u00e9")]:
        store, model = compiled_store()(repo), {}
        for i in range(3):
            payload = derive_payload(repo, f"v{i}", role, bytes([i]) * 32, 10, 1 << 40, i + 1, 7)  # (msgspec refuses such strs)
            model[f"v{i}"] = store[f"v{i}"] = TagEntry(f"v{i}", "sha256:" + f"{i:02x}" * 32, 10, 1 << 40, role, 1, 5,
                                                       i, i + 1, payload, ((kid, b"s" * 64),))
        assert store.verbatim_count() == 0 and store == model
        assert pickle.loads(pickle.dumps(store)) == model
        blob, offs = store.derive_payloads([0, 1, 2])
        assert [blob[offs[i]:offs[i + 1]] for i in range(3)] == [e.payload for e in model.values()]
        got, want = store.export_columns(), columns_of(repo, model, {t: e.version for t, e in model.items()})
        assert got is not None and want is not None and got[:6] == tuple(want[0])[:6]
        back = compiled_store().from_columns(repo, *got)
        assert back == model and back.verbatim_count() == 0
        store.clear()
        assert not store and store.export_columns()[4] == []


# -- as RepoState.tags under the real fold ---------------------------------------------


def _fold(envs: list, store: str) -> tuple[TrustState, list[str]]:
    """Fold ``envs`` with tags in dicts (``"dict"``), in TagStores (``"py"``: a dict
    swapped for one after each event) or in the compiled stores (``"c"``)."""
    if store == "c":
        compiled_store()
    state, outcomes = TrustState(), []
    with tagstore_backend.forced("compact" if store == "c" else "dict"):
        for off, env in enumerate(envs):
            try:
                state.apply(env, log_time=1_000 * (off + 1), offset=off)
                outcomes.append("OK")
            except RejectedEventError as e:
                outcomes.append(e.reason)
            if store == "py":
                for repo in state.repos.values():
                    if type(repo.tags) is dict:
                        repo.tags = TagStore(repo.tags)
    return state, outcomes


def _in_rows(tags: object) -> bool:
    """Every entry the fold made fits the store's columns or rows (none verbatim)."""
    return not tags._verbatim if isinstance(tags, TagStore) else tags.verbatim_count() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("store", ["py", "c"])
def test_the_fold_over_a_compact_store_gives_the_same_state_and_verdicts(store: str) -> None:
    """The fold writes, reads and deletes through ``repo.tags`` (and ``repo.versions``);
    over a compact store it must accept and reject the same events, hold equal entries
    and versions and give the same verdicts (pure-Python evaluation)."""
    reg = SyntheticRegistry(repos=8, tags=120, ref_time=REF)
    envs = list(reg.phase1()) + list(reg.phase2(1_000 * 200))
    # deletions and re-signing: delete every third tag of each repository, then sign one back
    s = Sim(repo="registry.example.com/extra/app")
    root, targets = key("ts-root"), key("ts-targets")
    s.create([root], [targets])
    for t in range(9):
        s.sign_tag(f"t{t}", [targets])
    for t in range(0, 9, 3):
        s.delete_tag(f"t{t}", [targets])
    s.sign_tag("t3", [targets])
    envs += s.sent
    dict_state, dict_out = _fold(envs, "dict")
    store_state, store_out = _fold(envs, store)
    assert store_out == dict_out and dict_out.count("OK") > 130 and len(set(dict_out)) > 3
    assert dict_state.repos.keys() == store_state.repos.keys()
    reqs = []
    for name, repo in dict_state.repos.items():
        other = store_state.repos[name]
        assert type(other.tags) is not dict and _in_rows(other.tags)
        assert other.tags == repo.tags and list(other.tags) == list(repo.tags)
        assert other.deleted_tags == repo.deleted_tags and other.versions == repo.versions
        reqs += [Request(name, t) for t in [*repo.tags, *repo.deleted_tags, "never-signed"]]
    got = [BatchVerifier(st, ref_time=REF, engine="py").verify_all(reqs) for st in (dict_state, store_state)]
    assert got[0] == got[1] and {v.code for v in got[0]} >= {"VALID", "TAG_DELETED", "UNKNOWN_TAG"}


@pytest.mark.parametrize("store", ["py", "c"])
def test_a_snapshot_of_a_compact_state_is_the_same_bytes(store: str) -> None:
    from trustlog.ingest.snapshots import decode_state, encode_state

    s = Sim(repo="registry.example.com/snap/app")
    root, targets = key("ts-root"), key("ts-targets")
    s.create([root], [targets])
    for t in range(12):
        s.sign_tag(f"t{t}", [targets])
    s.delete_tag("t4", [targets])
    dict_state, _ = _fold(s.sent, "dict")
    store_state, _ = _fold(s.sent, store)
    body = encode_state(dict_state)
    assert encode_state(store_state) == body
    assert decode_state(body).repos[s.repo].tags == store_state.repos[s.repo].tags


def test_fold_entries_share_the_grants_key_id_strings() -> None:
    """A signature's key id in a TagEntry is the grant's string, not the envelope's copy
    (one 64-character string per key instead of one per tag)."""
    s = Sim(repo="registry.example.com/share/app")
    root, targets = key("ts-root"), key("ts-targets")
    s.create([root], [targets])
    s.sign_tag("v1", [targets])
    s.sign_tag("v2", [targets])
    repo = s.state.repos[s.repo]
    grant = repo.role_grant("targets")
    assert grant is not None
    assert all(e.signatures[0][0] is grant.keyids[0] for e in repo.tags.values())


@pytest.mark.parametrize("store", ["py", "c"])
def test_the_compiled_engine_over_a_compact_store(store: str) -> None:
    """Over a TagStore (a new TagEntry on each access) the compiled engine finds no row
    for a request by identity: a per-request verdict is the Python one or ERROR, never a
    different pass. Over the compiled store it finds the tag's row in the store and
    gives the Python verdicts; both sweeps give the Python verdicts. A request for an
    entry the store no longer holds (replaced since it was read) is ERROR."""
    try:
        v = BatchVerifier(TrustState(), ref_time=REF, engine="c")
    except ImportError as e:
        require_or_skip("the compiled verifier (build it with `pip install -e .`)", e)
        raise
    del v
    reg = SyntheticRegistry(repos=8, tags=120, ref_time=REF)
    envs = list(reg.phase1()) + list(reg.phase2(1_000 * 200))
    s = Sim(repo="registry.example.com/extra/app")
    root, targets = key("ts-root"), key("ts-targets")
    s.create([root], [targets])
    for t in range(40):
        s.sign_tag(f"t{t}", [targets])
    for t in range(0, 40, 2):         # enough deleted rows for the store to keep tombstones
        s.delete_tag(f"t{t}", [targets])
    envs += s.sent
    store_state, _ = _fold(envs, store)
    reqs = [Request(name, t) for name, repo in store_state.repos.items() for t in [*repo.tags, *repo.deleted_tags]]
    py = BatchVerifier(store_state, ref_time=REF, engine="py").verify_all(reqs)
    c = BatchVerifier(store_state, ref_time=REF, engine="c").verify_all(reqs)
    if store == "c":
        assert c == py and {x.code for x in py} >= {"VALID", "TAG_DELETED"}
    else:
        assert all(a.code == "ERROR" or a == b for a, b in zip(c, py, strict=True))
    bv = BatchVerifier(store_state, ref_time=REF, engine="c")
    swept = bv.sweep()
    signed = [x for x in py if x.code != "TAG_DELETED"]
    n_rows = bv._compiled.ct.store_rows()
    assert n_rows == (len(signed) if store == "c" else 0)   # compiled in place: no TagEntry held per row
    assert sorted((x.repo, x.tag, x.code) for x in swept) == sorted((x.repo, x.tag, x.code) for x in signed)
    if store == "c":
        from trustlog.verifier.compiled import CompiledEvaluator

        repo = store_state.repos[s.repo]
        ev = CompiledEvaluator(store_state)
        old = repo.tags["t1"]
        assert ev.evaluate([(repo, old)], REF)[0][0].value == "VALID"
        repo.tags["t1"] = TagEntry(**{**{f: getattr(old, f) for f in old.__slots__}, "offset": old.offset + 1})
        got = ev.evaluate([(repo, old)], REF)[0]       # the store moved on: the old entry is not compiled
        assert got[0].value == "ERROR" and "not compiled" in got[1]
        # a sweep's verdicts are made from the store as compiled: a change since refuses
        sw = ev.sweep(REF)
        assert len(list(sw.verdicts())) == len(signed)
        repo.tags["t3"] = repo.tags["t3"]
        with pytest.raises(RuntimeError, match="changed"):
            list(sw.verdicts())
        # the rows are read in place only while the store is as compiled: stale rows stay unverified
        with pytest.raises(RuntimeError, match="cannot change"):
            from trustlog.core._tagstore_c import reading
            with reading():
                repo.tags["t5"] = repo.tags["t5"]


def test_the_engine_never_reads_a_store_that_changed_since_it_was_compiled() -> None:
    """Rows compiled in place point into the store's memory; once the store changes
    (its generation moves) and before the engine recompiles it, its rows are not
    hashed or verified (their signatures stay unverified: ERROR), never read."""
    from conftest import require_compiled_verifier

    compiled = require_compiled_verifier()
    compiled_store()
    s = Sim(repo=REPO)
    root, targets = key("ts-root"), key("ts-targets")
    with tagstore_backend.forced("compact"):
        s.create([root], [targets])
        for t in range(30):
            s.sign_tag(f"t{t}", [targets])
    assert type(s.state.repos[REPO].tags) is compiled_store()
    ev = compiled.CompiledEvaluator(s.state)
    ct = ev.ct
    ct.refresh()
    assert ct.store_rows() == 30
    for t in range(30, 300):              # the arenas grow: realloc may move them
        s.sign_tag(f"t{t}", [targets])
    ct.ensure(None)                       # no refresh: the store is stale for the engine
    codes, details, _ = ct.sweep(REF)
    assert set(codes[:30]) == {compiled.CODES.index(compiled.Code.ERROR)}
    sw = ev.sweep(REF)                    # refresh: compiled again from the store as it is
    assert sw.counts == {"VALID": 300} and ct.store_rows() == 300


def test_row_numbers_are_shared_between_stores() -> None:
    a = TagStore({f"t{i}": _entry(f"t{i}", i) for i in range(3000)})
    b = TagStore({f"u{i}": _entry(f"u{i}", i) for i in range(3000)})
    assert a._index["t2999"] is b._index["u2999"]
    c = TagStore.load(a.dump())
    assert c._index["t2999"] is a._index["t2999"] and c == a


def test_the_store_is_chosen_like_the_folds(monkeypatch) -> None:
    """TRUSTLOG_PUREPYTHON=1: native repositories hold dicts; otherwise the compiled
    store once it is built (under CI=true a missing build fails, see compiled_store)."""
    import importlib
    import os

    monkeypatch.setenv("TRUSTLOG_PUREPYTHON", "1")
    mod = importlib.reload(tagstore_backend)
    try:
        assert mod.BACKEND == "dict"
        s = Sim(repo=REPO)
        s.create([key("ts-root")], [key("ts-targets")])
        assert type(s.state.repos[REPO].tags) is dict and type(s.state.repos[REPO].versions) is dict
    finally:
        monkeypatch.delenv("TRUSTLOG_PUREPYTHON")
        importlib.reload(tagstore_backend)
    if os.environ.get("TRUSTLOG_PUREPYTHON") != "1":
        store = compiled_store()
        assert tagstore_backend.BACKEND == "compact"
        s = Sim(repo=REPO)
        s.create([key("ts-root")], [key("ts-targets")])
        assert type(s.state.repos[REPO].tags) is store
