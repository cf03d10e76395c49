"""`trustlog pins`: the log's pin policy (show it, change it), and the pin file format.

Pins are part of the log (``ingest/pinpolicy.py``): every command folds with the policy
the log records. ``--pins FILE`` on any other command only asserts which policy the
caller expects, and fails with a pointer here when the log's differs.
"""
from __future__ import annotations

import argparse
from typing import Any



from .common import emit, load_pins, open_log
from .ui import UI


def _policy_info(tl) -> dict[str, Any]:
    e = tl.pin_policy.entries[-1] if tl.pin_policy.entries else None
    return {"log": str(tl.dir), "version": tl.pin_policy.version,
            "pins": {p.pattern: sorted(p.keyids) for p in tl.pins},
            "set_at_offset": None if e is None else e.offset, "log_time": None if e is None else e.log_time}


def cmd_pins_show(args: argparse.Namespace, ui: UI) -> int:
    with open_log(args, ui, read_only=True) as tl:  # a read: no lock, and no log made where there is none
        info = _policy_info(tl)
    if args.json:
        emit(info)
        return 0
    if not info["version"]:
        ui.say("{}: no pin policy; every repository's first root is trusted on first use", info["log"])
        return 0
    ui.table(f"pin policy version {info['version']} of {info['log']} (set at log offset {info['set_at_offset']})",
             ["pattern", "allowed root key ids"], [[p, "\n".join(ids)] for p, ids in info["pins"].items()])
    return 0


def cmd_pins_set(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.pipeline import TrustLog

    pins = load_pins(args.file)
    with TrustLog(args.log) as tl:
        entry = tl.set_pins(pins)
        info = _policy_info(tl)
    if args.json:
        emit(info)
    else:
        ui.say("pin policy version {} recorded in {} at log offset {} ({} patterns), signed by the log key",
               entry.version, args.log, entry.offset, len(pins))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    pp = sub.add_parser("pins", help="the log's pin policy: root keys required for repository patterns",
                        description="Pins are part of the log: every command uses the policy the log records. "
                                    "`pins set` is the only way to change it.")
    psub = pp.add_subparsers(dest="pinscmd", metavar="ACTION", required=True)
    s = psub.add_parser("show", parents=[common], help="print the pin policy in force")
    s.set_defaults(func=cmd_pins_show)
    st = psub.add_parser("set", parents=[common], help="record a new pin policy (signed by the log key, logged)",
                         description="Record a new pin policy in the log, signed by the log key. Refused when a "
                                     "repository already in the log was created with root keys it does not allow. "
                                     "An empty file ({}) removes every pin.")
    st.add_argument("file", help='JSON: {"registry.example.com/team/*": ["<root key id>", ...], ...}')
    st.set_defaults(func=cmd_pins_set)
