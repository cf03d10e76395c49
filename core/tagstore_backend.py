"""Which per-tag store a native repository's state uses: the compiled compact one or a dict.

``RepoState.tags`` of a repository created by a native ``RepoCreated`` (and of one loaded
from a snapshot) is a :class:`trustlog.core._tagstore_c.CTagStore` (C rows, no Python
object per tag) and its ``versions`` a :class:`~trustlog.core._tagstore_c.TagVersions`
over it, unless ``TRUSTLOG_PUREPYTHON=1`` (or ``TRUSTLOG_TAG_STORE=dict``, which keeps
the other compiled parts: for comparisons) or the extension was not built: then the plain
``dict[str, TagEntry]`` / ``dict[str, int]``, with a warning that says how to build it.
Both hold the same values (``tests/test_tagstore.py`` runs the same mapping histories
over each); repositories of imported TUF/Notary metadata keep dicts.

As ``ingest.fold_backend`` and ``verifier.backend``: the choice is made once, at import;
:func:`forced` switches it for a block (the differential tests fold one side over dicts).
"""
from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Final

from .errors import EncodingError
from .tagstore import SnapColumns, columns_of, entries_from_columns

MODULE: Final = "trustlog.core._tagstore_c"
BUILD_HINT: Final = ("build it with `pip install -e .` on a machine with a C compiler and Cython "
                     "(e.g. apt-get install build-essential)")


def load() -> ModuleType:
    """The compiled store's module; raises ImportError if it was not built."""
    return importlib.import_module(MODULE)


def _select() -> tuple[str, ModuleType | None]:
    if os.environ.get("TRUSTLOG_PUREPYTHON") == "1" or os.environ.get("TRUSTLOG_TAG_STORE") == "dict":
        return "dict", None
    try:
        return "compact", load()
    except ImportError as e:
        warnings.warn(f"trustlog's compiled compact tag store is missing ({e}); native repositories hold their "
                      f"tags in dicts, which gives the same states with about 5x the memory. To get it, "
                      f"{BUILD_HINT}.", RuntimeWarning, stacklevel=3)
        return "dict", None


BACKEND, compiled = _select()


@contextmanager
def forced(kind: str) -> Iterator[None]:
    """Within the block, new native repositories get ``kind`` stores (``"dict"`` or
    ``"compact"``; the latter raises ImportError when the extension is missing)."""
    global BACKEND, compiled
    saved = BACKEND, compiled
    if kind == "compact":
        BACKEND, compiled = "compact", load()
    elif kind == "dict":
        BACKEND, compiled = "dict", None
    else:
        raise ValueError(f"unknown tag store {kind!r}; use 'dict' or 'compact'")
    try:
        yield
    finally:
        BACKEND, compiled = saved


# ``repo`` below is a core.state.RepoState (not imported: core.state imports this module)


def is_compact(repo: Any) -> bool:
    """Whether ``repo``'s tags are in a compiled store (also one made inside a
    :func:`forced` block that has since ended)."""
    mod = compiled if compiled is not None else sys.modules.get(MODULE)
    return mod is not None and type(repo.tags) is mod.CTagStore


def adopt(repo: Any) -> Any:
    """Move ``repo``'s tags and tag versions into a compact store (when that is the
    backend and the repository is native); the values stay equal. Returns ``repo``."""
    mod = compiled
    if mod is None or repo.tuf is not None or type(repo.tags) is mod.CTagStore:
        return repo
    store = mod.CTagStore(repo.name, repo.tags.items())
    versions = mod.TagVersions(store)
    for scope, v in repo.versions.items():
        versions[scope] = v
    for tag in repo.tags:           # a tag never given a version keeps none
        if tag not in repo.versions and ":" not in tag and tag in versions:   # (a verbatim row implies none)
            del versions[tag]
    repo.tags = store
    repo.versions = versions
    return repo


# -- snapshot columns (core.tagstore describes the bytes; both stores write the same) ----


def export_columns(repo: Any) -> Any:
    """``(SnapColumns, versions not implied by them)`` of native repository ``repo``, or
    None when its tags are written as a map (an imported repository, or a tag name the
    fold would not accept). The compiled store exports its C rows in one pass; anything
    else (a dict, a store whose string table filled up, versions not over the store)
    goes through the pure-Python twin, which gives the same bytes."""
    if repo.tuf is not None:
        return None
    tags, versions = repo.tags, repo.versions
    mod = compiled if compiled is not None else sys.modules.get(MODULE)   # compact stores made before a forced()
    if (mod is not None and type(tags) is mod.CTagStore and type(versions) is mod.TagVersions
            and versions.store is tags):
        got = tags.export_columns()
        if got is not None:
            names, ends, rows, sigs, strings, verbatim, absent, tag_versions = got
            rest = dict(sorted([*tag_versions, *versions.other.items()]))
            return SnapColumns(names, ends, rows, sigs, strings, verbatim, absent), rest
    return columns_of(repo.name, tags, versions)


def import_columns(name: str, cols: Any, versions: dict[str, int]) -> tuple[Any, Any]:
    """``(tags, versions)`` of native repository ``name`` from its snapshot columns and
    the versions they do not imply: the compiled store (built from the columns in C)
    when that is the backend, else a dict. Raises EncodingError for damaged columns,
    with either store for exactly the same ones."""
    scopes = list(versions)
    if scopes != sorted(scopes):
        raise EncodingError(f"the versions of {name!r} are not in the order of their scopes")
    mod = compiled
    if mod is None:
        return entries_from_columns(name, cols, versions)
    tag_scopes = [(s, v) for s, v in versions.items() if ":" not in s]
    store = mod.CTagStore.from_columns(name, cols.names, cols.ends, cols.rows, cols.sigs, cols.strings,
                                       cols.verbatim, cols.absent, tag_scopes)
    return store, mod.TagVersions(store, {s: v for s, v in versions.items() if ":" in s})

