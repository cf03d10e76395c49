"""``trustlog serve``: the thin command over :mod:`trustlog.services.http`."""
from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from typing import Any

from trustlog.core.errors import InputError

from .common import pins_of
from .ui import UI


def _loop_factory() -> Any:
    """uvloop's event loop where it is installed (about twice the requests per CPU-second
    of asyncio's own on the fast path), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def cmd_serve(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.services.http import Limits, parse_listen, serve
    from trustlog.services.verdicts import VerdictService

    try:
        parse_listen(args.listen)
    except ValueError as e:
        raise InputError(str(e)) from e
    if args.verdict_memo < 0:
        raise InputError("--verdict-memo must be 0 or more")
    for name in ("max_body_bytes", "max_items", "follow_batch"):
        if getattr(args, name) <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be positive")
    if args.follow_interval <= 0 or args.follow_interval > 1:
        raise InputError("--follow-interval must be in (0, 1] seconds (verdicts must follow the log within a second)")
    t0 = time.perf_counter()
    service = VerdictService(args.log, pins=pins_of(args),
                             follow_batch=args.follow_batch, max_memo=args.verdict_memo)
    opened = time.perf_counter() - t0
    if args.warm:
        service.verifier.sweep()  # every signature checked once, into the validity cache

    # The folded state is tens of millions of long-lived objects: without this, every full
    # collection of the cyclic GC walks them all (about a second at a million tags), a
    # pause that lands on whichever request happened to allocate.
    gc.collect()
    gc.freeze()

    def ready(host: str, port: int) -> None:
        # One line on stderr (tests and scripts wait for it); the address actually bound.
        print(f"trustlog serve: listening on http://{host}:{port} (state version {service.state_version}, "
              f"{len(service.views.state.repos)} repositories, opened in {opened:.2f} s)",
              file=sys.stderr, flush=True)

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(service, args.listen, Limits(args.max_body_bytes, args.max_items),
                             follow_interval=args.follow_interval, on_ready=ready, fast_path=not args.no_fast_path))
    except OSError as e:
        raise InputError(f"cannot listen on {args.listen}: {e}") from e
    finally:
        service.close()
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser(
        "serve", parents=[common], help="serve verdicts over HTTP from a log another process writes",
        description="Serve verdicts over HTTP (docs/serve.md): POST /v1/verify, GET "
                    "/v1/repositories/REPO/tags/TAG, POST /v1/externaldata (Gatekeeper/Ratify provider), "
                    "/healthz, /readyz, /metrics. Reads --log read-only from its newest snapshot, without the "
                    "writer's lock, and follows what ingest appends: a verdict reflects the log within "
                    "--follow-interval, never a cached answer.")
    s.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="address to listen on (default %(default)s; port 0 picks a free one)")
    s.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default %(default)s)")
    s.add_argument("--max-items", type=int, default=10_000,
                   help="most requests or keys in one POST (default %(default)s)")
    s.add_argument("--follow-interval", type=float, default=0.05,
                   help="seconds between reads of the log (default %(default)s)")
    s.add_argument("--follow-batch", type=int, default=20_000,
                   help="most records folded between two requests (default %(default)s)")
    s.add_argument("--warm", action="store_true",
                   help="check every signature once before listening (first requests are then fast)")
    s.add_argument("--verdict-memo", type=int, default=100_000, metavar="N",
                   help="verdicts whose JSON the fast path reuses within one (state version, second); "
                        "0 computes every one (default %(default)s)")
    s.add_argument("--no-fast-path", action="store_true",
                   help="answer every request through aiohttp's handlers (the fast path answers single lookups "
                        "and POST /v1/verify with the same bytes, at a fraction of the CPU)")
    s.set_defaults(func=cmd_serve)
