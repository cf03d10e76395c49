"""The maps repositories share until they write (core.shared_maps): never written
through, never changed by one repository for another, and carried by snapshots."""
from __future__ import annotations

import copy
import pickle

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_or_skip
from sim import Sim, key
from trustlog.core import tagstore_backend
from trustlog.core.shared_maps import NO_ENTRIES, owned, shared, shared_or_own
from trustlog.core.state import CREATED_ROLES, RepoState
from trustlog.ingest.snapshot_body import decode_state, encode_state

R1, T1, A1 = key("root1"), key("targets1"), key("alice1")
WRITES = [
    lambda m: m.__setitem__("k", 1),
    lambda m: m.__delitem__("root"),
    lambda m: m.update(k=1),
    lambda m: m.setdefault("k", 1),
    lambda m: m.clear(),
    lambda m: m.popitem(),
    lambda m: m.pop("root"),
    lambda m: m.__ior__({"k": 1}),
]


@pytest.mark.parametrize("write", WRITES)
def test_a_shared_map_refuses_every_write(write) -> None:
    for m in (NO_ENTRIES, CREATED_ROLES):
        before = dict(m)
        with pytest.raises((TypeError, KeyError)):
            write(m)
        assert dict(m) == before
    assert NO_ENTRIES == {} and CREATED_ROLES == {"root": 0, "targets": 1}


def test_a_shared_map_reads_as_the_dict_it_stands_for() -> None:
    assert NO_ENTRIES.pop("absent", 7) == 7 and NO_ENTRIES.get("x") is None and len(NO_ENTRIES) == 0
    assert msgspec.msgpack.encode(CREATED_ROLES) == msgspec.msgpack.encode({"root": 0, "targets": 1})
    assert copy.deepcopy(CREATED_ROLES) is CREATED_ROLES and pickle.loads(pickle.dumps(NO_ENTRIES)) is NO_ENTRIES
    assert shared((("root", 0), ("targets", 1))) is CREATED_ROLES
    copied = CREATED_ROLES.copy()
    copied["x"] = 1
    assert type(copied) is dict and "x" not in CREATED_ROLES
    assert shared_or_own({}) is NO_ENTRIES and type(shared_or_own({"a": 1})) is dict


def test_owned_copies_a_shared_map_once() -> None:
    r = RepoState("registry.example.com/a", "tofu")
    assert r.deleted_tags is NO_ENTRIES
    d = owned(r, "deleted_tags")
    d["v1"] = 3
    assert type(d) is dict and r.deleted_tags is d and owned(r, "deleted_tags") is d and NO_ENTRIES == {}


def _two_repos() -> tuple[Sim, Sim]:
    a = Sim(repo="registry.example.com/team/a")
    b = Sim(repo="registry.example.com/team/b")
    b.state, b.clock, b.offset = a.state, a.clock, a.offset
    assert a.create([R1], [T1]) == "OK"
    b.clock, b.offset = a.clock, a.offset
    assert b.create([R1], [T1]) == "OK"
    a.clock, a.offset = b.clock, b.offset
    return a, b


ACTIONS = st.lists(st.sampled_from(["tag", "delete", "role", "unrole", "compromise", "rotate"]), max_size=12)


@settings(max_examples=40, deadline=None)
@given(ACTIONS)
def test_what_one_repository_writes_no_other_repository_sees(actions: list[str]) -> None:
    """The class of bug a shared default invites: a write landing in the map every
    repository reads. Any history in one repository leaves the other's maps as created."""
    a, b = _two_repos()
    signers = [T1]
    for n, act in enumerate(actions):
        if act == "tag":
            a.sign_tag(f"v{n}", signers)
        elif act == "delete":
            tags = [t for t in a.state.repos[a.repo].tags]
            if tags:
                a.delete_tag(tags[0], signers)
        elif act == "role":
            a.set_role("targets/alice", [A1], [T1], paths=["*"])
        elif act == "unrole":
            a.remove_role("targets/alice", [T1])
        elif act == "compromise":
            a.compromise(A1, 0, [T1])
        elif act == "rotate":
            a.rotate_root([R1], 1, [R1])
    other = a.state.repos[b.repo]
    assert other.roles is CREATED_ROLES and other.deleted_tags is NO_ENTRIES
    assert other.compromised is NO_ENTRIES and other.compromised_keyids is NO_ENTRIES
    assert NO_ENTRIES == {} and CREATED_ROLES == {"root": 0, "targets": 1}
    mine = a.state.repos[a.repo]
    for name in ("roles", "deleted_tags", "compromised", "compromised_keyids"):
        m = getattr(mine, name)
        assert type(m) is dict or m is CREATED_ROLES or m is NO_ENTRIES, name
    # a snapshot carries them, and shares them again where they are the defaults
    back = decode_state(encode_state(a.state))
    for name in ("roles", "deleted_tags", "compromised", "compromised_keyids"):
        assert getattr(back.repos[a.repo], name) == getattr(mine, name)
        assert getattr(back.repos[b.repo], name) is getattr(other, name)


def test_every_writer_of_the_fold_owns_its_map() -> None:
    """Each event kind that writes one of the maps (deletion, delegation, removal,
    compromise, root rotation) is accepted and writes a dict of the repository's own."""
    a, b = _two_repos()
    assert [a.sign_tag("v1", [T1]), a.delete_tag("v1", [T1]), a.set_role("targets/alice", [A1], [T1], paths=["*"]),
            a.compromise(A1, 0, [T1]), a.remove_role("targets/alice", [T1]), a.rotate_root([R1], 1, [R1])] == ["OK"] * 6
    mine, other = a.state.repos[a.repo], a.state.repos[b.repo]
    assert mine.deleted_tags == {"v1": 3} and mine.roles == {"root": 3, "targets": 1}
    assert len(mine.compromised) == 1 and list(mine.compromised_keyids) == [A1.keyid]
    assert all(type(getattr(mine, f)) is dict for f in ("roles", "deleted_tags", "compromised", "compromised_keyids"))
    assert other.roles is CREATED_ROLES and other.deleted_tags is NO_ENTRIES and other.compromised is NO_ENTRIES


def test_the_scopes_a_new_repository_holds_are_shared_until_it_writes() -> None:
    """A compact store's versions keep the non-tag scopes (role:R, key:K) in a map that
    is shared while it is what RepoCreated leaves (role:targets and role:root at 1)."""
    try:
        created_scopes = tagstore_backend.load().CREATED_SCOPES
    except ImportError as e:
        require_or_skip("the compiled tag store (build it with `pip install -e .`)", e)
    with tagstore_backend.forced("compact"):
        a, b = _two_repos()
        mine, other = a.state.repos[a.repo], a.state.repos[b.repo]
        assert tagstore_backend.is_compact(mine)
        assert mine.versions.other is created_scopes and other.versions.other is created_scopes
        assert a.sign_tag("v1", [T1]) == "OK" and mine.versions.other is created_scopes   # a tag's scope: the store
        assert a.set_role("targets/alice", [A1], [T1], paths=["*"]) == "OK"
        assert type(mine.versions.other) is dict and mine.versions["role:targets/alice"] >= 1
        assert other.versions.other is created_scopes and dict(created_scopes) == {"role:targets": 1, "role:root": 1}
        back = decode_state(encode_state(a.state))
        assert back.repos[b.repo].versions.other is created_scopes and back.repos[a.repo].versions == mine.versions
