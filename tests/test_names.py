"""Names: the fold's grammar (core/names.py), and every later stage accepting what it accepts.

Finding 2 of issue 8: ``re.match(r"...$")`` let ``registry.example.com/x\\n`` in (``$``
matches before a final newline); the index then refused the name and no command could
open the log again. The rows below pin the grammar at its edges; the property test
feeds names the fold accepts — edge characters and maximum lengths included — through
append, reopen (index, snapshots), verify on both engines, and the CLI's inspect,
state --at, audit, verify and log verify.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sim import FAR, NOW, Sim, key
from trustlog.cli.main import main
from trustlog.core import names
from trustlog.core.evaluate import Request
from trustlog.core.events import Envelope, ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, sign_event
from trustlog.core.state import Pin, TrustState
from trustlog.ingest.pipeline import TrustLog
from trustlog.verifier.batch import BatchVerifier

R, T, A = key("names-root"), key("names-targets"), key("names-alice")
REPO = "registry.example.com/team/app"
DIGEST = "sha256:" + "ab" * 32

LONG_REPO = "a" * 255
LONG_TAG = "T" * 128
LONG_ROLE = "targets/" + "r" * 64

# per kind of name, the edges of the grammar: what it accepts, and what it refuses
ACCEPTED = {
    "repo": [REPO, "registry.example.com:5000/team/app", LONG_REPO],
    "tag": ["v1", "_x.y-z", LONG_TAG],
    "role": ["targets/alice", LONG_ROLE],
    "digest": [DIGEST],
    "pattern": ["v*", "[!a-c]?*", "*" * 255],
    "pin": ["registry.example.com/team/*"],
}
REFUSED = {
    "repo": [REPO + "\n",                     # the reported bug: $ matches before a final \n
             REPO + "\r", "\n" + REPO, REPO + " ", REPO + "/", "Registry.example.com/team/app",
             "registry.example.com/team/app:5000", "registry.example.com/te__am/app",
             "registry.example.com/team/\u0661pp",   # an Arabic-Indic digit
             LONG_REPO + "a", "x[/]"],
    "tag": ["v1\n", ".hidden", LONG_TAG + "T", "v\u0661", "v1[/]"],
    "role": ["targets/alice\n", "targets/a/b", "targets/", LONG_ROLE + "r"],
    "digest": [DIGEST + "\n", DIGEST.upper(), "sha256:" + "\u0661" * 64],
    "pattern": ["v*\n", "[conceal]*[/conceal]", "*" * 256],
    "pin": ["registry.example.com/team/app\n"],
}
# (what, value, accepted)
NAME_ROWS = [(w, v, True) for w, vs in ACCEPTED.items() for v in vs] + \
    [(w, v, False) for w, vs in REFUSED.items() for v in vs]
CHECK = {"repo": names.is_repo, "tag": names.is_tag, "role": names.is_delegated_role, "digest": names.is_digest,
         "pattern": names.is_pattern, "pin": names.is_pin_pattern}


@pytest.mark.parametrize("what,value,accepted", NAME_ROWS, ids=[f"{w}-{v!r}"[:60] for w, v, _ in NAME_ROWS])
def test_grammar(what: str, value: str, accepted: bool) -> None:
    assert CHECK[what](value) is accepted


@pytest.mark.parametrize("what,value,accepted", [r for r in NAME_ROWS if r[0] != "pin"],
                         ids=[f"{w}-{v!r}"[:60] for w, v, _ in NAME_ROWS if w != "pin"])
def test_the_fold_applies_the_grammar(what: str, value: str, accepted: bool, crypto) -> None:
    s = Sim(repo=value if what == "repo" else REPO, crypto=crypto)
    expected = "OK" if accepted else {"repo": "INVALID_FIELD", "tag": "INVALID_FIELD", "digest": "INVALID_FIELD",
                                      "role": "INVALID_ROLE", "pattern": "INVALID_ROLE"}[what]
    if what == "repo":
        assert s.create([R], [T]) == expected
        return
    assert s.create([R], [T]) == "OK"
    if what == "role":
        assert s.set_role(value, [A], [T], paths=["*"]) == expected
    elif what == "pattern":
        assert s.set_role("targets/alice", [A], [T], paths=[value]) == expected
    elif what == "tag":
        assert s.sign_tag(value, [T]) == expected
    else:
        assert s.sign_tag("v1", [T], digest=value) == expected


@pytest.mark.parametrize("lookalike", [REPO + "\n", REPO + "/", REPO.upper(), REPO + "\t", " " + REPO])
def test_an_exact_pin_cannot_be_dodged_by_a_lookalike(lookalike: str, crypto) -> None:
    pins = [Pin(REPO, frozenset({R.keyid}))]
    attacker = key("names-attacker")
    s = Sim(repo=lookalike, state=TrustState(pins), crypto=crypto)
    assert s.create([attacker], [attacker]) == "INVALID_FIELD"
    s = Sim(repo=REPO, state=TrustState(pins), crypto=crypto)
    assert s.create([attacker], [attacker]) == "PIN_MISMATCH"


# -- the property: whatever the fold accepts, every later stage accepts -------------------

repos = st.from_regex(names.REPO_RE, fullmatch=True).filter(lambda s: len(s) <= names.MAX_REPO_LEN)
tags = st.from_regex(names.TAG_RE, fullmatch=True)
roles = st.from_regex(names.ROLE_RE, fullmatch=True)
patterns = st.from_regex(names.PATTERN_RE, fullmatch=True)


def accepted_history(repo: str, tag: str, role: str, pattern: str, keys=(R, T, A), *,
                     targets_tag: bool = True) -> list[Envelope]:
    """What the property tests feed every stage: ``repo`` created, ``role`` delegated
    (``pattern`` and ``tag``), ``tag`` signed by it (and ``t-TAG`` by targets), the
    signer's key reported compromised (far in the future)."""
    r, t, a = keys
    envs = [
        sign_event(RepoCreated(repo, 1, 0, [r.public_key], 1, [t.public_key], 1, FAR), [r]),
        sign_event(RoleKeysSet(repo, 2, 0, role, [a.public_key], 1, FAR, [pattern, tag]), [t]),
        sign_event(ImageSigned(repo, 3, 0, role, tag, DIGEST, 1, FAR), [a]),
    ]
    if targets_tag:
        envs.append(sign_event(ImageSigned(repo, 4, 0, "targets", "t-" + tag[:120], DIGEST, 1, FAR), [t]))
    envs.append(sign_event(KeyCompromised(repo, len(envs) + 1, 0, a.keyid, 2**62), [t]))
    return envs


