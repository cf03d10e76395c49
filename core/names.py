"""The grammar of every name the fold accepts: repositories (GUNs), tags, roles,
digests and tag patterns.

One place, so that every stage after the fold (index, snapshots, renderers, Kafka
partitioning, pins) can rely on the same set of strings. Every check is a *full* match
over ASCII character classes: ``re.match(r"...$")`` is not enough, because ``$`` also
matches before a final ``\\n``, and ``\\d``/``\\w`` match non-ASCII digits and letters.
A name that is not accepted here never reaches the log, so it never has to be escaped
out of an index line or confused with a look-alike.
"""
from __future__ import annotations

import re
from typing import Final

MAX_REPO_LEN: Final = 255
MAX_TAG_LEN: Final = 128
MAX_ROLE_NAME_LEN: Final = 64          # the NAME of targets/NAME
MAX_PATTERN_LEN: Final = 255
MAX_TARGET_PATH_LEN: Final = 255       # an imported TUF / Notary target path (the tag of an imported image)
MAX_IMPORTED_ROLE_LEN: Final = 255     # an imported delegated role name (TUF name, Notary targets/a/b)

# A repository name as a registry holds it (its catalog, /v2/<name>/...): the OCI
# distribution-spec <name>, path components of lower-case alphanumerics joined by '.',
# '_', '__' or a run of '-' (distribution-spec v1.0.1, distribution/reference).
_DISTRIBUTION_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
DISTRIBUTION_NAME_RE: Final = re.compile(rf"{_DISTRIBUTION_COMPONENT}(?:/{_DISTRIBUTION_COMPONENT})*")
# A GUN, the name the fold accepts: the same components with one separator character
# between alphanumerics (the grammar's older, stricter form: no '__', no '--'), and an
# optional :port after the first component (the registry host).
_COMPONENT: Final = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
REPO_RE: Final = re.compile(rf"{_COMPONENT}(?::[0-9]+)?(?:/{_COMPONENT})*")
TAG_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,%d}" % (MAX_TAG_LEN - 1))
ROLE_RE: Final = re.compile(r"targets/[A-Za-z0-9][A-Za-z0-9._-]{0,%d}" % (MAX_ROLE_NAME_LEN - 1))
DIGEST_RE: Final = re.compile(r"sha256:[0-9a-f]{64}")
# Imported TUF / Notary metadata: a target path becomes a tag and a delegated role name a
# role of the state, so they get a grammar too (they reach the same index, renderers,
# URLs and file names). Tag characters in '/'-separated components, none empty and none
# starting with '.' (so no '.' or '..' component that a URL or a path would collapse).
_PATH_PART: Final = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
TARGET_PATH_RE: Final = re.compile(rf"{_PATH_PART}(?:/{_PATH_PART})*")
IMPORTED_ROLE_RE: Final = TARGET_PATH_RE
# shell-style patterns over tag characters: * ? [seq] [!seq]
PATTERN_RE: Final = re.compile(r"[A-Za-z0-9_.*?!\[\]-]{1,%d}" % MAX_PATTERN_LEN)
# pin patterns over repository characters (see :func:`is_pin_pattern`)
PIN_PATTERN_RE: Final = re.compile(r"[a-z0-9._:/*?!\[\]-]{1,%d}" % MAX_REPO_LEN)


def _full(rx: re.Pattern[str], s: object) -> bool:
    return type(s) is str and rx.fullmatch(s) is not None


def is_repo(name: object) -> bool:
    """A repository name (GUN) such as ``registry.example.com/team/app``."""
    return _full(REPO_RE, name) and len(name) <= MAX_REPO_LEN  # type: ignore[arg-type]


def is_distribution_name(name: object) -> bool:
    """A repository name as a registry serves it (``team/app``, no host): what the
    registry sweep reads from a catalog before it maps it to a GUN."""
    return _full(DISTRIBUTION_NAME_RE, name) and len(name) <= MAX_REPO_LEN  # type: ignore[arg-type]


def is_tag(tag: object) -> bool:
    return _full(TAG_RE, tag)


def is_delegated_role(role: object) -> bool:
    """``targets/NAME`` (a delegated signer); ``root`` and ``targets`` are not."""
    return _full(ROLE_RE, role)


def is_digest(digest: object) -> bool:
    return _full(DIGEST_RE, digest)


def is_target_path(path: object) -> bool:
    """An imported TUF / Notary target path (``app/v1``; a Notary tag such as ``v1``)."""
    return _full(TARGET_PATH_RE, path) and len(path) <= MAX_TARGET_PATH_LEN  # type: ignore[arg-type]


def is_imported_role(role: object) -> bool:
    """An imported delegated role name (TUF ``releases``, Notary ``targets/a/b``); the
    top-level role names are refused by the metadata parser."""
    return _full(IMPORTED_ROLE_RE, role) and len(role) <= MAX_IMPORTED_ROLE_LEN  # type: ignore[arg-type]


def is_pattern(pattern: object) -> bool:
    """A delegated signer's tag pattern (``fnmatch`` syntax over tag characters)."""
    return _full(PATTERN_RE, pattern)


def is_pin_pattern(pattern: object) -> bool:
    """A pin's repository pattern (``fnmatch`` syntax over repository characters)."""
    return _full(PIN_PATTERN_RE, pattern)


__all__ = [
    "DISTRIBUTION_NAME_RE", "is_distribution_name",
    "DIGEST_RE", "IMPORTED_ROLE_RE", "MAX_IMPORTED_ROLE_LEN", "MAX_TARGET_PATH_LEN", "TARGET_PATH_RE",
    "is_imported_role", "is_target_path", "MAX_PATTERN_LEN", "MAX_REPO_LEN", "MAX_ROLE_NAME_LEN", "MAX_TAG_LEN", "PATTERN_RE",
    "PIN_PATTERN_RE", "REPO_RE", "ROLE_RE", "TAG_RE", "is_delegated_role", "is_digest", "is_pattern",
    "is_pin_pattern", "is_repo", "is_tag",
]
