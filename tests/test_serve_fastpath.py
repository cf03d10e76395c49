"""The fast path of `trustlog serve` (services/fastpath.py): it answers single lookups and
POST /v1/verify with the bytes aiohttp's handlers give, hands every other request (and
the rest of its connection) to aiohttp unchanged, and follows the log like them."""
from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from logtools import CI, REPO_A, REPO_B, TARGETS_A
from test_serve import CLI, Server, _make_log
from trustlog.core.evaluate import Request
from trustlog.core.events import KeyCompromised, envelope_to_json, sign_event
from trustlog.ingest.pipeline import TrustLog
from trustlog.services.fastpath import FastPath, FastProtocol
from trustlog.services.metrics import Metrics
from trustlog.services.verdicts import VerdictService
from trustlog.services.wire import Limits, VerifyResponse


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.protocol = None
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def set_protocol(self, p) -> None:
        self.protocol = p

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Fallback:
    """Stands in for aiohttp's protocol: records what it was handed."""

    def __init__(self) -> None:
        self.transport = None
        self.data = b""

    def connection_made(self, t) -> None:
        self.transport = t

    def data_received(self, d: bytes) -> None:
        self.data += d


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    d = tmp_path_factory.mktemp("fast")
    _make_log(d / "log")
    svc = VerdictService(str(d / "log"))
    handed: list[Fallback] = []

    def factory() -> Fallback:
        handed.append(Fallback())
        return handed[-1]

    fp = FastPath(svc, Limits(max_body_bytes=4096, max_items=5), Metrics(svc), factory, b"test")
    yield fp, svc, handed
    svc.close()


def feed(fp: FastPath, data: bytes, step: int | None = None) -> tuple[list[bytes], FakeTransport]:
    t = FakeTransport()
    p = FastProtocol(fp)
    p.connection_made(t)
    chunks = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    for c in chunks:
        if t.protocol is not None:
            t.protocol.data_received(c)  # handed off: aiohttp's protocol gets the rest
        else:
            p.data_received(c)
    return split_responses(b"".join(t.written)), t


