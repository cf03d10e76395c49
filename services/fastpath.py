"""The fast path of ``trustlog serve``: the two hot requests answered without aiohttp's
per-request machinery, everything else handed to aiohttp unchanged.

Each connection starts with :class:`FastProtocol`. It answers, in order, the requests it
recognises in a deliberately narrow form:

* ``GET /v1/repositories/{repo}/tags/{tag} HTTP/1.1`` with no query, no percent-escapes,
  no dot or empty path segments, no body;
* ``POST /v1/verify HTTP/1.1`` with a ``Content-Length`` body (no ``Transfer-Encoding``,
  no ``Expect``) that decodes to a valid request within the limits;

and only when the answer is a success (the server following the log, every field
valid). The first request that is anything else — another endpoint, a bad body, an
unusual header, ``Connection: close``, HTTP/1.0, a header block over 8 KiB — is not
answered here: the connection, with that request's bytes and all after it, is handed to
aiohttp's own protocol (``transport.set_protocol``) and stays there. So every error,
every other endpoint and every edge of HTTP keeps aiohttp's behaviour, and the fast path
answers the same bytes aiohttp's handler would (``tests/test_serve.py`` compares them).

Verdicts come from :meth:`~trustlog.services.verdicts.VerdictService.encoded`: JSON bytes
per verdict, reused only within one (state version, second); requests and latency are
counted in the same Prometheus metrics as the aiohttp handlers.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import msgspec

from .wire import Limits, VerifyBody

if TYPE_CHECKING:
    from .metrics import Metrics
    from .verdicts import VerdictService

MAX_HEAD = 8190  # aiohttp's default limit on the request line and headers
PREFIX = "/v1/repositories/"
_SAFE_PATH = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/:@!$&'()*+,;=")
# Headers whose presence sends the request to aiohttp (framing, upgrades, continuation).
_HANDOFF_HEADERS = (b"transfer-encoding", b"expect", b"upgrade", b"connection", b"content-length")


class _Date:
    """The ``Date`` header value, formatted once a second."""

    def __init__(self) -> None:
        self.sec = -1
        self.value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self.sec:
            self.sec = now
            self.value = formatdate(now, usegmt=True).encode()
        return self.value


class FastPath:
    """What the fast protocol needs: the service, the limits, the metrics, and aiohttp's
    protocol factory to hand connections to."""

    def __init__(self, service: VerdictService, limits: Limits, metrics: Metrics, fallback: Any,
                 server_header: bytes) -> None:
        self.service = service
        self.limits = limits
        self.fallback = fallback
        self.date = _Date()
        self.head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nServer: " + server_header
                     + b"\r\nContent-Length: ")
        self.decoder = msgspec.json.Decoder(VerifyBody)
        self.one_requests = metrics.requests.labels("/v1/repositories/{repo}/tags/{tag}", "200")
        self.one_latency = metrics.latency.labels("/v1/repositories/{repo}/tags/{tag}")
        self.batch_requests = metrics.requests.labels("/v1/verify", "200")
        self.batch_latency = metrics.latency.labels("/v1/verify")
        self._metrics = metrics
        self._code_counters: dict[str, Any] = {}
        self.open: set[FastProtocol] = set()

    def close_all(self) -> None:
        """Close the connections still on the fast path (at shutdown)."""
        for p in list(self.open):
            if p.transport is not None:
                p.transport.close()
        self.open.clear()

    def count(self, codes: Counter[str]) -> None:
        kids = self._code_counters
        for code, n in codes.items():
            c = kids.get(code)
            if c is None:
                c = kids[code] = self._metrics.verdicts.labels(code)
            c.inc(n)

    def response(self, body: bytes) -> bytes:
        return b"".join((self.head, str(len(body)).encode(), b"\r\nDate: ", self.date.get(), b"\r\n\r\n", body))

    def one(self, path: bytes) -> bytes | None:
        """The response to ``GET path``, or None to leave it to aiohttp."""
        if not _SAFE_PATH.issuperset(path) or b"//" in path or b"/." in path:
            return None
        p = path.decode("ascii")
        if not p.startswith(PREFIX):
            return None
        rest = p[len(PREFIX):]
        i = rest.rfind("/tags/")
        if i <= 0:
            return None
        repo, tag = rest[:i], rest[i + 6:]
        if not tag or "/" in tag or len(repo) > 1024 or len(tag) > 256:
            return None
        code, body = self.service.encoded([(repo, tag, None)])[0]
        self.count(Counter((code,)))
        return self.response(body)

    def verify(self, body: bytes) -> bytes | None:
        """The response to ``POST /v1/verify`` with ``body``, or None to leave it to aiohttp."""
        try:
            parsed = self.decoder.decode(body)
        except msgspec.MsgspecError:
            return None
        items = parsed.requests
        if not items or len(items) > self.limits.max_items:
            return None
        got = self.service.encoded([(i.repo, i.tag, i.digest) for i in items])
        self.count(Counter(c for c, _ in got))
        return self.response(b"".join((b'{"state_version":', str(self.service.state_version).encode(),
                                       b',"verdicts":[', b",".join([b for _, b in got]), b"]}")))


def _safely(answer: Any, arg: bytes) -> bytes | None:
    """``answer(arg)``, or None (hand the request to aiohttp, whose handler turns the same
    fault into a 500 with a JSON body) if it raises: a fault never loses a request."""
    try:
        return answer(arg)
    except Exception:  # noqa: BLE001
        return None


class FastProtocol(asyncio.Protocol):
    """One connection: fast answers until the first request it leaves to aiohttp."""

    def __init__(self, fp: FastPath) -> None:
        self.fp = fp
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.fp.open.add(self)

    # A client that does not read its answers stops us reading its requests.
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        fp = self.fp
        out: list[bytes] = []
        buf = self.buf
        while buf:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    break  # aiohttp answers the oversized head
                self.buf = buf
                self._flush(out)
                return
            if end > MAX_HEAD or fp.service.status.failed:
                break
            t0 = time.perf_counter()
            lines = buf[:end].split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or parts[2] != b"HTTP/1.1":
                break
            method, path = parts[0], parts[1]
            length = None
            odd = False
            for h in lines[1:]:
                name, sep, value = h.partition(b":")
                if not sep or not name or name != name.strip():
                    odd = True
                    break
                lname = name.lower()
                if lname in _HANDOFF_HEADERS:
                    if lname != b"content-length" or length is not None:
                        odd = True
                        break
                    v = value.strip()
                    if not v.isdigit() or len(v) > 12:
                        odd = True
                        break
                    length = int(v)
            if odd:
                break
            if method == b"GET" and not length:
                resp = _safely(fp.one, path)
                if resp is None:
                    break
                fp.one_requests.inc()
                fp.one_latency.observe(time.perf_counter() - t0)
                out.append(resp)
                buf = buf[end + 4:]
                continue
            if method == b"POST" and path == b"/v1/verify" and length and length <= fp.limits.max_body_bytes:
                total = end + 4 + length
                if len(buf) < total:
                    self.buf = buf
                    self._flush(out)
                    return
                resp = _safely(fp.verify, buf[end + 4:total])
                if resp is None:
                    break
                fp.batch_requests.inc()
                fp.batch_latency.observe(time.perf_counter() - t0)
                out.append(resp)
                buf = buf[total:]
                continue
            break
        else:
            self.buf = b""
            self._flush(out)
            return
        self._flush(out)
        self._handoff(buf)

    def _flush(self, out: list[bytes]) -> None:
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _handoff(self, rest: bytes) -> None:
        """Give the connection, from the first request not answered here, to aiohttp."""
        self.buf = b""
        t = self.transport
        if t is None or t.is_closing():
            return
        self.fp.open.discard(self)
        if self.paused:  # aiohttp's protocol would never resume it
            self.paused = False
            t.resume_reading()
        proto = self.fp.fallback()
        t.set_protocol(proto)
        proto.connection_made(t)
        if rest:
            proto.data_received(rest)
        self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.fp.open.discard(self)
        self.transport = None
        self.buf = b""
