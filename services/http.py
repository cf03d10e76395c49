"""``trustlog serve``: verdicts over HTTP for admission controllers, scanners, dashboards.

Built on aiohttp: one asyncio process, a C HTTP parser, and the follow loop on the same
event loop as the handlers, so a verdict and a fold never run at the same time (the
state needs no lock). Endpoints (docs/serve.md has the request and response shapes):

* ``POST /v1/verify`` — ``{"requests": [{"repo", "tag"[, "digest"]}, ...]}`` → ``{"state_version",
  "verdicts": [...]}``, verdicts in the JSONL shape of ``trustlog verify``;
* ``GET /v1/repositories/{repo}/tags/{tag}[?digest=sha256:...]`` → one verdict (the
  repository name keeps its slashes: everything between ``/v1/repositories/`` and the
  last ``/tags/`` is the repository);
* ``POST /v1/externaldata`` — the Gatekeeper external-data provider protocol
  (``ProviderRequest`` → ``ProviderResponse``), the one Ratify serves, keys ``repo:tag``
  or ``repo:tag@sha256:...``;
* ``/healthz``, ``/readyz`` (ready once caught up with the log), ``/metrics`` (Prometheus).

Every error is a JSON body ``{"error": {"status", "message"}}`` with a 4xx for bad
requests; a fault inside a handler is a 500 with a JSON body, never a dead server.
"""
from __future__ import annotations

import asyncio
import signal
import time
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from trustlog.core.evaluate import Request, Verdict

from .fastpath import FastPath, FastProtocol
from .metrics import Metrics
from .verdicts import VerdictService
from .wire import DEFAULT_LIMITS, PROVIDER_API_VERSIONS, Limits, ProviderRequest, VerifyBody, VerifyItem, VerifyResponse, parse_image_key

T = TypeVar("T")
SERVICE_KEY: web.AppKey[VerdictService] = web.AppKey("service", VerdictService)
METRICS_KEY: web.AppKey[Any] = web.AppKey("metrics", object)


class BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_enc = msgspec.json.Encoder()
_verify_dec = msgspec.json.Decoder(VerifyBody)
_provider_dec = msgspec.json.Decoder(ProviderRequest)
JSON = "application/json"


