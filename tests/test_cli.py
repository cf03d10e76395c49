"""The command line, as an operator uses it: keys, authoring, ingest, verify, errors."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from trustlog.cli.main import main

REPO = "registry.example.com/team/app"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TRUSTLOG_PASSPHRASE", raising=False)
    base = ["--log", str(tmp_path / "log"), "--keys", str(tmp_path / "keys")]

    def run(*argv: str) -> int:  # global options before the subcommand (they work after it too)
        return main([*base, *argv])

    return run, tmp_path


def _json_out(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_full_flow(env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    run, tmp = env
    monkeypatch.setenv("TRUSTLOG_PASSPHRASE", "correct horse")
    for name, kt in [("root", "ed25519"), ("targets", "ecdsa-p256"), ("alice", "ed25519")]:
        assert run("key", "generate", name, "--type", kt) == 0
    key_file = tmp / "keys" / "root.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert b"ENCRYPTED" in key_file.read_bytes()
    assert run("repo", "create", REPO, "--root-key", "root", "--targets-key", "targets", "--init") == 0
    assert run("signer", "add", REPO, "alice", "--key", "alice", "--paths", "v*", "--sign-with", "targets") == 0
    assert run("sign", REPO, "v1", DIGEST, "--role", "targets/alice", "--sign-with", "alice") == 0
    capsys.readouterr()
    # outside its patterns: rejected with the reason, exit 1, kept in the rejects log
    assert run("sign", REPO, "latest", DIGEST, "--role", "targets/alice", "--sign-with", "alice", "--json") == 1
    out = _json_out(capsys)
    assert out["accepted"] is False and out["reason"] == "OUTSIDE_PATTERNS"

    reqs = tmp / "reqs.jsonl"
    reqs.write_text(json.dumps({"repo": REPO, "tag": "v1", "digest": DIGEST}) + "\n"
                    + json.dumps({"repo": REPO, "tag": "latest"}) + "\n")
    verdicts = tmp / "verdicts.jsonl"
    assert run("verify", str(reqs), "--out", str(verdicts), "--json") == 0
    summary = _json_out(capsys)
    assert summary["verdicts"] == {"VALID": 1, "UNKNOWN_TAG": 1}
    lines = [json.loads(x) for x in verdicts.read_text().splitlines()]
    assert [v["code"] for v in lines] == ["VALID", "UNKNOWN_TAG"]
    assert all(v["state_version"] == 3 for v in lines)
    assert lines[0]["root_trust"] == "tofu"  # no pin file: the first root was trusted on first use
    assert run("verify", str(reqs), "--out", str(verdicts), "--fail-on-reject") == 1

    # alice's key compromised since before she signed: v1 falls
    assert run("compromise", REPO, "alice", "--since", "0", "--sign-with", "targets") == 0
    assert run("verify", str(reqs), "--out", str(verdicts)) == 0
    assert json.loads(verdicts.read_text().splitlines()[0])["code"] == "KEY_COMPROMISED"

    capsys.readouterr()
    assert run("inspect", REPO, "--json") == 0
    info = _json_out(capsys)
    assert {r["role"] for r in info["roles"]} == {"root", "targets", "targets/alice"}
    # each scope counts its own versions (docs/SECURITY.md, Versions); the CLI signs at the scope's last + 1
    assert {k: v for k, v in info["versions"].items() if not k.startswith("key:")} == {
        "role:root": 1, "role:targets": 1, "role:targets/alice": 1, "v1": 1}
    assert info["version"] == 4  # the repository's own version moves on every change


def test_wrong_passphrase_is_a_clear_error(env, capsys, monkeypatch) -> None:
    run, _ = env
    monkeypatch.setenv("TRUSTLOG_PASSPHRASE", "right")
    assert run("key", "generate", "root") == 0
    assert run("key", "generate", "targets") == 0
    monkeypatch.setenv("TRUSTLOG_PASSPHRASE", "wrong")
    capsys.readouterr()
    assert run("repo", "create", REPO, "--root-key", "root", "--targets-key", "targets") == 2
    err = capsys.readouterr().err.strip()
    assert err == "trustlog: error: wrong passphrase for key 'root'"


@pytest.mark.parametrize("content,needle", [
    ("{not json\n", "not a request"),
    ('{"repo": 5, "tag": "x"}\n', "not a request"),
])
def test_bad_request_file(env, capsys, content: str, needle: str) -> None:
    run, tmp = env
    assert run("log", "init") == 0
    capsys.readouterr()
    f = tmp / "r.jsonl"
    f.write_text(content)
    out = tmp / "v.jsonl"
    assert run("verify", str(f), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not out.exists() or out.read_text() == ""


def test_missing_file(env, capsys) -> None:
    run, tmp = env
    assert run("ingest", str(tmp / "nope.jsonl")) == 2
    assert "no such file" in capsys.readouterr().err


def test_ingest_file_with_bad_lines_records_rejects(env, capsys) -> None:
    run, tmp = env
    f = tmp / "events.jsonl"
    f.write_text('{"payload": "AAAA", "signatures": []}\nnot json at all\n')
    assert run("ingest", str(f), "--json", "--init") == 1  # the job ran and rejected events
    out = _json_out(capsys)
    assert out["accepted"] == 0 and out["rejected"] == 2 and out["rejected_by_reason"] == {"MALFORMED": 2}


def test_unknown_key_type(env, capsys) -> None:
    run, _ = env
    with pytest.raises(SystemExit) as e:
        run("key", "generate", "x", "--type", "dsa")
    assert e.value.code == 2


def test_version_names_backend(capsys) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert "backend" in out and ("c" in out or "py" in out)


def test_demo_json(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--dir", str(tmp_path / "d"), "--scale", "0.02", "--json"]) == 0
    s = _json_out(capsys)
    for k in ("repositories", "tags", "events", "verdicts", "rejected_events"):
        assert k in s
    assert s["verdicts"]["KEY_COMPROMISED"] > 0 and s["verdicts"]["VALID"] > 0
    assert set(s["rejected_events"]) == {"BAD_SIGNATURE", "VERSION_ROLLBACK", "THRESHOLD_NOT_MET", "OUTSIDE_PATTERNS"}
    assert os.path.exists(os.path.join(s["directory"], "verdicts.jsonl"))
