"""An operator's first hour (issue 13): a wrong --log is refused, exit codes and JSON
errors, `trustlog rejects`, one command for a key shared by many repositories, help and
completion, the generated reference page, and deterministic demo data."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trustlog.cli.main import build_parser, main
from trustlog.cli.reference import _commands as _walk  # every (sub)command, as the CLI reference walks them

REPO = "registry.example.com/team/app"
DIGEST = "sha256:" + "ab" * 32
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("TRUSTLOG_PASSPHRASE", "pw")
    monkeypatch.setenv("COLUMNS", "200")  # wide tables: no cell folded in the captured output
    monkeypatch.chdir(tmp_path)
    base = ["--log", str(tmp_path / "log"), "--keys", str(tmp_path / "keys")]

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([*base, *argv])
        c = capsys.readouterr()
        return rc, c.out, c.err

    return run, tmp_path


def _one_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


# -- a directory without a log is refused ---------------------------------------------------

READERS = [
    ["verify"], ["inspect", REPO], ["rejects"], ["checkpoint", "latest"], ["checkpoint", "list"],
    ["log", "verify"], ["state", REPO, "--at", "1"], ["replay", "verify", "--at", "1"], ["proof", "inclusion", "0"],
    ["snapshot", "list"], ["audit", "--key", "ab" * 32], ["compromise-everywhere", "ab" * 32, "--since", "0"],
    ["sign", REPO, "v1", DIGEST, "--sign-with", "k"], ["signer", "remove", REPO, "x", "--sign-with", "k"],
    ["repo", "create", REPO, "--root-key", "k", "--targets-key", "k"],
]


@pytest.mark.parametrize("argv", READERS, ids=[" ".join(a[:2]) for a in READERS])
def test_missing_log_is_refused_and_not_created(cli, argv: list[str]) -> None:
    run, tmp = cli
    assert run("key", "generate", "k")[0] == 0
    for where in (["--log", str(tmp / "typo")], []):   # a typo, and the default ./trustlog-data
        rc, out, err = run(*argv, *where)
        assert rc == 2, (argv, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("trustlog: error: no log at"), lines
        assert not (tmp / "typo").exists() and not (tmp / "log").exists() and not (tmp / "trustlog-data").exists()


def test_only_told_commands_create_a_log(cli) -> None:
    run, tmp = cli
    assert run("key", "generate", "root")[0] == 0
    rc, _, err = run("repo", "create", REPO, "--root-key", "root", "--targets-key", "root")
    assert rc == 2 and "--init" in err and not (tmp / "log").exists()
    assert run("repo", "create", REPO, "--root-key", "root", "--targets-key", "root", "--init")[0] == 0
    assert (tmp / "log" / "log").is_dir()
    rc, _, err = run("log", "init")
    assert rc == 2 and "already holds a log" in err
    rc, out, _ = run("--json", "log", "init", "--log", str(tmp / "fresh"))
    assert rc == 0 and _one_json(out)["log_pub"].endswith("log.pub")


# -- exit codes and JSON errors ---------------------------------------------------------------

def test_json_errors_on_stdout_with_the_exit_code(cli) -> None:
    run, tmp = cli
    for argv in (["--json", "verify", "--log", str(tmp / "typo")], ["verify", "--log", str(tmp / "typo"), "--json"]):
        rc, out, err = run(*argv)
        assert rc == 2 and "no log at" in err
        e = _one_json(out)["error"]
        assert e["type"] == "NoLogError" and e["exit_code"] == 2 and "no log at" in e["message"]
    with pytest.raises(SystemExit) as exc:
        run("--json", "verify", "--no-such-option")
    assert exc.value.code == 2


def test_usage_error_is_json_under_json(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--json", "verify", "--no-such-option"])
    assert exc.value.code == 2
    e = json.loads(capsys.readouterr().out)["error"]
    assert e["type"] == "UsageError" and "--no-such-option" in e["message"]


def _signed_lines(tmp: Path, run) -> Path:
    """A JSONL of two good events (repo created, tag signed) written with --out."""
    f = tmp / "events.jsonl"
    assert run("key", "generate", "root")[0] == 0
    assert run("repo", "create", REPO, "--root-key", "root", "--targets-key", "root", "--out", str(f))[0] == 0
    assert run("sign", REPO, "v1", DIGEST, "--sign-with", "root", "--version", "2", "--out", str(f))[0] == 0
    return f


def test_ingest_exit_codes(cli) -> None:
    run, tmp = cli
    f = _signed_lines(tmp, run)
    rc, out, _ = run("ingest", str(f), "--init", "--json")
    assert rc == 0 and _one_json(out)["accepted"] == 2
    bad = tmp / "bad.jsonl"
    bad.write_text("not json\n")
    rc, out, _ = run("ingest", str(bad), "--json")
    assert rc == 1 and _one_json(out)["rejected_by_reason"] == {"MALFORMED": 1}


# -- trustlog rejects -----------------------------------------------------------------------

def test_rejects_reads_the_rejects_log_with_filters(cli) -> None:
    from trustlog.cli.operator_cmds import REJECT_FIELDS

    run, tmp = cli
    f = _signed_lines(tmp, run)
    assert run("ingest", str(f), "--init")[0] == 0
    bad = tmp / "bad.jsonl"
    bad.write_text('{"payload": "AAAA", "signatures": []}\nnot json at all\n')
    assert run("ingest", str(bad))[0] == 1
    # outside its patterns: a rejected event that names its repository
    assert run("key", "generate", "alice")[0] == 0
    assert run("signer", "add", REPO, "alice", "--key", "alice", "--paths", "v*", "--sign-with", "root")[0] == 0
    assert run("sign", REPO, "latest", DIGEST, "--role", "targets/alice", "--sign-with", "alice")[0] == 1

    rc, out, _ = run("rejects", "--json")
    assert rc == 0
    r = _one_json(out)
    assert r["total"] == 3 and r["by_reason"] == {"MALFORMED": 2, "OUTSIDE_PATTERNS": 1}
    assert all(set(x) == set(REJECT_FIELDS) for x in r["rejects"])
    malformed = [x for x in r["rejects"] if x["reason"] == "MALFORMED"]
    # the decoder's own message is kept, not only the reason code
    assert sorted(x["detail"].split(":")[0] for x in malformed) == ["envelope", "payload"], malformed
    assert all("Expected `object`, got `int`" in x["detail"] for x in malformed), malformed
    assert {x["repo"] for x in malformed} == {None}

    rc, out, _ = run("rejects", "--reason", "outside_patterns", "--json")
    only = _one_json(out)["rejects"]
    assert [x["reason"] for x in only] == ["OUTSIDE_PATTERNS"] and only[0]["repo"] == REPO
    assert _one_json(run("rejects", "--repo", "registry.example.com/team/*", "--json")[1])["matched"] == 1
    assert _one_json(run("rejects", "--repo", "other/*", "--json")[1])["matched"] == 0
    t = only[0]["log_time"]
    assert _one_json(run("rejects", "--since", f"ns:{t}", "--json")[1])["matched"] == 1
    assert _one_json(run("rejects", "--until", f"ns:{t}", "--json")[1])["matched"] == 2
    rc, _, err = run("rejects", "--reason", "NOPE")
    assert rc == 2 and "unknown reject reason NOPE" in err
    rc, out, _ = run("rejects")
    assert rc == 0 and "OUTSIDE_PATTERNS" in out and "MALFORMED" in out


# -- one command for a key shared by many repositories ---------------------------------------

def test_compromise_everywhere(cli) -> None:
    run, tmp = cli
    for k in ("root", "targets", "ci", "r3", "t3"):
        assert run("key", "generate", k)[0] == 0
    repos = [f"registry.example.com/team/app{i}" for i in range(3)]
    assert run("log", "init")[0] == 0
    for i, repo in enumerate(repos):
        root, targets = ("r3", "t3") if i == 2 else ("root", "targets")
        assert run("repo", "create", repo, "--root-key", root, "--targets-key", targets)[0] == 0
        assert run("signer", "add", repo, "ci", "--key", "ci", "--paths", "build-*", "--sign-with", targets)[0] == 0
        assert run("sign", repo, "build-1", DIGEST, "--role", "targets/ci", "--sign-with", "ci")[0] == 0
    rc, out, _ = run("compromise-everywhere", "ci", "--since", "0", "--dry-run", "--json")
    plan = _one_json(out)
    assert rc == 0 and plan["repositories"] == 3 and plan["signed"] == 0
    # the third repository's authority is not in the keystore: only public keys are left
    (tmp / "keys" / "r3.key").unlink()
    (tmp / "keys" / "t3.key").unlink()
    rc, out, _ = run("compromise-everywhere", "ci", "--since", "0", "--note", "CI key leaked", "--json")
    res = _one_json(out)
    assert rc == 1 and res["signed"] == 2 and res["not_signed"] == 1
    by_repo = {r["repo"]: r for r in res["reports"]}
    assert by_repo[repos[0]]["accepted"] and by_repo[repos[0]]["authority"] == "targets"
    assert "no authority in the keystore" in by_repo[repos[2]]["problem"]
    rc, out, _ = run("verify", "--json", "-o", str(tmp / "v.jsonl"))
    codes = {json.loads(x)["repo"]: json.loads(x)["code"] for x in (tmp / "v.jsonl").read_text().splitlines()}
    assert codes == {repos[0]: "KEY_COMPROMISED", repos[1]: "KEY_COMPROMISED", repos[2]: "VALID"}
    # a second run: already reported where it was signed; human output names both outcomes
    rc, out, _ = run("compromise-everywhere", "ci", "--since", "0")
    assert rc == 1 and "already reported compromised" in out and "0 of 3 repositories signed" in out


# -- help, global options, completion, reference ----------------------------------------------

def test_every_option_has_help_and_every_command_a_description() -> None:
    missing = []
    top = build_parser()
    for path, sp in [([], top), *_walk(top, [])]:
        if not sp.description:
            missing.append(f"{' '.join(path)}: no description")
        for a in sp._actions:
            if a.help is None and not isinstance(a, argparse._SubParsersAction):  # its choices carry the help
                missing.append(f"{' '.join(path)} {a.option_strings or a.dest}: no help")
    assert not missing, "\n".join(missing)


def test_global_options_before_and_after_the_subcommand() -> None:
    p = build_parser()
    for argv in (["--log", "/a", "--keys", "/k", "--json", "inspect", "r"], ["inspect", "r", "--log", "/a", "--keys", "/k", "--json"],
                 ["--log", "/a", "inspect", "--keys", "/k", "r", "--json"]):
        a = p.parse_args(argv)
        assert (a.log, a.keys, a.json, a.repo) == ("/a", "/k", True, "r"), argv
    a = p.parse_args(["--log", "/a", "key", "list"])
    assert a.log == "/a" and a.json is False


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script(shell: str, capsys) -> None:
    assert main(["completion", shell]) == 0
    out = capsys.readouterr().out
    for word in ("trustlog", "compromise-everywhere", "rejects", "--fail-on-reject"):
        assert word in out


def test_reference_page_is_current() -> None:
    from trustlog.cli.reference import render

    assert (ROOT / "docs" / "REFERENCE.md").read_text() == render(), \
        "docs/REFERENCE.md is stale: run scripts/gen-docs"


def test_reference_documents_every_code_and_field() -> None:
    import msgspec

    from trustlog.cli.reference import VERDICT_FIELDS, enum_docs
    from trustlog.core.evaluate import Verdict
    from trustlog.core.reasons import Code, Reject

    assert set(VERDICT_FIELDS) == {f.name for f in msgspec.structs.fields(Verdict)}
    for enum in (Code, Reject):
        undocumented = [v for v, doc in enum_docs(enum) if not doc]
        assert not undocumented, f"{enum.__name__}: add a comment to {undocumented} in core/reasons.py"


# -- deterministic demo data ------------------------------------------------------------------

DIGEST_SCRIPT = """
import hashlib, sys
from trustlog.ingest.synthetic import SyntheticRegistry
reg = SyntheticRegistry(24, 96, seed=sys.argv[1], ref_time=1_900_000_000)
h = hashlib.sha256()
for e in reg.phase1():
    h.update(e.to_bytes())
