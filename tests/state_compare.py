"""Field-by-field comparison of two trust states, for the differential tests of the folds.

``TrustState.__eq__`` is identity, and ``RepoState ==`` says only *that* two states
differ; :func:`assert_same_state` names *where* (``repo X: tags['v1'].grant_id: 3 != 4``),
walking every field of every repository (tags, grants, roles, versions, keys, compromised
keys, deleted tags, imported TUF data …) by the dataclasses' own field lists, so a field
added to the state later is compared without touching this file.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from trustlog.core.state import TrustState

MAX_SHOWN = 12


def _diff(a: Any, b: Any, where: str, out: list[str]) -> None:
    if len(out) >= MAX_SHOWN:
        return
    if type(a) is not type(b):
        out.append(f"{where}: {type(a).__name__} {a!r:.200} != {type(b).__name__} {b!r:.200}")
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _diff(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}", out)
    elif isinstance(a, dict):
        if list(a) != list(b):  # insertion order matters too: the compiled engine and snapshots follow it
            missing, extra = [k for k in a if k not in b], [k for k in b if k not in a]
            out.append(f"{where}: keys differ (only in the first: {missing!r:.300}; only in the second: "
                       f"{extra!r:.300}; or in another order)")
        for k in a:
            if k in b:
                _diff(a[k], b[k], f"{where}[{k!r}]", out)
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} items != {len(b)} items")
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{where}[{i}]", out)
    elif a != b:
        out.append(f"{where}: {a!r:.200} != {b!r:.200}")


def state_differences(a: TrustState, b: TrustState) -> list[str]:
    """Where ``a`` and ``b`` differ (at most :data:`MAX_SHOWN` places); empty when equal."""
    out: list[str] = []
    if a.version != b.version:
        out.append(f"state.version: {a.version} != {b.version}")
    if a.pins != b.pins:
        out.append(f"state.pins: {a.pins!r} != {b.pins!r}")
    _diff(a.repos, b.repos, "repos", out)
    return out


def assert_same_state(a: TrustState, b: TrustState, context: object = "") -> None:
    """Fail naming every place (up to :data:`MAX_SHOWN`) where the two states differ."""
    diffs = state_differences(a, b)
    assert not diffs, (f"{context}: " if context else "") + "the states differ:\n  " + "\n  ".join(diffs)
