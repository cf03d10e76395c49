"""The body of a state snapshot: how a :class:`~trustlog.core.state.TrustState` is
written as MessagePack and read back (``ingest/snapshots.py`` describes the file around
it, its header, signature and checks).

Its own module so that both the snapshot store and the per-repository index
(``snapshot_index.py``, which decodes single repositories for ``view.py``) use one codec
without importing each other.
"""
from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Final

import msgspec

from trustlog.core import tagstore_backend
from trustlog.core.errors import EncodingError
from trustlog.core.keys import PublicKey
from trustlog.core.shared_maps import shared_or_own
from trustlog.core.state import CREATED_ROLES, Grant, Pin, RepoState, TagEntry, TrustState
from trustlog.core.tagstore import SnapColumns
from trustlog.core.tuf_model import TufRepo

# 2: RepoState.versions (the last accepted version of each scope, core.events.version_scope);
# a format-1 snapshot lacks it and would forget replay protection, so it is skipped and rebuilt.
# 3: the tags of a native repository as columns (core.tagstore.SnapColumns); 2 still loads.
SNAPSHOT_FORMAT: Final = 3
READABLE_FORMATS: Final = (2, 3)


class _Body(msgspec.Struct, frozen=True):
    repos: list[RepoState]


class _Repo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A repository in a snapshot body: the fields of :class:`RepoState` (a format-2
    repository is one of these without ``columns``) and, for a native one, ``columns``:
    its tags (``tags`` is then empty) and its versions only where they do not imply."""

    name: str
    origin: str
    version: int = 0
    keys: dict[str, PublicKey] = msgspec.field(default_factory=dict)
    grants: list[Grant] = msgspec.field(default_factory=list)
    roles: dict[str, int] = msgspec.field(default_factory=dict)
    compromised: dict[bytes, int] = msgspec.field(default_factory=dict)
    compromised_keyids: dict[str, int] = msgspec.field(default_factory=dict)
    tags: dict[str, TagEntry] = msgspec.field(default_factory=dict)
    deleted_tags: dict[str, int] = msgspec.field(default_factory=dict)
    last_log_time: int = 0
    tuf: TufRepo | None = None
    versions: dict[str, int] = msgspec.field(default_factory=dict)
    columns: SnapColumns | None = None   # an array (a NamedTuple), no field names


class _Body3(msgspec.Struct, frozen=True):
    repos: list[_Repo]


_body_decoder = msgspec.msgpack.Decoder(_Body3)      # formats 2 and 3
_repo_decoder = msgspec.msgpack.Decoder(_Repo)


def _enc_hook(obj: object) -> object:
    # a compact per-tag store (core.tagstore, core._tagstore_c) and the versions over one are
    # written as the maps they stand for, so a snapshot's bytes do not depend on how the
    # state holds its tags
    if isinstance(obj, Mapping):
        return dict(obj.items())
    raise NotImplementedError(f"a snapshot cannot hold {type(obj).__name__}")


_body_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def _repo_v3(r: RepoState) -> _Repo:
    got = tagstore_backend.export_columns(r)
    if got is None:   # imported metadata, or a tag name the fold would not accept: a map
        tags, versions, columns = r.tags, dict(sorted(r.versions.items())), None
    else:
        cols, versions = got
        tags, columns = {}, SnapColumns(*cols)
    return _Repo(r.name, r.origin, r.version, r.keys, r.grants, r.roles, r.compromised, r.compromised_keyids,
                 tags, r.deleted_tags, r.last_log_time, r.tuf, versions, columns)   # type: ignore[arg-type]


def encode_state(state: TrustState, fmt: int | None = None) -> bytes:
    """The snapshot body of ``state`` in format ``fmt`` (default: :data:`SNAPSHOT_FORMAT`;
    ``log verify`` compares an older snapshot in its own format). The bytes depend only on
    the state's values, never on which store holds its tags: each repository's versions
    are written in the order of their scopes (a compact store does not keep a dict's
    insertion order for them, and nothing reads that order), and the columns of format 3
    are canonical (core.tagstore)."""
    if (SNAPSHOT_FORMAT if fmt is None else fmt) >= 3:
        return _body_encoder.encode(_Body3([_repo_v3(r) for r in state.repos.values()]))
    return _body_encoder.encode(_Body([replace(r, versions=dict(sorted(r.versions.items())))
                                       for r in state.repos.values()]))


def _repo_state(s: _Repo) -> RepoState:
    """The :class:`RepoState` of a decoded repository, its tags in the selected store:
    columns imported in one pass (compiled) or as entries (pure Python); a map adopted."""
    roles = CREATED_ROLES if s.tuf is None and s.roles == CREATED_ROLES else s.roles   # shared, as the fold leaves them
    repo = RepoState(s.name, s.origin, s.version, s.keys, s.grants, roles, shared_or_own(s.compromised),
                     shared_or_own(s.compromised_keyids), s.tags, shared_or_own(s.deleted_tags), s.last_log_time, s.tuf,
                     s.versions)
    if s.columns is None:
        return tagstore_backend.adopt(repo)
    if s.tuf is not None or s.tags:
        raise EncodingError(f"{s.name!r} carries its tags both as columns and as a map, or is imported metadata")
    repo.tags, repo.versions = tagstore_backend.import_columns(s.name, s.columns, s.versions)
    return repo


def decode_repo(raw: bytes | memoryview) -> RepoState:
    """One repository of a snapshot body (format 2 or 3); EncodingError if it does not
    decode or its columns do not check out."""
    try:
        s = _repo_decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise EncodingError(f"a repository of the snapshot body does not decode: {e}") from e
    return _repo_state(s)


def decode_state(body: bytes, pins: Iterable[Pin] = ()) -> TrustState:
    """A :class:`TrustState` from a snapshot body of format 2 or 3 (the collector is
    paused while the objects are made: it would otherwise rescan them repeatedly).
    Raises :class:`EncodingError` when anything in it does not check out; nothing of a
    refused body is kept."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            decoded = _body_decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise EncodingError(f"snapshot body does not decode: {e}") from e
        repos = {}
        for s in decoded.repos:
            if s.name in repos:
                raise EncodingError(f"snapshot body holds {s.name!r} twice")
            repos[s.name] = _repo_state(s)
    finally:
        if enabled:
            gc.enable()
    st = TrustState(pins)
    st.repos = repos
    return st
