"""What the fold keeps of a repository whose trust data is imported TUF / Notary
metadata (``RepoState.tuf``): per role, the verified metadata that is current.

Plain data (dataclasses of builtins) so that state snapshots encode it; the rules that
fill it are in :mod:`trustlog.core.tuf_fold`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TufDelegation:
    """A delegation as the delegating role's current metadata declares it."""

    name: str
    keyids: list[str]                 # trustlog key ids (usable keys only)
    threshold: int
    paths: list[str] | None
    path_hash_prefixes: list[str] | None
    terminating: bool
    keymap: dict[str, str]            # the metadata's key id -> trustlog key id


@dataclass(slots=True)
class TufRole:
    """The current verified metadata of one targets role (``targets`` or delegated)."""

    version: int
    expires: int
    message: bytes                    # the canonical bytes its signatures sign
    signatures: list[tuple[str, bytes]]   # (trustlog key id, signature)
    targets: dict[str, tuple[str, int]]   # path -> (sha256 hex, length)
    delegations: list[TufDelegation]
    log_time: int
    offset: int
    event_version: int


@dataclass(slots=True)
class TufRepo:
    dialect: str                      # "tuf" or "notary"
    root_version: int
    root_metadata: bytes              # the current root file, as its publisher served it
    roles: dict[str, TufRole] = field(default_factory=dict)
    delegator: dict[str, str] = field(default_factory=dict)   # delegated role -> role delegating it
    # the first root's keys: trustlog key id -> the other ids a pin may name it by (its
    # TUF key id; for a Notary certificate, the id `notary key list` prints)
    first_root_names: dict[str, list[str]] = field(default_factory=dict)
