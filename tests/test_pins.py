"""Pins: every pin whose pattern matches a new repository must hold, not only the first.

Finding 6 of issue 8: with a broad pattern listed first, a narrower pin behind it was
never consulted. Rows: the pins in force, the root key the repository is created with,
the fold's answer and how the first root was trusted. Rows run on both backends.
"""
from __future__ import annotations

import pytest

from sim import Sim, key
from trustlog.core.state import Pin, TrustState

R_ORG, R_TEAM, R_OTHER = key("pin-org"), key("pin-team"), key("pin-other")
T = key("pin-targets")
REPO = "registry.example.com/team/app"
KEYS = {"org": R_ORG, "team": R_TEAM, "other": R_OTHER}

# (row, pins as (pattern, allowed root key names), creating root key, expected, origin)
PIN_ROWS = [
    ("no pins: trust on first use", [], "other", "OK", "tofu"),
    ("one matching pin, held", [("registry.example.com/*", ["org"])], "org", "OK", "pinned"),
    ("one matching pin, broken", [("registry.example.com/*", ["org"])], "other", "PIN_MISMATCH", None),
    ("a pin that does not match", [("other.example.com/*", ["org"])], "other", "OK", "tofu"),
    ("broad pin first, narrower pin broken", [("registry.example.com/*", ["org", "team"]),
                                               ("registry.example.com/team/*", ["org"])], "team", "PIN_MISMATCH", None),
    ("broad pin first, both held", [("registry.example.com/*", ["org", "team"]),
                                     ("registry.example.com/team/*", ["team"])], "team", "OK", "pinned"),
    ("narrow pin first, broad pin broken", [("registry.example.com/team/*", ["team"]),
                                             ("registry.example.com/*", ["org"])], "team", "PIN_MISMATCH", None),
    ("exact pin behind a pattern", [("registry.example.com/*", ["org", "team"]), (REPO, ["org"])], "team",
     "PIN_MISMATCH", None),
]


@pytest.mark.parametrize("row,pins,root,expected,origin", PIN_ROWS, ids=[r[0] for r in PIN_ROWS])
def test_every_matching_pin_holds(row: str, pins, root: str, expected: str, origin: str | None, crypto) -> None:
    state = TrustState([Pin(p, frozenset(KEYS[k].keyid for k in ks)) for p, ks in pins])
    s = Sim(state=state, crypto=crypto)
    assert s.create([KEYS[root]], [T]) == expected
    if origin is not None:
        assert s.state.repos[REPO].origin == origin
