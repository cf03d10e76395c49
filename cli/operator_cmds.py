"""Operator commands: `trustlog rejects`, `trustlog compromise-everywhere`.

Registered into the main parser by ``register(sub, common)``.
"""
from __future__ import annotations

import argparse
import fnmatch
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgspec

from trustlog.core.errors import InputError, TrustlogError
from trustlog.core.reasons import Reject

from .common import emit
from .logdir import require_log
from .times import parse_time
from .ui import UI


def iso(ns: int) -> str:
    """A log time (ns) as UTC ISO 8601 to the millisecond."""
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- rejects ------------------------------------------------------------------------------

#: The fields of one reject in `trustlog rejects --json` (docs/REFERENCE.md lists them).
REJECT_FIELDS: dict[str, str] = {
    "offset": "position in the rejects log",
    "log_time": "when it was rejected, log time in ns",
    "time": "the same as UTC ISO 8601",
    "reason": "reject reason code (see Reject reasons)",
    "detail": "what exactly was wrong (for MALFORMED: the decoder's message)",
    "repo": "repository the event names, or null when it did not decode that far",
    "event_id": "SHA-256 of the envelope, or \"\" when it did not decode",
    "source": "Kafka position {topic, partition, offset} it came from, or null",
    "raw_bytes": "size of the stored input (cut to the rejects log's limit)",
}


def _repo_of(raw: bytes) -> str | None:
    from trustlog.core.errors import EncodingError
    from trustlog.core.events import decode_event, decode_wire

    try:
        return decode_event(decode_wire(raw, max_bytes=max(len(raw), 1)).payload).repo
    except (EncodingError, ValueError):
        return None


