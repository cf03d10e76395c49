"""The registry's repository names (core/names.py ``is_distribution_name``, the one
grammar the registry sweep and ingest/oci.py use) beside the fold's GUNs: the OCI
distribution-spec grammar at its edges, and every GUN path (no host port) is one."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustlog.core import names

ROWS = [  # (registry repository name, accepted)
    ("team/app", True),
    ("a", True),
    ("a/b/c", True),
    ("te__am/app", True),          # '__' is a distribution separator (not a GUN's)
    ("a--b/c", True),              # so is a run of dashes
    ("a_b.c-d", True),
    ("a___b", False),
    ("-a", False), ("a-", False), ("a.", False), ("a//b", False), ("/a", False), ("a/", False),
    ("Team/app", False),
    ("team/app\n", False),         # a full match: '$' would admit a final newline
    ("te\u0661m/app", False),      # no non-ASCII digits
    ("host:5000/team/app", False),  # a catalog entry carries no host
    ("a" * 255, True),
    ("a" * 256, False),
    ("", False),
    (None, False),
]


@pytest.mark.parametrize(("name", "accepted"), ROWS)
def test_distribution_name_grammar(name: object, accepted: bool) -> None:
    assert names.is_distribution_name(name) is accepted


@given(st.from_regex(names.REPO_RE, fullmatch=True).filter(lambda n: ":" not in n and len(n) <= names.MAX_REPO_LEN))
def test_every_gun_without_a_port_is_a_distribution_name(gun: str) -> None:
    assert names.is_repo(gun) and names.is_distribution_name(gun)
