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


# -- the pin policy belongs to the log --------------------------------------------------

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from sim import FAR  # noqa: E402
from trustlog.cli.main import main  # noqa: E402
from trustlog.core.errors import LogError  # noqa: E402
from trustlog.core.events import RepoCreated, envelope_to_json, sign_event  # noqa: E402
from trustlog.ingest.logcheck import verify_log  # noqa: E402
from trustlog.ingest.pinpolicy import PinPolicyError  # noqa: E402
from trustlog.ingest.pipeline import TrustLog  # noqa: E402

NS = "registry.example.com/team/*"
ATTACKER = key("pin-attacker")


def created(repo: str, root) -> bytes:
    return sign_event(RepoCreated(repo, 1, 0, [root.public_key], 1, [T.public_key], 1, FAR), [root]).to_bytes()


def test_a_policy_set_once_holds_for_every_later_open(tmp_path: Path) -> None:
    with TrustLog(tmp_path) as tl:
        assert tl.ingest_batch([(created("registry.example.com/team/early", R_OTHER), None)]).accepted == 1
        with pytest.raises(PinPolicyError, match="contradict"):
            tl.set_pins([Pin(NS, frozenset({R_TEAM.keyid}))])   # 'early' was made with other keys
        tl.set_pins([Pin("registry.example.com/team/app*", frozenset({R_TEAM.keyid}))])
    # a later open that says nothing about pins still enforces them
    with TrustLog(tmp_path) as tl:
        r = tl.ingest_batch([(created(REPO, ATTACKER), None)])
        assert (r.accepted, r.last_reject[0]) == (0, "PIN_MISMATCH")
        assert tl.ingest_batch([(created(REPO, R_TEAM), None)]).accepted == 1
        assert tl.state.repos[REPO].origin == "pinned"
        assert tl.state_at(offset=2).repos[REPO].origin == "pinned"
    # a caller expecting other pins is told where the policy lives
    with pytest.raises(PinPolicyError, match="trustlog pins set"):
        TrustLog(tmp_path, pins=[])
    assert verify_log(tmp_path).ok


def test_a_tampered_policy_stops_the_log(tmp_path: Path) -> None:
    with TrustLog(tmp_path) as tl:
        tl.set_pins([Pin(NS, frozenset({R_TEAM.keyid}))])
    p = tmp_path / "pins.jsonl"
    p.write_text(p.read_text().replace(R_TEAM.keyid, ATTACKER.keyid))
    with pytest.raises(LogError, match="not signed by this log's key"):
        TrustLog(tmp_path)
    assert not verify_log(tmp_path).ok


def test_pins_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = str(tmp_path / "log")
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps({NS: [R_TEAM.keyid]}))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(envelope_to_json(sign_event(RepoCreated(REPO, 1, 0, [k.public_key], 1,
                                                                                  [T.public_key], 1, FAR), [k]))
                                  for k in (ATTACKER,)) + b"\n")
    assert main(["log", "init", "--log", log]) == 0
    capsys.readouterr()
    # --pins on a log without a policy: a clear message, nothing written
    assert main(["ingest", "--log", log, "--pins", str(pins), str(events)]) == 2
    assert "trustlog pins set" in capsys.readouterr().err
    assert main(["pins", "set", "--log", log, str(pins), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    # the finding: an ingest *without* --pins no longer admits the attacker's repository
    assert main(["ingest", "--log", log, "--json", str(events)]) == 1     # rejected events: exit 1
    assert json.loads(capsys.readouterr().out)["rejected_by_reason"] == {"PIN_MISMATCH": 1}
    # --pins naming the log's own policy is fine; another one is refused with the way out
    assert main(["inspect", "--log", log, "--pins", str(pins), REPO]) == 2       # no such repo: exit 2, but opened
    assert "no repository" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text("{}")
    for argv in (["verify", "--log", log, "--pins", str(other)], ["state", "--log", log, "--pins", str(other),
                                                                  "--at", "0", REPO]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "trustlog pins set" in err and len(err.strip().splitlines()) == 1
    assert main(["pins", "show", "--log", log, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pins"] == {NS: [R_TEAM.keyid]}
    assert main(["log", "verify", "--log", log]) == 0


def test_log_verify_ties_each_policy_entry_to_the_log(tmp_path: Path) -> None:
    """An entry signed by the log key but naming a log position the log does not have
    (the log was cut back or rewritten under it) is a finding."""
    with TrustLog(tmp_path) as tl:
        tl.ingest_batch([(created(REPO, R_TEAM), None)])
        tl.set_pins([Pin(NS, frozenset({R_TEAM.keyid}))])
        tl.pin_policy.append(tl.pins, key=tl.tree.key, offset=1, root=b"\x00" * 32, log_time=tl.clock.next())
        tl.pin_policy.append(tl.pins, key=tl.tree.key, offset=5, root=b"\x00" * 32, log_time=tl.clock.next())
    report = verify_log(tmp_path)
    pins_findings = [f.what for f in report.findings if f.check == "pins"]
    assert len(pins_findings) == 2
    assert "entry 2" in pins_findings[0] and "hash to" in pins_findings[0]
    assert "entry 3" in pins_findings[1] and "records were removed" in pins_findings[1]


def test_a_torn_policy_change_is_ignored_and_cut_off(tmp_path: Path) -> None:
    with TrustLog(tmp_path) as tl:
        tl.set_pins([Pin(NS, frozenset({R_TEAM.keyid}))])
    p = tmp_path / "pins.jsonl"
    good = p.read_bytes()
    p.write_bytes(good + good[:40])                 # a crash in the middle of the next change
    with TrustLog(tmp_path) as tl:
        assert tl.pin_policy.version == 1
        tl.set_pins([])
    with TrustLog(tmp_path) as tl:
        assert (tl.pin_policy.version, tl.pins) == (2, ())
    assert p.read_bytes().startswith(good) and p.read_bytes().count(b"\n") == 2


@pytest.mark.parametrize("argv", [
    ["ingest", "--kafka", "127.0.0.1:1", "--topic", "t", "--group", "g"],
    ["verify-kafka", "--kafka", "127.0.0.1:1", "--kafka-requests", "r", "--kafka-results", "v"],
])
def test_kafka_commands_no_longer_ignore_pins(argv: list[str], tmp_path: Path, capsys) -> None:
    """--pins was silently ignored by the Kafka commands; now it is refused with the way
    to set each partition log's policy (before any connection is made)."""
    assert main([*argv, "--log", str(tmp_path), "--pins", str(tmp_path / "pins.json")]) == 2
    assert "trustlog pins set" in capsys.readouterr().err


def test_pins_show_reads_and_makes_no_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pins show` is a read: where there is no log it says so (exit 2) and creates nothing."""
    missing = tmp_path / "nolog"
    assert main(["pins", "show", "--log", str(missing)]) == 2
    assert "no log at" in capsys.readouterr().err
    assert not missing.exists()
    log = str(tmp_path / "log")
    assert main(["log", "init", "--log", log]) == 0
    before = sorted(p.name for p in Path(log).rglob("*"))
    assert main(["pins", "show", "--log", log, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["version"] == 0
    assert sorted(p.name for p in Path(log).rglob("*")) == before