def cmd_rejects(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.rejects import RejectsLog

    d = require_log(args.log)
    reasons = {r.upper() for r in args.reason}
    unknown = reasons - {r.value for r in Reject}
    if unknown:
        raise InputError(f"unknown reject reason {', '.join(sorted(unknown))}; one of {', '.join(r.value for r in Reject)}")
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    rows: list[dict[str, Any]] = []
    by_reason: Counter[str] = Counter()
    total = 0
    if (d / "rejects").is_dir():
        with RejectsLog.open(d / "rejects", create=False) as rl:
            for offset, body in rl.log.scan():
                from trustlog.ingest.records import decode_reject

                rec = decode_reject(body)
                total += 1
                if reasons and rec.reason not in reasons:
                    continue
                if since is not None and rec.log_time < since or until is not None and rec.log_time >= until:
                    continue
                repo = _repo_of(rec.raw)
                if args.repo and not (repo is not None and fnmatch.fnmatchcase(repo, args.repo)):
                    continue
                by_reason[rec.reason] += 1
                src = None if rec.source is None else msgspec.to_builtins(rec.source)
                rows.append({"offset": offset, "log_time": rec.log_time, "time": iso(rec.log_time),
                             "reason": rec.reason, "detail": rec.detail, "repo": repo, "event_id": rec.event_id,
                             "source": src, "raw_bytes": len(rec.raw)})
    matched = len(rows)
    shown = rows[-args.limit:] if args.limit else rows
    if args.json:
        emit({"log": str(d), "total": total, "matched": matched, "by_reason": dict(by_reason.most_common()),
               "rejects": shown})
        return 0
    ui.table(f"rejected events in {d} ({matched} of {total} match; last {len(shown)} shown)",
             ["offset", "time (UTC)", "reason", "repository", "detail"],
             [[r["offset"], r["time"], r["reason"], r["repo"] or "—", r["detail"]] for r in shown])
    return 0


# -- compromise-everywhere -----------------------------------------------------------------

@dataclass
class _Plan:
    repo: str
    roles: list[str]                 # the roles that hold the key there
    authority: str = ""              # the role whose keys sign the report
    signers: list[str] = field(default_factory=list)   # key names from the keystore
    problem: str = ""                # why it cannot be signed
    result: dict[str, Any] = field(default_factory=dict)


def _authority_roles(repo, material: bytes) -> list[str]:
    """Roles whose threshold may report the key compromised, preferred first: targets
    (the online key) then root. The fold's own rule (``core.state.compromise_authority``:
    every role that ever held the key counts, so a key rotated out of root still needs
    root), never a second copy of it that could plan a report the fold refuses."""
    from trustlog.core.state import compromise_authority

    allowed = compromise_authority(repo, material)
    return [r for r in ("targets", "root") if r in allowed]


def plan_compromise(state, keyid: str, names_by_keyid: dict[str, str]) -> list[_Plan]:
    """For every repository where ``keyid`` (or the same key material) holds or held a
    role: the role that can report it and the keystore keys that meet its threshold."""
    from trustlog.core.keys import key_material_id

    plans = []
    material = None
    for repo in state.repos.values():
        pk = repo.keys.get(keyid)
        if pk is not None:
            material = key_material_id(pk)
            break
    if material is None:
        return []
    for name in sorted(state.repos):
        repo = state.repos[name]
        same = {k for k, pk in repo.keys.items() if key_material_id(pk) == material}
        # every role that holds or held it: what a rotated-out key signed before its
        # rotation is still trusted, so its compromise must be reported there too
        roles = sorted({g.role for g in repo.grants if same & set(g.keyids)})
        if not roles:
            continue
        plan = _Plan(name, roles)
        if material in repo.compromised:
            plan.problem = f"already reported compromised since {iso(repo.compromised[material])}"
            plans.append(plan)
            continue
        missing = []
        for role in _authority_roles(repo, material):
            g = repo.role_grant(role)
            if g is None:
                continue
            have = [names_by_keyid[k] for k in g.keyids if k in names_by_keyid and k not in same]
            if len(have) >= g.threshold:
                plan.authority, plan.signers = role, have[:g.threshold]
                break
            missing.append(f"{role} needs {g.threshold} key(s), the keystore holds {len(have)}")
        if not plan.authority:
            plan.problem = "no authority in the keystore: " + "; ".join(missing)
        plans.append(plan)
    return plans


def cmd_compromise_everywhere(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.core.events import KeyCompromised, sign_event
    from trustlog.ingest.keystore import KeyStore
    from trustlog.ingest.pipeline import TrustLog

    require_log(args.log)
    ks = KeyStore(args.keys)
    names_by_keyid = {}
    for n in ks.names():
        if not (ks.dir / f"{n}.key").is_file():
            continue  # a public key alone cannot sign
        try:
            names_by_keyid[ks.public(n).keyid] = n
        except TrustlogError:
            continue
    keyid = args.key
    if not (len(keyid) == 64 and all(c in "0123456789abcdef" for c in keyid)):
        keyid = ks.public(keyid).keyid
    since = parse_time(args.since)
    loaded: dict[str, Any] = {}
    with TrustLog(args.log) as tl:
        plans = plan_compromise(tl.state, keyid, names_by_keyid)
        if not plans:
            raise InputError(f"key {keyid[:16]}… holds no role in any repository of {args.log}")
        for p in plans:
            if p.problem or args.dry_run:
                continue
            try:
                signers = [loaded[n] if n in loaded else loaded.setdefault(n, ks.load(n)) for n in p.signers]
            except TrustlogError as e:
                p.problem = f"cannot load {p.authority} key: {e}"
                continue
            # the report's own scope (core.events.version_scope): no signer's version elsewhere can block it
            version = tl.state.repos[p.repo].versions.get("key:" + keyid, 0) + 1
            env = sign_event(KeyCompromised(p.repo, version, int(time.time()), keyid, since, args.note), signers)
            r = tl.ingest_batch([(env.to_bytes(), None)])
            if r.accepted:
                p.result = {"event_id": env.event_id, "version": version, "accepted": True}
            else:
                reason, detail = r.last_reject or ("DUPLICATE", "this exact event is already in the log")
                p.result = {"event_id": env.event_id, "version": version, "accepted": False, "reason": reason,
                            "detail": detail}
    signed = [p for p in plans if p.result.get("accepted")]
    failed = [p for p in plans if p.problem or (p.result and not p.result.get("accepted"))]
    out = {"keyid": keyid, "since": since, "dry_run": args.dry_run, "repositories": len(plans),
           "signed": len(signed), "not_signed": len(failed),
           "reports": [{"repo": p.repo, "roles": p.roles, "authority": p.authority or None, "signers": p.signers,
                        "problem": p.problem or None, **p.result} for p in plans]}
    if args.json:
        emit(out)
    else:
        title = "would sign" if args.dry_run else "compromise reports"
        ui.table(f"{title}: key {keyid[:16]}… compromised since {iso(since)}",
                 ["repository", "key holds", "signed by", "result"],
                 [[p.repo, " ".join(p.roles), f"{p.authority}: {' '.join(p.signers)}" if p.authority else "—",
                   p.problem if p.problem else "dry run" if args.dry_run else
                   "appended v%d" % p.result["version"] if p.result.get("accepted") else
                   f"REJECTED {p.result['reason']}: {p.result['detail']}"] for p in plans])
        ui.out.print(f"{len(signed)} of {len(plans)} repositories signed and appended; {len(failed)} could not be"
                     + ("" if not failed else " (see above)"))
    return 1 if failed else 0


# -- registration ---------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add this module's commands to the main parser's subcommands."""
    r = sub.add_parser("rejects", parents=[common], help="read the rejects log: what was refused, and why",
                       description="Every input the log refused, with its reason and detail (for MALFORMED, the "
                                   "decoder's message), newest last. Filters combine.")
    r.add_argument("--reason", action="append", default=[], metavar="CODE",
                   help="only this reject reason (repeat for several), e.g. BAD_SIGNATURE")
    r.add_argument("--repo", metavar="PATTERN", help="only events naming this repository (shell pattern: team/*)")
    r.add_argument("--since", metavar="T", help="only rejects at or after this log time (ISO 8601 or ns)")
    r.add_argument("--until", metavar="T", help="only rejects before this log time (ISO 8601 or ns)")
    r.add_argument("--limit", type=int, default=100, metavar="N",
                   help="show the last N that match (default 100; 0 for all)")
    r.set_defaults(func=cmd_rejects)

    ce = sub.add_parser("compromise-everywhere", parents=[common],
                        help="report a key compromised in every repository where it holds a role",
                        description="One KeyCompromised report per repository where the key (or the same key "
                                    "material under another id) holds or held a role, each signed with the "
                                    "authority the keystore holds for that repository (targets, else root; root "
                                    "for a root key). Prints what was signed and what could not be; exit 1 if any "
                                    "repository could not be signed.")
    ce.add_argument("key", help="key id (64 hex) or a key name in --keys")
    ce.add_argument("--since", required=True, help="log time: ISO 8601 (2026-11-01T00:00:00Z) or integer ns")
    ce.add_argument("--note", default="", help="free text kept in every report")
    ce.add_argument("--dry-run", action="store_true", help="show what would be signed; append nothing")
    ce.set_defaults(func=cmd_compromise_everywhere)
