"""`trustlog serve` as a real process over a log that a separate `trustlog ingest` process
writes: verdicts follow the log (a compromise flips VALID within a poll, no TTL), every
class of bad request gets its 4xx with a JSON error, and the server stays up."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from logtools import CI, REPO_A, REPO_B, TARGETS_A, history
from trustlog.core.events import KeyCompromised, envelope_to_json, sign_event
from trustlog.ingest.pipeline import TrustLog

PY = sys.executable
CLI = [PY, "-m", "trustlog.cli.main"]


def _make_log(d: Path, n_tags: int = 6) -> None:
    with TrustLog(d) as tl:
        r = tl.ingest_batch([(e.to_bytes(), None) for e in history(n_tags)])
        assert r.rejected == 0


class Server:
    def __init__(self, log: Path, *extra: str) -> None:
        self.proc = subprocess.Popen([*CLI, "serve", "--log", str(log), "--listen", "127.0.0.1:0", *extra],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"http://([\d.]+):(\d+)", line)
        assert m, f"server did not start: {line}{self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.base = f"http://{m.group(1)}:{m.group(2)}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def get(self, path: str) -> tuple[int, dict]:
        return self.request("GET", path)

    def post(self, path: str, obj=None, raw: bytes | None = None) -> tuple[int, dict]:
        return self.request("POST", path, raw if raw is not None else json.dumps(obj).encode(),
                            {"Content-Type": "application/json"})

    def stop(self) -> None:
        self.proc.terminate()
        try:
            assert self.proc.wait(timeout=15) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def served(tmp_path):
    """A server of its own (for tests that change the log)."""
    _make_log(tmp_path / "log")
    s = Server(tmp_path / "log", "--max-items", "5", "--max-body-bytes", "4096")
    yield s, tmp_path / "log"
    s.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server for the tests that only read (the table of bad requests)."""
    d = tmp_path_factory.mktemp("serve")
    _make_log(d / "log")
    s = Server(d / "log", "--max-items", "5", "--max-body-bytes", "4096")
    yield s, d / "log"
    s.stop()


def test_a_compromise_ingested_by_another_process_flips_the_served_verdict(served, tmp_path):
    s, log = served
    code, v = s.get(f"/v1/repositories/{REPO_A}/tags/build-1")
    assert code == 200 and v["code"] == "VALID" and v["role"] == "targets/ci"
    v0 = v["state_version"]
    # an ingest process (the log's single writer) appends the compromise report
    with TrustLog(log) as tl:
        version = tl.state.repos[REPO_A].version + 1
    env = sign_event(KeyCompromised(REPO_A, version, 0, CI.keyid, 0), [TARGETS_A])
    f = tmp_path / "compromise.jsonl"
    f.write_bytes(envelope_to_json(env) + b"\n")
    ing = subprocess.run([*CLI, "ingest", str(f), "--log", str(log), "--json"], capture_output=True, text=True,
                         timeout=120)
    assert ing.returncode == 0, ing.stderr
    assert json.loads(ing.stdout)["accepted"] == 1
    deadline = time.monotonic() + 30  # bounded wait; the assertion is on the verdict, not the speed
    while True:
        code, v = s.get(f"/v1/repositories/{REPO_A}/tags/build-1")
        if v["code"] != "VALID" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert code == 200 and v["code"] == "KEY_COMPROMISED", v
    assert v["state_version"] == v0 + 1
    # the same answer through the batch and the provider endpoints, and the tags the key did not sign stay
    code, b = s.post("/v1/verify", {"requests": [{"repo": REPO_A, "tag": "build-1"}, {"repo": REPO_A, "tag": "v0"}]})
    assert code == 200 and [x["code"] for x in b["verdicts"]] == ["KEY_COMPROMISED", "VALID"]
    assert b["state_version"] == v0 + 1
    code, pr = s.post("/v1/externaldata", {"apiVersion": "externaldata.gatekeeper.sh/v1beta1",
                                           "kind": "ProviderRequest",
                                           "request": {"keys": [f"{REPO_A}:build-1", f"{REPO_A}:v0"]}})
    assert code == 200 and pr["kind"] == "ProviderResponse"
    items = pr["response"]["items"]
    assert items[0]["error"].startswith("KEY_COMPROMISED") and items[0]["value"]["code"] == "KEY_COMPROMISED"
    assert "error" not in items[1] and items[1]["value"]["code"] == "VALID"


