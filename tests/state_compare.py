"""Field-by-field comparison of two trust states, for the differential tests of the folds,
and the replay of a simulated history through ``TrustedFold`` beside the validating fold.

``TrustState.__eq__`` is identity, and ``RepoState ==`` says only *that* two states
differ; :func:`assert_same_state` names *where* (``repo X: tags['v1'].grant_id: 3 != 4``),
walking every field of every repository (tags, grants, roles, versions, keys, compromised
keys, deleted tags, imported TUF data …) by the dataclasses' own field lists, so a field
added to the state later is compared without touching this file.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import Any

from sim import Step
from trustlog.core import tagstore_backend
from trustlog.core.events import decode_event
from trustlog.core.state import RejectedEventError, TrustState
from trustlog.ingest.replay import TrustedFold

MAX_SHOWN = 12


def _maps(a: Any, b: Any) -> bool:
    """Both mappings: a dict and a compact tag store (core.tagstore, core._tagstore_c) or
    the versions over one compare by content, whichever store each side uses."""
    return isinstance(a, Mapping) and isinstance(b, Mapping)


def _diff(a: Any, b: Any, where: str, out: list[str]) -> None:
    if len(out) >= MAX_SHOWN:
        return
    if type(a) is not type(b) and not _maps(a, b):
        out.append(f"{where}: {type(a).__name__} {a!r:.200} != {type(b).__name__} {b!r:.200}")
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _diff(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}", out)
    elif isinstance(a, Mapping):
        # insertion order matters too: the compiled engine and snapshots follow it; but not
        # for the versions of scopes (nothing reads their order; a compact store's versions
        # list tag scopes first, and snapshots write them sorted)
        ordered = not where.endswith(".versions")
        if (list(a) != list(b)) if ordered else (sorted(a, key=repr) != sorted(b, key=repr)):
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


def trusted_outcome(fold: TrustedFold, step: Step) -> str:
    try:
        fold.apply(step.env, decode_event(step.env.payload), step.log_time, step.offset)
    except RejectedEventError as e:
        return e.reason
    return "OK"


def check_trusted_fold(trace: list[Step], pins=()) -> tuple[TrustState, Counter]:
    """Fold ``trace`` (a :class:`sim.Sim`'s, decided by the validating fold) with
    ``TrustedFold``: every accepted event must be accepted, and every refused one whose
    signatures are all genuine refused with the same reason (one with a forged signature
    is exempt: the trusted fold does not check signatures). Return the trusted fold's
    state (compare it with :func:`assert_same_state`) and the refusals compared, per reason."""
    fold = TrustedFold(TrustState(pins))
    compared: Counter = Counter()
    with tagstore_backend.forced("dict"):   # the validating fold's state holds compact stores when built
        _check_trace(fold, trace, compared)
    return fold.state, compared


def _check_trace(fold: TrustedFold, trace: list[Step], compared: Counter) -> None:
    for step in trace:
        if step.outcome == "OK":
            assert trusted_outcome(fold, step) == "OK", (step.offset, decode_event(step.env.payload))
        elif not step.forged:
            got = trusted_outcome(fold, step)
            assert got == step.outcome, (step.offset, decode_event(step.env.payload))
            compared[got] += 1
