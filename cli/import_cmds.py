"""`trustlog import tuf|notary`: load TUF / Notary v1 trust data into the log."""
from __future__ import annotations

import argparse
import signal
import time
from typing import Any

from trustlog.core.errors import InputError

from .common import open_log
from .logdir import add_init_option
from .ui import UI


def _open(args: argparse.Namespace, ui: UI):
    from trustlog.ingest.tuf_import import IMPORT_MAX_EVENT_BYTES

    # an import creates data, so it may create the log: only when told to (--init)
    return open_log(args, create=args.init, max_event_bytes=IMPORT_MAX_EVENT_BYTES)


def _report(args: argparse.Namespace, ui: UI, res, extra: dict[str, Any]) -> int:
    import msgspec

    out = {**extra, "repositories": res.repositories, "appended": res.appended, "unchanged": res.unchanged,
           "rejected": res.rejected, "targets": res.targets, "rejected_by_reason": dict(res.reasons),
           "rejects": [{"repo": r, "reason": why, "detail": d} for r, why, d in res.rejects]}
    if args.json:
        print(msgspec.json.encode(out).decode())
    else:
        ui.table("import", ["repositories", "appended", "unchanged", "rejected", "targets"],
                 [[res.repositories, res.appended, res.unchanged, res.rejected, res.targets]])
        if res.rejects:
            ui.table("refused (kept in the rejects log)", ["repository", "reason", "detail"],
                     [[r, why, d] for r, why, d in res.rejects])
    return 1 if res.rejected else 0


def cmd_import_tuf(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.tuf_import import DirSource, UrlSource, import_repository

    if not args.repo:
        raise InputError("--repo GUN is required: a TUF repository does not name itself")
    src = UrlSource(args.dir) if args.dir.startswith(("http://", "https://")) else DirSource(args.dir)
    with _open(args, ui) as log:
        res = import_repository(log, args.repo, src)
        version = log.state.version
    return _report(args, ui, res, {"source": str(args.dir), "repo": args.repo, "state_version": version})


def cmd_import_notary(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.tuf_import import ImportResult, NotaryClient, NotaryFollower

    client = NotaryClient(args.server, ca_file=args.ca_file)
    total = ImportResult()
    with _open(args, ui) as log:
        fol = NotaryFollower(log, client, args.gun, page=args.page)
        start_id = fol.last_id
        if not args.follow:
            while True:
                res, n = fol.poll()
                total.add(res)
                if n < fol.page:
                    break
        else:
            stop = {"now": False}
            deadline = time.monotonic() + args.duration if args.duration else None
            signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("now", True))

            def done() -> bool:
                return stop["now"] or (deadline is not None and time.monotonic() >= deadline)

            def each(res, n: int) -> None:
                total.add(res)
                if not args.json:
                    ui.info(f"changes up to {fol.last_id}: {res.appended} appended, {res.rejected} refused "
                            f"({', '.join(f'{k} {v}' for k, v in res.reasons.items()) or 'none'})")

            try:
                fol.follow(interval=args.interval, until=done, on_result=each,
                           on_error=lambda e: ui.info(f"retrying: {e}"))
            except KeyboardInterrupt:
                pass
        fol.close()
        extra = {"server": client.server, "from_change": start_id, "to_change": fol.last_id,
                 "state_version": log.state.version}
    return _report(args, ui, total, extra)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    pi = sub.add_parser("import", help="load TUF / Notary v1 trust data (verified with the publishers' keys)")
    isub = pi.add_subparsers(dest="import_cmd", metavar="SOURCE", required=True)
    t = isub.add_parser("tuf", parents=[common],
                        help="a TUF repository's metadata directory (N.root.json chain, targets, delegations)",
                        description="Import a TUF repository's metadata directory: every root of the chain, "
                                    "the timestamp and snapshot, targets.json and every delegated role, each "
                                    "verified with the publisher's keys and kept byte for byte in the log.")
    t.add_argument("dir", metavar="DIR_OR_URL",
                   help="the metadata directory, or its http(s):// base URL (1.root.json, ..., timestamp.json, "
                        "snapshot.json, targets.json)")
    t.add_argument("--repo", required=True, metavar="GUN", help="the repository name to file it under")
    add_init_option(t)
    t.set_defaults(func=cmd_import_tuf)
    n = isub.add_parser("notary", parents=[common], help="a Notary v1 server, through its changefeed",
                        description="Read a Notary v1 server's changefeed and import every repository that "
                                    "changed; with --follow keep polling. The last change id is kept in the log, "
                                    "so a restart resumes where it stopped.")
    n.add_argument("--server", required=True, metavar="URL", help="e.g. https://notary.example.com:4443")
    n.add_argument("--ca-file", default=None, metavar="PEM",
                   help="CA certificates for the server's TLS (default: the system's store)")
    n.add_argument("--gun", default="*", metavar="PATTERN", help="only repositories matching this glob (default: all)")
    n.add_argument("--follow", action="store_true", help="keep polling for new changes (stop with Ctrl-C / SIGTERM)")
    n.add_argument("--interval", type=float, default=0.2, help="seconds between polls when idle (default 0.2)")
    n.add_argument("--duration", type=float, default=None, help="with --follow: stop after this many seconds")
    n.add_argument("--page", type=int, default=100, help="changes read per request (default 100)")
    add_init_option(n)
    n.set_defaults(func=cmd_import_notary)