for e in reg.phase2(1_800_000_000_000_000_000):
    h.update(e.to_bytes())
print(h.hexdigest())
"""


def _registry_digest(seed: str) -> str:
    r = subprocess.run([sys.executable, "-c", DIGEST_SCRIPT, seed], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONHASHSEED": "random"})
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_demo_data_is_the_same_bytes_for_the_same_seed() -> None:
    """Two fresh interpreters, same seed: identical envelopes, including the ECDSA and
    RSA repositories (idx 3, 13: ECDSA; idx 7: RSA); another seed: other bytes."""
    from trustlog.ingest.synthetic import SyntheticRegistry

    reg = SyntheticRegistry(24, 96)
    kinds = {reg._targets_key(i).keytype for i in range(24)}
    assert kinds == {"ed25519", "ecdsa-p256", "ecdsa-p256-der", "rsa-pss-sha256"}
    a, b = _registry_digest("seed-a"), _registry_digest("seed-a")
    assert a == b
    assert _registry_digest("seed-b") != a


@pytest.mark.parametrize("keytype", ["ed25519", "ecdsa-p256", "ecdsa-p256-der", "rsa-pss-sha256"])
def test_seeded_keys_sign_deterministically_and_verify(keytype: str) -> None:
    from trustlog.core.keys import crypto_valid
    from trustlog.ingest.seeded_keys import seeded_key

    k1, k2 = seeded_key(b"s", keytype), seeded_key(b"s", keytype)
    assert k1.keyid == k2.keyid != seeded_key(b"t", keytype).keyid
    for msg in (b"", b"hello", hashlib.sha256(b"x").digest() * 40):
        sig = k1.sign(msg)
        assert sig == k2.sign(msg)
        k1.public_key.verify(msg, sig)          # the reference (pyca/cryptography) accepts it
        assert crypto_valid(k1.public_key.alg, k1.public_key.public, msg, sig)
        assert not crypto_valid(k1.public_key.alg, k1.public_key.public, msg + b"!", sig)


def test_kafka_ingest_needs_init_for_a_directory_without_partition_logs(cli) -> None:
    """Refused before any broker is contacted: a typo in --log must not start new logs."""
    run, tmp = cli
    rc, out, err = run("--json", "ingest", "--kafka", "127.0.0.1:1", "--topic", "t", "--group", "g",
                       "--log", str(tmp / "typo"))
    assert rc == 2 and "no partition logs" in err and "--init" in err
    assert _one_json(out)["error"]["type"] == "NoLogError" and not (tmp / "typo").exists()