def test_health_readiness_and_metrics(shared):
    s, _ = shared
    assert s.get("/healthz") == (200, {"status": "ok"})
    code, r = s.get("/readyz")
    assert code == 200 and r["ready"] is True and r["lag_bytes"] == 0
    s.get(f"/v1/repositories/{REPO_B}/tags/v0")
    with urllib.request.urlopen(s.base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for name in ("trustlog_serve_requests_total", "trustlog_serve_request_seconds_bucket",
                 'trustlog_serve_verdicts_total{code="VALID"}', "trustlog_serve_state_version",
                 "trustlog_serve_lag_bytes", "trustlog_serve_ready 1.0"):
        assert name in text, name


def test_verdicts_have_the_jsonl_shape_and_digests_are_checked(shared):
    s, _ = shared
    code, v = s.get("/v1/repositories/" + REPO_B.replace("/", "%2F") + "/tags/v0")  # slashes may be encoded
    assert code == 200 and v["code"] == "VALID" and v["repo"] == REPO_B
    code, v = s.get(f"/v1/repositories/{REPO_B}/tags/v0?digest=sha256:{'cd' * 32}")
    assert code == 200 and v["code"] == "DIGEST_MISMATCH"
    code, b = s.post("/v1/verify", {"requests": [{"repo": REPO_B, "tag": "v0"}, {"repo": "nope/x", "tag": "t"},
                                                 {"repo": REPO_B, "tag": "missing"}]})
    assert [x["code"] for x in b["verdicts"]] == ["VALID", "UNKNOWN_REPOSITORY", "UNKNOWN_TAG"]
    assert set(b["verdicts"][0]) >= {"repo", "tag", "code", "reason", "state_version", "digest", "role", "keys",
                                     "log_offset", "root_trust"}


PROVIDER = {"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest"}

# (method, path, body, expected status, words in the error message): one row per class
BAD_REQUESTS = [
    ("POST", "/v1/verify", b"{not json", 400, "malformed JSON"),
    ("POST", "/v1/verify", b"", 400, "empty body"),
    ("POST", "/v1/verify", b"[1, 2]", 422, "verify request"),
    ("POST", "/v1/verify", json.dumps({"requests": [{"repo": "a", "tag": "b", "extra": 1}]}).encode(), 422,
     "unknown field"),
    ("POST", "/v1/verify", json.dumps({"requests": [], "more": 1}).encode(), 422, "unknown field"),
    ("POST", "/v1/verify", json.dumps({"requests": [{"repo": "a"}]}).encode(), 422, "missing required field"),
    ("POST", "/v1/verify", json.dumps({"requests": [{"repo": 1, "tag": "b"}]}).encode(), 422, "Expected `str`"),
    ("POST", "/v1/verify", json.dumps({"requests": [{"repo": "", "tag": "b"}]}).encode(), 422, "length"),
    ("POST", "/v1/verify", json.dumps({"requests": [{"repo": "a", "tag": "b", "digest": "md5:x"}]}).encode(), 422,
     "regex"),
    ("POST", "/v1/verify", json.dumps({"requests": [{"repo": "a", "tag": "b", "digest": "sha256:" + "ab" * 32 + "\n"}]})
     .encode(), 422, "regex"),                          # "$" would have let the final newline through
    ("POST", "/v1/verify", json.dumps({"requests": []}).encode(), 400, "no items"),
    ("POST", "/v1/verify", json.dumps({"requests": [{"repo": "a", "tag": "b"}] * 6}).encode(), 413,
     "--max-items"),
    ("POST", "/v1/verify", b'{"requests": [' + b" " * 5000 + b"]}", 413, "--max-body-bytes"),
    ("GET", "/v1/repositories/a/b/tags/c?digest=nope", None, 422, "digest"),
    ("GET", "/v1/repositories/a/tags/c?foo=1", None, 400, "unknown query"),
    ("GET", "/v1/nothing", None, 404, "Not Found"),
    ("GET", "/v1/verify", None, 405, "Not Allowed"),
    ("POST", "/v1/externaldata", json.dumps({**PROVIDER, "kind": "Other", "request": {"keys": ["a:b"]}}).encode(),
     422, "ProviderRequest"),
    ("POST", "/v1/externaldata", json.dumps({**PROVIDER, "request": {"keys": ["a:b"], "x": 1}}).encode(), 422,
     "unknown field"),
    ("POST", "/v1/externaldata", json.dumps({**PROVIDER, "request": {"keys": ["a:b"] * 6}}).encode(), 413,
     "--max-items"),
    ("POST", "/v1/externaldata", b"\xff\xfe", 400, "malformed JSON"),
]


@pytest.mark.parametrize("method,path,body,status,words", BAD_REQUESTS,
                         ids=[f"{r[3]}-{i}" for i, r in enumerate(BAD_REQUESTS)])
def test_every_bad_request_class_gets_its_4xx_with_a_json_error(shared, method, path, body, status, words):
    s, _ = shared
    code, err = s.request(method, path, body, {"Content-Type": "application/json"} if body is not None else None)
    assert code == status, err
    assert err["error"]["status"] == status and words.lower() in err["error"]["message"].lower(), err
    assert s.get("/healthz")[0] == 200  # the server is still there


def test_provider_keys_that_name_no_tag_are_item_errors_not_passes(shared):
    s, _ = shared
    code, pr = s.post("/v1/externaldata", {**PROVIDER, "request": {"keys": [
        f"{REPO_B}:v0", f"{REPO_B}@sha256:{'ab' * 32}", "localhost:5000/x/y:v1", f"{REPO_B}:v0@sha256:{'cd' * 32}"]}})
    assert code == 200
    items = pr["response"]["items"]
    assert items[0]["value"]["code"] == "VALID" and "error" not in items[0]
    assert items[1]["error"].startswith("MALFORMED_REQUEST") and "value" not in items[1]
    assert items[2]["value"]["repo"] == "localhost:5000/x/y" and items[2]["error"].startswith("UNKNOWN_REPOSITORY")
    assert items[3]["error"].startswith("DIGEST_MISMATCH")


def test_bad_serve_arguments_are_one_line_errors(tmp_path):
    _make_log(tmp_path / "log")
    for args, words in ((["--listen", "nope"], "HOST:PORT"), (["--max-items", "0"], "positive"),
                        (["--follow-interval", "5"], "within a second")):
        r = subprocess.run([*CLI, "serve", "--log", str(tmp_path / "log"), *args], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run([*CLI, "serve", "--log", str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no log at" in r.stderr
