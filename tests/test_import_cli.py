"""`trustlog import tuf|notary` as an operator runs it: JSON reports, exit codes,
one-line errors, and verify / inspect / log verify over what was imported."""
from __future__ import annotations

import json
from pathlib import Path


from notary_server import NotaryCLI
from trustlog.cli.main import main

GUN = "registry.example.com/cli/app"


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_import_tuf_then_verify_inspect_log_verify(tr, tmp_path: Path, capsys) -> None:
    repo = tr.TufRepo(tmp_path / "repo")
    repo.add_target("v1", b"one")
    repo.publish()
    log = ["--log", str(tmp_path / "log")]
    assert main(["import", "tuf", str(repo.dir), "--repo", GUN, *log, "--init", "--json"]) == 0
    out = _last_json(capsys)
    assert (out["appended"], out["rejected"], out["targets"]) == (2, 0, 1)
    assert main(["import", "tuf", str(repo.dir), "--repo", GUN, *log, "--init", "--json"]) == 0
    assert _last_json(capsys)["appended"] == 0
    req = tmp_path / "req.jsonl"
    req.write_text(json.dumps({"repo": GUN, "tag": "v1", "digest": tr.sha256(b"one")}) + "\n")
    verdicts = tmp_path / "v.jsonl"
    assert main(["verify", str(req), "-o", str(verdicts), *log, "--fail-on-reject"]) == 0
    assert json.loads(verdicts.read_text())["code"] == "VALID"
    assert main(["inspect", GUN, *log, "--json"]) == 0
    capsys.readouterr()
    assert main(["log", "verify", *log]) == 0


def test_import_tuf_refusal_exits_1_and_bad_input_2(tr, tmp_path: Path, capsys) -> None:
    repo = tr.TufRepo(tmp_path / "repo")
    repo.add_target("v1", b"one")
    repo.sign_with["targets"] = [tr.new_signer()]          # not a targets key
    repo.publish()
    log = ["--log", str(tmp_path / "log")]
    assert main(["import", "tuf", str(repo.dir), "--repo", GUN, *log, "--init", "--json"]) == 1
    assert _last_json(capsys)["rejected_by_reason"] == {"UNKNOWN_KEY": 1}
    assert main(["import", "tuf", str(tmp_path / "nope"), "--repo", GUN, *log, "--init"]) == 2
    err = capsys.readouterr().err
    assert "no such directory" in err and "Traceback" not in err
    assert main(["import", "notary", "--server", "ftp://x", *log, "--init"]) == 2
    assert main(["import", "notary", "--server", "http://127.0.0.1:9", *log, "--init"]) == 2
    assert "cannot reach" in capsys.readouterr().err


def test_import_notary_follow_for_a_while(notary_url, tmp_path: Path, capsys) -> None:
    import uuid

    n = NotaryCLI(notary_url, tmp_path / "trust")
    gun = f"cli.test/{uuid.uuid4().hex[:10]}/app"
    n("init", gun, "-p")
    n.add(gun, "v1", b"one", "-p")
    log = ["--log", str(tmp_path / "log")]
    assert main(["import", "notary", "--server", notary_url, "--gun", gun, "--follow", "--duration", "1",
                 *log, "--init", "--json"]) == 0
    out = _last_json(capsys)
    assert out["appended"] == 2 and out["to_change"] > 0
    assert main(["import", "notary", "--server", notary_url, "--gun", gun, *log, "--init", "--json"]) == 0
    again = _last_json(capsys)
    assert again["from_change"] <= out["to_change"] and again["appended"] == 0


def test_import_tuf_from_a_url(tr, tmp_path: Path, capsys) -> None:
    """The URL form: the repository's metadata served over HTTP."""
    import functools
    import http.server
    import threading

    repo = tr.TufRepo(tmp_path / "repo", keytype="ecdsa")
    repo.add_target("v1", b"one")
    repo.publish()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(repo.dir))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        log = ["--log", str(tmp_path / "log")]
        assert main(["import", "tuf", url, "--repo", GUN, *log, "--init", "--json"]) == 0
        assert _last_json(capsys)["appended"] == 2
        req = tmp_path / "req.jsonl"
        req.write_text(json.dumps({"repo": GUN, "tag": "v1", "digest": tr.sha256(b"one")}) + "\n")
        assert main(["verify", str(req), "-o", str(tmp_path / "v.jsonl"), *log, "--fail-on-reject"]) == 0
    finally:
        srv.shutdown()
        srv.server_close()