def _cli(*argv: str) -> int:
    return main(list(argv))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(repo=LONG_REPO, tag=LONG_TAG, role=LONG_ROLE, pattern="*" * 255)
@example(repo="a.b-c_d:65535/e", tag="_", role="targets/A.-_", pattern="[!]")
@given(repo=repos, tag=tags, role=roles, pattern=patterns)
def test_every_stage_accepts_what_the_fold_accepts(repo: str, tag: str, role: str, pattern: str) -> None:
    envs = accepted_history(repo, tag, role, pattern)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "log"
        with TrustLog(d, snapshot_every=2, checkpoint_every=2) as tl:
            res = tl.ingest_batch([(e.to_bytes(), None) for e in envs])
            assert res.accepted == len(envs), res.last_reject
        with TrustLog(d) as tl:                      # reopened: index, checkpoints, snapshots
            assert tl.state.repos[repo].version == 5
            for engine in ("c", "py"):
                try:
                    v = BatchVerifier(tl.state, ref_time=NOW, engine=engine).verify_all([Request(repo, tag)])
                except ImportError:
                    continue
                assert v[0].code == "VALID", v
        base = ("--log", str(d), "--keys", str(Path(tmp) / "keys"))
        assert _cli("inspect", *base, repo) == 0
        assert _cli("inspect", *base, "--json", repo) == 0
        assert _cli("state", *base, "--at", "3", repo) == 0
        assert _cli("snapshot", "create", *base) == 0
        assert _cli("audit", *base, "--key", A.keyid, "--html", str(Path(tmp) / "a.html")) == 0
        reqs = Path(tmp) / "reqs.jsonl"
        reqs.write_text(json.dumps({"repo": repo, "tag": tag}) + "\n")
        assert _cli("verify", *base, str(reqs), "--fail-on-reject", "--out", str(Path(tmp) / "v.jsonl")) == 0
        assert _cli("log", "verify", *base) == 0
        with TrustLog(d) as tl:                      # and reopened from the new snapshot
            assert tl.state.repos[repo].tags[tag].role == role
