"""``trustlog witness serve``: run a checkpoint witness (C2SP tlog-witness) on a host the
log host cannot write to. See ``trustlog.ingest.witness_server`` and docs/checkpoints.md."""
from __future__ import annotations

import argparse
import sys

from trustlog.core.errors import InputError

from .ui import UI


def cmd_witness_serve(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.transparency import load_public_key
    from trustlog.ingest.witness_server import Witness, make_server

    if not args.log_key:
        raise InputError("give the public key of each log to witness: --log-key DIR/log.pub")
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InputError(f"--listen {args.listen!r}: write HOST:PORT (port 0 picks a free one)")
    witness = Witness(args.dir, [load_public_key(p) for p in args.log_key], name=args.name)
    try:
        server = make_server(witness, host, int(port))
    except OSError as e:
        raise InputError(f"--listen {args.listen}: {e.strerror or e}") from e
    h, p = server.server_address[:2]
    sys.stdout.write(f"witness {witness.name} listening on http://{h}:{p}\nvkey {witness.vkey}\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    pw = sub.add_parser("witness", help="co-sign a log's checkpoints from another host (C2SP tlog-witness)")
    wsub = pw.add_subparsers(dest="witnesscmd", metavar="ACTION", required=True)
    ws = wsub.add_parser(
        "serve", parents=[common], help="run a witness: check consistency, co-sign, keep its own state",
        description="Serve POST /add-checkpoint (C2SP tlog-witness): each checkpoint must be signed by a "
                    "configured log key and extend the last one this witness co-signed (consistency proof), "
                    "then it is co-signed (cosignature/v1) and kept in DIR/state. GET /checkpoint?origin=O "
                    "returns it. The witness key is DIR/witness.key (created on first run); give verifiers "
                    "DIR/witness.vkey.")
    ws.add_argument("--dir", required=True, metavar="DIR", help="the witness's own directory (key and state)")
    ws.add_argument("--log-key", action="append", default=[], metavar="log.pub",
                    help="public key of a log to witness (repeatable)")
    ws.add_argument("--listen", default="127.0.0.1:8470", metavar="HOST:PORT", help="address (default %(default)s)")
    ws.add_argument("--name", help="the witness's key name (default trustlog-witness/<key id prefix>)")
    ws.set_defaults(func=cmd_witness_serve)
