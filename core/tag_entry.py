"""The current signed binding of one tag (what ``RepoState.tags`` maps a tag to).

Its own module, re-exported by ``core/state.py``, so the tag stores (``core/tagstore.py``)
can build entries without importing the state that holds them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TagEntry:
    """The current signed binding of a tag, with what is needed to re-verify it."""

    tag: str
    digest: str
    size: int
    expires: int
    role: str
    grant_id: int
    log_time: int
    offset: int
    version: int
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]