def _decode(decoder: msgspec.json.Decoder[T], body: bytes, shape: str) -> T:
    """``body`` decoded, or a 400 (not JSON) or a 422 (JSON of the wrong ``shape``)."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as e:
        raise BadRequestError(422, f"{shape}: {e}") from e
    except msgspec.DecodeError as e:
        raise BadRequestError(400, f"malformed JSON: {e}") from e


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_enc.encode(obj), status=status, content_type=JSON)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": {"status": status, "message": message}}, status)


def make_app(service: VerdictService, limits: Limits = DEFAULT_LIMITS, *, follow_interval: float = 0.05) -> web.Application:
    """The aiohttp application over ``service``; it follows the log every
    ``follow_interval`` seconds (and at once again while there is more to fold)."""
    metrics = Metrics(service)
    status = service.status

    def endpoint_of(request: web.Request) -> str:
        info = request.match_info.route.resource
        return info.canonical if info is not None else "unmatched"

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        t0 = time.perf_counter()
        try:
            resp = await handler(request)
        except BadRequestError as e:
            resp = _error(e.status, e.message)
        except web.HTTPException as e:  # 404, 405, 413 from aiohttp itself
            resp = _error(e.status, e.reason or "error")
        except Exception as e:  # noqa: BLE001 - a request never takes the server down
            resp = _error(500, f"internal error: {type(e).__name__}: {e}")
        ep = endpoint_of(request)
        metrics.requests.labels(ep, str(resp.status)).inc()
        metrics.latency.labels(ep).observe(time.perf_counter() - t0)
        return resp

    async def body_of(request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > limits.max_body_bytes:
            raise BadRequestError(413, f"the body of {request.content_length} bytes is over the limit of "
                                       f"{limits.max_body_bytes} (--max-body-bytes)")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BadRequestError(413, f"the body is over the limit of {limits.max_body_bytes} bytes "
                                       "(--max-body-bytes)") from None
        if not body:
            raise BadRequestError(400, "empty body: send JSON")
        return body

    def answer(items: list[VerifyItem] | list[Request]) -> list[Verdict]:
        if status.failed:
            raise BadRequestError(503, f"not following the log: {status.failed}")
        reqs = [Request(i.repo, i.tag, i.digest) for i in items]
        verdicts = service.verify(reqs)
        metrics.count_verdicts(verdicts)
        return verdicts

    def check_count(n: int) -> None:
        if n > limits.max_items:
            raise BadRequestError(413, f"{n} items in one request; the limit is {limits.max_items} (--max-items)")
        if n == 0:
            raise BadRequestError(400, "no items: send at least one")

    async def verify(request: web.Request) -> web.Response:
        body = await body_of(request)
        parsed = _decode(_verify_dec, body, 'not a verify request {"requests": [{repo, tag[, digest]}]}')
        check_count(len(parsed.requests))
        verdicts = answer(parsed.requests)
        return web.Response(body=_enc.encode(VerifyResponse(service.state_version, verdicts)), content_type=JSON)

    async def one(request: web.Request) -> web.Response:
        q = request.rel_url.query
        extra = set(q) - {"digest"}
        if extra:
            raise BadRequestError(400, f"unknown query parameter(s): {', '.join(sorted(extra))} (only digest)")
        try:
            item = msgspec.convert({"repo": request.match_info["repo"], "tag": request.match_info["tag"],
                                    **({"digest": q["digest"]} if "digest" in q else {})}, VerifyItem)
        except msgspec.ValidationError as e:
            raise BadRequestError(422, f"bad repository, tag or digest: {e}") from e
        return web.Response(body=_enc.encode(answer([item])[0]), content_type=JSON)

    async def externaldata(request: web.Request) -> web.Response:
        body = await body_of(request)
        pr = _decode(_provider_dec, body, "not a ProviderRequest")
        if pr.kind != "ProviderRequest" or pr.apiVersion not in PROVIDER_API_VERSIONS:
            raise BadRequestError(422, f"expected kind ProviderRequest, apiVersion one of "
                                       f"{', '.join(PROVIDER_API_VERSIONS)}")
        check_count(len(pr.request.keys))
        parsed: list[VerifyItem | str] = []
        for k in pr.request.keys:
            try:
                parsed.append(parse_image_key(k))
            except (ValueError, msgspec.ValidationError) as e:
                parsed.append(str(e))
        good = [p for p in parsed if isinstance(p, VerifyItem)]
        verdicts = iter(answer(good) if good else [])
        items = []
        for key, p in zip(pr.request.keys, parsed):
            if isinstance(p, str):
                items.append({"key": key, "error": f"MALFORMED_REQUEST: {p}"})
                continue
            v = next(verdicts)
            item: dict[str, Any] = {"key": key, "value": v}
            if v.code != "VALID":  # fail closed: a policy that only looks at errors still denies
                item["error"] = f"{v.code}: {v.reason}"
            items.append(item)
        return _json({"apiVersion": pr.apiVersion, "kind": "ProviderResponse",
                      "response": {"idempotent": True, "items": items}})

    async def healthz(request: web.Request) -> web.Response:
        if status.failed:
            return _json({"status": "failed", "error": status.failed}, 503)
        return _json({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        body = {"ready": status.caught_up and not status.failed, "state_version": service.state_version,
                "lag_bytes": status.lag_bytes}
        if status.failed:
            body["error"] = status.failed
        return _json(body, 200 if body["ready"] else 503)

    async def metrics_view(request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(metrics.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def follow_loop(app: web.Application) -> Any:
        async def loop() -> None:
            while True:
                n = service.follow()
                await asyncio.sleep(0 if n >= service.follow_batch else follow_interval)
        task = asyncio.create_task(loop())
        yield
        task.cancel()

    app = web.Application(middlewares=[guard], client_max_size=limits.max_body_bytes)
    app.router.add_post("/v1/verify", verify)
    app.router.add_get(r"/v1/repositories/{repo:.+}/tags/{tag:[^/]+}", one)
    app.router.add_post("/v1/externaldata", externaldata)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.cleanup_ctx.append(follow_loop)
    app[SERVICE_KEY] = service
    app[METRICS_KEY] = metrics
    return app


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen {listen!r}: give HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve(service: VerdictService, listen: str, limits: Limits = DEFAULT_LIMITS, *,
                follow_interval: float = 0.05, on_ready: Any = None, fast_path: bool = True) -> None:
    """Run the server until SIGTERM or SIGINT; ``on_ready(host, port)`` once listening.
    ``fast_path``: answer the two hot requests through :mod:`.fastpath` (each connection
    starts there and is handed to aiohttp at the first request it does not take)."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(make_app(service, limits, follow_interval=follow_interval), access_log=None,
                           handle_signals=False)
    await runner.setup()
    loop = asyncio.get_running_loop()
    fp: FastPath | None = None
    if fast_path:
        fp = FastPath(service, limits, runner.app[METRICS_KEY], runner.server, SERVER_SOFTWARE.encode())
        listener = await loop.create_server(lambda: FastProtocol(fp), host, port, backlog=1024, reuse_address=True)
        bound = listener.sockets[0].getsockname()
    else:
        listener = None
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
        await site.start()
        bound = runner.addresses[0]
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    if on_ready is not None:
        on_ready(bound[0], bound[1])
    try:
        await stop.wait()
    finally:
        if listener is not None:
            listener.close()
        if fp is not None:
            fp.close_all()
        await runner.cleanup()
