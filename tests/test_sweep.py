"""`trustlog sweep` against a real registry (Debian's docker-registry, distribution 2.8):
images pushed through its HTTP API, some signed, some not, one re-pointed behind the
signer's back. The sweep must find exactly the unsigned and the mismatched tags."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest

from registry import registry_url  # noqa: F401  (fixture)
from trustlog.cli.main import main
from trustlog.core.events import ImageSigned, RepoCreated, sign_event
from trustlog.core.keys import SigningKey
from trustlog.ingest.oci import RegistryClient
from trustlog.ingest.pipeline import TrustLog
from trustlog.services.sweep import Sweeper, list_tags
from trustlog.verifier.batch import BatchVerifier

FAR = 4_000_000_000
ROOT = SigningKey.from_seed(b"sweep-root")
TARGETS = SigningKey.from_seed(b"sweep-targets")


def _signed_repo(gun: str, tags: dict[str, str]) -> list[bytes]:
    evs = [sign_event(RepoCreated(gun, 1, 0, [ROOT.public_key], 1, [TARGETS.public_key], 1, FAR), [ROOT])]
    for v, (tag, digest) in enumerate(tags.items(), start=2):
        evs.append(sign_event(ImageSigned(gun, v, 0, "targets", tag, digest, 100, FAR), [TARGETS]))
    return [e.to_bytes() for e in evs]


@pytest.fixture(scope="module")
def world(registry_url: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """A registry whose repositories are named after this module (the registry is shared
    by the session), and a log that signs some of their tags."""
    client = RegistryClient(registry_url, page_size=2)  # small pages: pagination is exercised
    host = urllib.parse.urlsplit(registry_url).netloc
    ns = "sweeptest"
    pushed: dict[tuple[str, str], str] = {}
    for repo, tags in {f"{ns}/app": ["v1", "v2", "dev"], f"{ns}/lib": ["a", "b", "c", "d", "e"],
                       f"{ns}/unsigned": ["latest"]}.items():
        for tag in tags:
            pushed[(repo, tag)] = client.push_image(repo, tag, f"{repo}:{tag} layer".encode())
    other = "sha256:" + hashlib.sha256(b"what the publisher signed").hexdigest()
    log_dir = tmp_path_factory.mktemp("sweeplog") / "log"
    with TrustLog(log_dir) as log:
        raws = _signed_repo(f"{host}/{ns}/app", {"v1": pushed[(f"{ns}/app", "v1")], "v2": other})
        raws += _signed_repo(f"{host}/{ns}/lib", {t: pushed[(f"{ns}/lib", t)] for t in "abcde"})
        res = log.ingest([(r, None) for r in raws])
        assert res.accepted == len(raws) and res.rejected == 0
    return {"url": registry_url, "host": host, "ns": ns, "log": log_dir, "pushed": pushed}


def test_sweep_library_finds_unsigned_and_mismatched(world) -> None:
    client = RegistryClient(world["url"], page_size=2)
    items = [it for it in list_tags(client, [f"{world['ns']}/*"])]
    assert len(items) == 9  # 3 + 5 + 1 across pages of two
    with TrustLog(world["log"]) as log:
        v = BatchVerifier(log.state)
        found = list(Sweeper(client, v.verify_all, gun_prefix=world["host"], concurrency=4, chunk=3)
                     .findings(items))
    by = {(f.registry_repo, f.tag): f for f in found}
    ns = world["ns"]
    assert by[(f"{ns}/app", "v1")].code == "VALID"
    assert by[(f"{ns}/app", "v2")].code == "DIGEST_MISMATCH"
    assert by[(f"{ns}/app", "v2")].served_digest == world["pushed"][(f"{ns}/app", "v2")]
    assert by[(f"{ns}/app", "v2")].signed_digest != by[(f"{ns}/app", "v2")].served_digest
    assert by[(f"{ns}/app", "dev")].code == "UNKNOWN_TAG"
    assert by[(f"{ns}/unsigned", "latest")].code == "UNKNOWN_REPOSITORY"
    assert Counter(f.kind for f in found) == {"ok": 6, "unsigned": 2, "mismatch": 1}


def test_sweep_cli_json_and_exit_code(world, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "findings.jsonl"
    rc = main(["sweep", "--registry", world["url"], "--log", str(world["log"]), "--repo", f"{world['ns']}/*",
               "--json", "-o", str(out)])
    assert rc == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["tags"] == 9 and summary["failing"] == 3 and summary["repositories"] == 3
    assert summary["by_kind"] == {"ok": 6, "unsigned": 2, "mismatch": 1}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 9 and all(x["repo"].startswith(world["host"] + "/") for x in lines)
    # only the signed repository's tags pass: exit 0
    rc = main(["sweep", "--registry", world["url"], "--log", str(world["log"]), "--repo", f"{world['ns']}/lib",
               "--json"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip())["by_kind"] == {"ok": 5}


def test_sweep_refuses_a_url_that_is_not_a_registry(world, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--registry", "ftp://x", "--log", str(world["log"])]) == 2
    assert "registry URL" in capsys.readouterr().err
    assert main(["sweep", "--registry", world["url"], "--log", str(world["log"]), "--concurrency", "0"]) == 2


class _Hostile(http.server.BaseHTTPRequestHandler):
    """A registry that lies: bad names, a missing digest, a forged digest form, a
    pagination link to another host. Everything it says is untrusted input."""

    def log_message(self, *a: object) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/v2/":
            return self._send(200, b"{}")
        if self.path.startswith("/v2/_catalog"):
            return self._send(200, json.dumps({"repositories": ["good/app", "Bad[/]Name", "x/next"]}).encode())
        if self.path.startswith("/v2/good/app/tags/list"):
            return self._send(200, json.dumps({"tags": ["nodigest", "baddigest", "[bold]t"]}).encode())
        if self.path.startswith("/v2/x/next/tags/list"):
            return self._send(200, json.dumps({"tags": ["t"]}).encode(),
                              {"Link": '<http://evil.example/v2/x/next/tags/list?last=t>; rel="next"'})
        return self._send(404)

    def do_HEAD(self) -> None:  # noqa: N802
        if self.path.endswith("/baddigest"):
            return self._send(200, headers={"Docker-Content-Digest": "sha256:XYZ\r"[:10]})
        return self._send(200)


def test_sweep_fails_closed_on_a_hostile_registry(tmp_path: Path) -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        client = RegistryClient(url)
        with pytest.raises(Exception, match="another host"):
            list(list_tags(client, ["x/*"]))
        items = list(list_tags(client, ["good/*", "Bad*"]))
        with TrustLog(tmp_path / "log") as log:
            found = list(Sweeper(client, BatchVerifier(log.state).verify_all, gun_prefix="r.example").findings(items))
        assert {f.code for f in found} == {"UNREADABLE"}
        assert len(found) == 4 and not any(f.ok for f in found)
    finally:
        srv.shutdown()