def split_responses(raw: bytes) -> list[bytes]:
    """The bodies of the HTTP responses in ``raw``."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        n = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(b":")[1])
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"application/json" in head
        out.append(rest[:n])
        raw = rest[n:]
    return out


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def post(body: bytes, extra: str = "") -> bytes:
    return f"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def expected_one(svc: VerdictService, repo: str, tag: str) -> bytes:
    return msgspec.json.encode(svc.verify([Request(repo, tag, None)])[0])


def test_single_lookups_and_batches_are_the_bytes_the_handlers_give(fast):
    fp, svc, handed = fast
    n0 = len(handed)
    paths = [(REPO_A, "build-1"), (REPO_B, "v0"), (REPO_B, "missing"), ("nope/x", "t")]
    reqs = b"".join(get(f"/v1/repositories/{r}/tags/{t}") for r, t in paths)
    items = [{"repo": REPO_A, "tag": "v0"}, {"repo": REPO_B, "tag": "v0", "digest": "sha256:" + "cd" * 32},
             {"repo": "nope/x", "tag": "t"}]
    body = json.dumps({"requests": items}).encode()
    want = [expected_one(svc, r, t) for r, t in paths]
    verdicts = svc.verify([Request(i["repo"], i["tag"], i.get("digest")) for i in items])
    want.append(msgspec.json.encode(VerifyResponse(svc.state_version, verdicts)))
    for step in (None, 1, 7):  # pipelined in one read, byte by byte, in odd pieces
        got, t = feed(fp, reqs + post(body), step)
        assert got == want and t.protocol is None
    assert [json.loads(b)["code"] for b in want[:4]] == ["VALID", "VALID", "UNKNOWN_TAG", "UNKNOWN_REPOSITORY"]
    assert len(handed) == n0  # nothing was handed to aiohttp


HANDED_OFF = [
    get("/v1/repositories/a%2Fb/tags/c"),                       # escapes: aiohttp decodes them
    get(f"/v1/repositories/{REPO_B}/tags/v0?digest=sha256:" + "cd" * 32),
    get(f"/v1/repositories/{REPO_B}/./tags/v0"),                # dot segments: aiohttp normalises them
    get(f"/v1/repositories/{REPO_B}/tags/v0", "Connection: close\r\n"),
    get(f"/v1/repositories/{REPO_B}/tags/v0", "Transfer-Encoding: chunked\r\n"),
    get(f"/v1/repositories/{REPO_B}/tags/v0", " folded: header\r\n"),
    get(f"/v1/repositories/{REPO_B}/tags/v0").replace(b"HTTP/1.1", b"HTTP/1.0"),
    get("/v1/repositories/" + "r" * 1025 + "/tags/v0"),
    get("/healthz"),
    post(b"{not json"),
    post(b""),
    post(json.dumps({"requests": []}).encode()),
    post(json.dumps({"requests": [{"repo": "a", "tag": "b"}] * 6}).encode()),      # over --max-items
    post(json.dumps({"requests": [{"repo": "a", "tag": "b", "x": 1}]}).encode()),  # unknown field
    post(b'{"requests": [' + b" " * 5000 + b"]}"),                                  # over --max-body-bytes
    post(b'{"requests": [{"repo": "a", "tag": "b"}]}', "Expect: 100-continue\r\n"),
    post(b'{"requests": [{"repo": "a", "tag": "b"}]}', "Content-Length: 3\r\n"),   # two lengths
]


@pytest.mark.parametrize("req", HANDED_OFF, ids=range(len(HANDED_OFF)))
def test_anything_else_goes_to_aiohttp_with_the_rest_of_the_connection(fast, req):
    fp, svc, handed = fast
    first = get(f"/v1/repositories/{REPO_A}/tags/build-1")
    after = get(f"/v1/repositories/{REPO_B}/tags/v0")
    got, t = feed(fp, first + req + after)
    assert got == [expected_one(svc, REPO_A, "build-1")]  # answered before the hand-off, in order
    assert t.protocol is handed[-1] and handed[-1].transport is t
    assert handed[-1].data == req + after  # aiohttp sees that request's bytes and all after it


def test_a_server_that_stopped_following_leaves_every_request_to_aiohttp(fast):
    fp, svc, handed = fast
    svc.status.failed = "test"
    try:
        got, t = feed(fp, get(f"/v1/repositories/{REPO_B}/tags/v0"))
        assert got == [] and t.protocol is handed[-1]  # aiohttp answers 503
    finally:
        svc.status.failed = None


def test_an_oversized_head_goes_to_aiohttp(fast):
    fp, _, handed = fast
    big = b"GET /v1/repositories/a/tags/b HTTP/1.1\r\nX-Pad: " + b"p" * 9000
    got, t = feed(fp, big)
    assert got == [] and t.protocol is handed[-1] and handed[-1].data == big


def _keepalive_get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, r.read()


def test_over_a_real_connection_the_fast_path_follows_the_log(tmp_path: Path):
    """Keep-alive requests (the fast path) answer what Connection: close requests
    (aiohttp) answer, and a compromise ingested by another process flips them."""
    _make_log(tmp_path / "log")
    s = Server(tmp_path / "log")
    try:
        host, port = s.base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        path = f"/v1/repositories/{REPO_A}/tags/build-1"
        status, body = _keepalive_get(conn, path)
        assert status == 200 and json.loads(body)["code"] == "VALID"
        code, v = s.get(path)  # urllib: Connection: close, so aiohttp's handler
        assert code == 200 and v == json.loads(body)
        # pipelined on a raw socket: a fast answer, an aiohttp one (404), a fast-path request after it
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(get(path) + get("/v1/nothing") + get(path))
            data = b""
            deadline = time.monotonic() + 10
            while data.count(b"HTTP/1.1 ") < 3 and time.monotonic() < deadline:
                data += sock.recv(65536)
        assert data.count(b"HTTP/1.1 200 OK") == 2 and data.count(b"HTTP/1.1 404") == 1
        v0 = json.loads(body)["state_version"]
        with TrustLog(tmp_path / "log") as tl:
            version = tl.state.repos[REPO_A].version + 1
        env = sign_event(KeyCompromised(REPO_A, version, 0, CI.keyid, 0), [TARGETS_A])
        f = tmp_path / "compromise.jsonl"
        f.write_bytes(envelope_to_json(env) + b"\n")
        ing = subprocess.run([*CLI, "ingest", str(f), "--log", str(tmp_path / "log"), "--json"],
                             capture_output=True, text=True, timeout=120)
        assert ing.returncode == 0, ing.stderr
        deadline = time.monotonic() + 30  # bounded wait; the assertion is on the verdict
        while True:
            status, body = _keepalive_get(conn, path)
            if json.loads(body)["code"] != "VALID" or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        v = json.loads(body)
        assert status == 200 and v["code"] == "KEY_COMPROMISED" and v["state_version"] == v0 + 1
        conn.request("POST", "/v1/verify", json.dumps({"requests": [{"repo": REPO_A, "tag": "build-1"}]}),
                     {"Content-Type": "application/json"})
        b = json.loads(conn.getresponse().read())
        assert [x["code"] for x in b["verdicts"]] == ["KEY_COMPROMISED"] and b["state_version"] == v0 + 1
        conn.close()
    finally:
        s.stop()


def test_the_verdict_memo_changes_no_bytes_and_can_be_off(fast):
    _, svc, _ = fast
    keys = [(REPO_A, "build-1", None), (REPO_B, "v0", "sha256:" + "cd" * 32), ("nope/x", "t", None)]
    want = [(v.code, msgspec.json.encode(v)) for v in svc.verify([Request(*k) for k in keys])]
    assert svc.encoded(keys) == want and svc.encoded(keys) == want  # computed, then reused
    old = svc.max_memo
    svc.max_memo = 0
    try:
        assert svc.encoded(keys) == want and len(svc._memo) == len(keys)  # only this call's
        assert svc.encoded(keys[:1]) == want[:1] and len(svc._memo) == 1
    finally:
        svc.max_memo = old


def test_a_fault_on_the_fast_path_leaves_the_request_to_aiohttp(fast, monkeypatch):
    fp, svc, handed = fast

    def boom(keys):
        raise RuntimeError("injected")

    monkeypatch.setattr(svc, "encoded", boom)
    for req in (get(f"/v1/repositories/{REPO_B}/tags/v0"), post(b'{"requests": [{"repo": "a", "tag": "b"}]}')):
        got, t = feed(fp, req)
        assert got == [] and t.protocol is handed[-1] and handed[-1].data == req
