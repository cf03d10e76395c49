"""CLI commands for the tamper-evident log, replay and the key-compromise audit.

Registered into the main parser by ``register(sub, common)``::

    trustlog checkpoint latest [--note]|list|create|vkey|publish SPEC...
    trustlog proof inclusion OFFSET [--size N]
    trustlog proof consistency OLD [NEW]
    trustlog proof verify PROOF.json --checkpoint CP.json [--checkpoint OLD.json] --log-key log.pub
    trustlog log verify [--log-key log.pub] [--checkpoint CP.json ...] [--witness SPEC ...]
    trustlog snapshot create [--at OFFSET] | list
    trustlog state --at OFFSET|TIME REPO
    trustlog replay verify --at OFFSET|TIME [REQUESTS]
    trustlog audit --key K [--since T] [--html report.html]

``--at``: a plain integer is a log offset (the state after that many records); an
ISO 8601 time (``2026-11-01T00:00:00Z``) or ``ns:<integer>`` is a log time.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any

import msgspec

from trustlog.core.errors import InputError, TrustlogError

from .common import emit, pins_of, print_notices, version_string
from .render import print_repo, roles_info, tags_info
from .times import parse_time
from .ui import UI


def parse_at(s: str) -> tuple[int | None, int | None]:
    """``--at``: (offset, None) for a plain integer, (None, log_time) otherwise."""
    s = s.strip()
    if s.isdigit():
        return int(s), None
    return None, parse_time(s)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _need_log(args: argparse.Namespace) -> Path:
    from .logdir import require_log

    return require_log(args.log)


def _open(args: argparse.Namespace, ui: UI | None = None, *, read_only: bool = True):
    """The log, read-only unless the command writes (checkpoint/snapshot create, log repair)."""
    from trustlog.ingest.pipeline import TrustLog

    tl = TrustLog(_need_log(args), read_only=read_only, pins=pins_of(args))
    if ui is not None:
        print_notices(ui, tl)
    return tl


def _view(args: argparse.Namespace, ui: UI | None = None):
    """A read-only view for commands that only read (no writer lock, nothing written)."""
    from trustlog.ingest.view import LogView

    view = LogView(_need_log(args), pins=pins_of(args))
    if ui is not None:
        print_notices(ui, view)
    return view


def _read_json(path: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        return msgspec.json.decode(p.read_bytes())
    except msgspec.DecodeError as e:
        raise InputError(f"{p}: not JSON: {e}") from e


def _read_checkpoint_arg(path: str) -> Any:
    """A checkpoint file: JSON (``checkpoint latest``) or a signed note (``--note``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    data = p.read_bytes()
    return _read_json(path) if data.lstrip().startswith(b"{") else data


# -- checkpoints ---------------------------------------------------------------------------

def cmd_checkpoint_latest(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.core.checkpoint import checkpoint_note
    from trustlog.ingest.transparency import checkpoint_to_json

    with _open(args, ui) as tl:
        latest = tl.tree.latest()
        public_key = tl.tree.public_key
    if latest is None:
        raise InputError(f"{args.log} has no signed checkpoint yet (append events first)")
    if args.note:
        sys.stdout.write(checkpoint_note(latest[0], public_key).decode())
    else:
        emit(checkpoint_to_json(latest[0], public_key))
    return 0


def cmd_checkpoint_vkey(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.core.checkpoint import log_verifier_key
    from trustlog.ingest.transparency import load_public_key, origin_for

    key = load_public_key(args.log_key or Path(_need_log(args)) / "log.pub")
    vkey = log_verifier_key(origin_for(key), key)
    emit({"origin": origin_for(key), "vkey": vkey, "keyid": key.keyid}) if args.json else ui.out.print(vkey)
    return 0


def cmd_checkpoint_publish(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.witness import parse_spec, publish

    places = [parse_spec(s) for s in args.spec]
    failed, rows = 0, []
    with _open(args, ui) as tl:
        latest = tl.tree.latest()
        if latest is None:
            raise InputError(f"{args.log} has no signed checkpoint yet (append events first)")
        for place in places:
            try:
                cosigs = publish(place, latest[0], tl.tree)
                rows.append({"spec": place.spec, "ok": True, "tree_size": latest[1].tree_size,
                             "cosignatures": [c.line() for c in cosigs]})
            except TrustlogError as e:
                failed += 1
                rows.append({"spec": place.spec, "ok": False, "error": str(e)})
    if args.json:
        emit(rows)
    else:
        for r in rows:
            if r["ok"]:
                ui.say("published size {} to {}{}", r["tree_size"], r["spec"],
                       f" ({len(r['cosignatures'])} cosignature)" if r["cosignatures"] else "")
            else:
                ui.say("[bold red]FAILED[/bold red]: {}: {}", r["spec"], r["error"], err=True)
    return 1 if failed else 0


def cmd_checkpoint_list(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.transparency import checkpoint_to_json

    with _open(args, ui) as tl:
        rows = [checkpoint_to_json(s, tl.tree.public_key) for s in tl.tree.merkle.checkpoints]
    if args.json:
        emit(rows)
    else:
        ui.table(f"signed checkpoints of {args.log}", ["#", "tree size", "root", "log time"],
                 [[i, r["tree_size"], r["root_hash"], _iso(r["log_time"])] for i, r in enumerate(rows)])
    return 0


def cmd_checkpoint_create(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.transparency import checkpoint_to_json

    with _open(args, ui, read_only=False) as tl:
        tl.checkpoint()
        latest = tl.tree.latest()
    if latest is None:
        raise InputError(f"{args.log} is empty: nothing to checkpoint")
    emit(checkpoint_to_json(latest[0], tl.tree.public_key)) if args.json else ui.out.print(
        f"checkpoint: size {latest[1].tree_size} root {latest[1].root_hash.hex()}")
    return 0


# -- proofs ------------------------------------------------------------------------------

def _proof_command(args: argparse.Namespace, ui: UI, make: Callable[[Any], dict[str, Any]], head: str,
                   fields: tuple[str, ...]) -> int:
    """Print the proof ``make(log)`` returns: JSON, or ``head`` with ``fields`` and the path."""
    with _open(args, ui) as tl:
        out = make(tl)
    if args.json:
        emit(out)
    else:
        ui.say(head, *(out[f] for f in fields))
        for p in out["proof"]:
            ui.say("{}", p)
    return 0


def cmd_proof_inclusion(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.services.proofs import inclusion_proof

    return _proof_command(args, ui, lambda tl: inclusion_proof(tl, args.offset, args.size),
                          "inclusion proof: leaf {} of tree size {}\nleaf_hash {}\nroot_hash {}\nevent_id  {}",
                          ("leaf_index", "tree_size", "leaf_hash", "root_hash", "event_id"))


def cmd_proof_consistency(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.services.proofs import consistency_proof

    return _proof_command(args, ui, lambda tl: consistency_proof(tl, args.old, args.new),
                          "consistency proof: {} -> {}\nold_root {}\nnew_root {}",
                          ("old_size", "new_size", "old_root", "new_root"))


def cmd_proof_verify(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.transparency import load_public_key
    from trustlog.services.proofs import verify_proof_file

    key = load_public_key(args.log_key)
    cps = [_read_checkpoint_arg(c) for c in args.checkpoint]
    is_report = args.proof.endswith((".html", ".htm"))
    if not is_report and not cps:
        raise InputError("give the signed checkpoint the proof is for: --checkpoint CP.json")
    try:
        if is_report:
            from .audit_evidence import verify_report

            p = Path(args.proof)
            if not p.is_file():
                raise InputError(f"{p}: no such file")
            msg = verify_report(p.read_text(encoding="utf-8"), key, cps[0] if cps else None)
        else:
            msg = verify_proof_file(_read_json(args.proof), cps, key)
    except InputError:
        raise
    except TrustlogError as e:
        if args.json:
            emit({"ok": False, "error": str(e)})
        else:
            ui.say("[bold red]FAILED[/bold red]: {}", e, err=True)
        return 1
    if args.json:
        emit({"ok": True, "proven": msg})
    else:
        ui.say("[green]OK[/green]: {}", msg)
    return 0


# -- log verify --------------------------------------------------------------------------

def cmd_log_verify(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.logcheck import verify_log
    from trustlog.ingest.transparency import load_public_key, read_checkpoint_file
    from trustlog.ingest.witness import parse_spec

    d = _need_log(args)
    key = load_public_key(args.log_key) if args.log_key else None
    extra = [read_checkpoint_file(c, key or load_public_key(d / "log.pub")) for c in args.checkpoint]
    places = [parse_spec(s) for s in args.witness]
    with ui.progress("verify log", total=None) as bar:
        last = [0]

        def progress(n: int) -> None:
            bar.advance(n - last[0])
            last[0] = n
        report = verify_log(d, key, checkpoints=extra, witnesses=places, progress=progress)
    if args.json:
        emit(report.to_dict())
    else:
        ui.table(f"log verify {d}", ["records", "segments", "checkpoints verified", "signatures verified",
                                     "snapshots verified", "root", "seconds"],
                 [[report.records, report.segments, f"{report.checkpoints_verified}/{report.checkpoints}",
                   report.signatures_verified, report.snapshots_verified, report.root[:16] + "…",
                   round(report.seconds, 2)]])
        ui.say("log key: {}… from {}", report.log_key[:16], report.log_key_source, err=True)
        for w in report.witnesses:
            ui.say("{}", f"witness {w['spec']}: {w['checkpoints']} checkpoint(s)"
                                + (f", largest size {w['largest']}" if w.get("largest") is not None else "")
                                + (f", cosigned at {w['cosigned'][-1]}" if w.get("cosigned") else ""), err=True)
        if not args.witness:
            ui.err.print("note: no --witness given: a host that holds the log key can rewrite history and "
                         "re-sign it unseen (docs/checkpoints.md)")
        for w in report.warnings:
            ui.say("warning: {}", w, err=True)
        if report.ok:
            ui.say("[green]OK[/green]: every record, checkpoint, signature and state transition checks out")
        else:
            assert report.first is not None
            ui.say("[bold red]INCONSISTENT[/bold red]: first inconsistency: {}", report.first.describe())
            for f in report.findings:
                if f is not report.first:
                    ui.say("  also: {}", f.describe())
        for f in report.derived:
            ui.say("[bold yellow]DERIVED FILE WRONG[/bold yellow]: {}: {}", f.segment or "", f.what)
    return 0 if report.ok and report.derived_ok else 1


def cmd_log_repair(args: argparse.Namespace, ui: UI) -> int:
    """Open the log for writing (which checks every derived file and rebuilds what is
    wrong from the segments, and cuts a torn tail) and close it. Evidence of tampering
    is never repaired: the open refuses, and says where."""
    with _open(args, None, read_only=False) as tl:
        notices = list(tl.notices) + ([f"recovered log: {tl.recovery}"] if tl.recovery else [])
        notices = [n for n in notices if "/snapshots/" not in n] + tl.repair_snapshots()
    if args.json:
        emit({"repaired": notices})
    elif notices:
        for n in notices:
            ui.say("repaired: {}", n)
    else:
        ui.out.print("nothing to repair: every derived file matches the segments")
    return 0


# -- snapshots, state, replay ---------------------------------------------------------------

def cmd_snapshot_create(args: argparse.Namespace, ui: UI) -> int:
    with _open(args, ui, read_only=False) as tl:
        path = tl.snapshot() if args.at is None else tl.snapshot_at(args.at)
    emit({"snapshot": str(path)}) if args.json else ui.say("snapshot written: {}", path)
    return 0


def cmd_snapshot_list(args: argparse.Namespace, ui: UI) -> int:
    with _open(args, ui) as tl:
        snaps = tl.snapshots.list()
        rows = [{"offset": s.header.offset, "root": s.header.root.hex(), "repos": s.header.repos,
                 "bytes": s.header.body_len, "auto": s.header.auto, "path": str(s.path)} for s in snaps]
        skipped = list(tl.snapshots.skipped)
    if args.json:
        emit({"snapshots": rows, "skipped": skipped})
    else:
        ui.table(f"snapshots of {args.log}", ["offset", "repositories", "bytes", "auto", "root"],
                 [[r["offset"], r["repos"], r["bytes"], r["auto"], r["root"][:16] + "…"] for r in rows])
        for s in skipped:
            ui.say("skipped: {}", s, err=True)
    return 0


def _state_at(tl, at: str):
    offset, log_time = parse_at(at)
    return tl.state_at(offset=offset, log_time=log_time)


def cmd_state(args: argparse.Namespace, ui: UI) -> int:
    with _view(args, ui) as tl:
        st = _state_at(tl, args.at)
        repo = st.repos.get(args.repo)
        if repo is None:
            raise InputError(f"no repository {args.repo!r} at state version {st.version} "
                             f"({len(st.repos)} repositories then)")
        roles = roles_info(repo)
        tags = sorted(repo.tags.values(), key=lambda e: e.offset)
        info = {"repo": repo.name, "state_version": st.version, "version": repo.version, "origin": repo.origin,
                "roles": roles, "compromised_keys": dict(repo.compromised_keyids), "tags": tags_info(tags),
                "deleted_tags": dict(repo.deleted_tags)}
    if args.json:
        emit(info)
        return 0
    ui.say("[bold]{}[/bold] at state version {} (--at {}): repository version {}, {} tags", repo.name, st.version,
           args.at, repo.version, len(tags))
    print_repo(ui, roles, info["compromised_keys"], info["tags"][-args.tags:], "tags")
    return 0


def cmd_replay_verify(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.core.evaluate import Request
    from trustlog.verifier.batch import BatchVerifier, requests_for_state

    ref = int(time.time()) if args.ref_time is None else parse_time(args.ref_time) // 1_000_000_000
    counts: Counter[str] = Counter()
    with _view(args, ui) as tl:
        st = _state_at(tl, args.at)
        if args.requests:
            src = Path(args.requests)
            if not src.is_file():
                raise InputError(f"{src}: no such file")
            dec = msgspec.json.Decoder(Request)
            try:
                reqs = [dec.decode(line) for line in src.read_bytes().splitlines() if line.strip()]
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                raise InputError(f"{src}: not a JSONL of requests {{repo, tag[, digest]}}: {e}") from e
        else:
            reqs = list(requests_for_state(st))
        out = open(args.out, "wb") if args.out else sys.stdout.buffer
        enc = msgspec.json.Encoder()
        try:
            for v in BatchVerifier(st, ref_time=ref).verify(reqs):
                counts[v.code] += 1
                if args.out or not args.json:
                    out.write(enc.encode(v) + b"\n")
        finally:
            if args.out:
                out.close()
        version = st.version
    summary = {"state_version": version, "at": args.at, "requests": sum(counts.values()),
               "verdicts": dict(counts.most_common()), "reference_time": ref}
    if args.json:
        emit(summary)
    else:
        ui.say("{} verdicts at state version {}: {}", summary["requests"], version,
               ", ".join(f"{k}={v}" for k, v in counts.most_common()), err=True)
    return 0


# -- audit -----------------------------------------------------------------------------

def _resolve_key(args: argparse.Namespace) -> str:
    k = args.key
    if len(k) == 64 and all(c in "0123456789abcdef" for c in k):
        return k
    from trustlog.ingest.keystore import KeyStore

    return KeyStore(args.keys).public(k).keyid


def cmd_audit(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.services.audit import audit_key, lost_trust

    keyid = _resolve_key(args)
    since = parse_time(args.since) if args.since else None
    ref = None if args.ref_time is None else parse_time(args.ref_time) // 1_000_000_000
    with _open(args, ui) as tl:
        report = audit_key(tl, keyid, since, ref_time=ref)
        if args.html:
            from .audit_evidence import build_evidence
            from .audit_html import render_html

            lost = lost_trust(tl, report)
            offsets = [e.offset for e in (*report.signed, *report.delegated, *report.granted)]
            evidence = build_evidence(tl, offsets + [x["offset"] for x in lost], version_string(),
                                      report.state_version)
            page = render_html(report, log_dir=str(args.log), evidence=evidence, lost=lost)
    if args.html:
        Path(args.html).write_text(page, encoding="utf-8")
    if args.json:
        emit(report.to_dict())
        return 0
    s = report.summary()
    if not report.signed and not report.granted:
        ui.say("note: key {}… signed nothing and was given no authority in {}", keyid[:16], args.log, err=True)
    ui.say("[bold]audit of key {}[/bold]\ncompromised since: {}  — log state version {}", keyid,
           "(whole history)" if since is None else f"{_iso(since)} ({since} ns)", report.state_version)
    ui.table("summary", ["signed", "before since", "after since", "delegations made after", "events under them",
                         "blast radius", "verdicts that change", "repositories"],
             [[s["signed"], s["signed_before"], s["signed_after"], s["delegations_after"], s["delegated_events"],
               s["blast_radius"], s["verdict_changes"], s["repositories"]]])
    lim = args.limit

    def rows(evs):
        return [[e.offset, _iso(e.log_time), e.repo, e.kind, e.role or "", e.tag or "",
                 "after" if e.after else "before"] for e in evs[:lim]]
    cols = ["offset", "log time", "repository", "event", "role", "tag", "vs since"]
    if report.fallen_grants:
        ui.table("grants that fall (made by the key after since, and beneath them)",
                 ["repository", "role", "grant", "offset", "made by the key"],
                 [[g.repo, g.role, g.grant_id, g.offset, "yes" if g.direct else "beneath"]
                  for g in report.fallen_grants[:lim]])
    ui.table(f"blast radius ({len(report.blast_radius)} events; first {lim})", cols + ["how"],
             [r + [e.relation] for r, e in zip(rows(report.blast_radius), report.blast_radius)])
    ui.table(f"signed before since: kept ({len(report.signed_before)}; first {lim})", cols,
             rows(report.signed_before))
    if report.verdict_changes:
        ui.table(f"current verdicts that change ({len(report.verdict_changes)}; first {lim})",
                 ["repository", "tag", "now", "would be", "why"],
                 [[v.repo, v.tag, v.before, v.after, v.reason] for v in report.verdict_changes[:lim]])
    else:
        ui.say("no current verdict changes")
    if report.already_reported:
        ui.table("the log already reports this key compromised", ["repository", "since"],
                 [[r, f"{_iso(t)} ({t} ns)"] for r, t in sorted(report.already_reported.items())[:lim]])
    if args.html:
        ui.say("HTML report: {}", args.html, err=True)
    return 0


# -- parser ----------------------------------------------------------------------------

def _add_at_option(p: argparse.ArgumentParser) -> None:
    """``--at``, read by :func:`parse_at`."""
    p.add_argument("--at", required=True, metavar="OFFSET|TIME",
                   help="an integer offset (state after that many records), ISO 8601 or ns:<int> log time")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add this module's commands to the main parser's subcommands."""
    pc = sub.add_parser("checkpoint", help="signed checkpoints of the log's Merkle tree")
    csub = pc.add_subparsers(dest="cpcmd", metavar="ACTION", required=True)
    cl = csub.add_parser("latest", parents=[common], help="print the latest signed checkpoint as JSON",
                         description="The latest checkpoint as JSON (with its C2SP signed note in `note` and the "
                                     "log's note verifier key in `vkey`), or with --note the signed note itself.")
    cl.add_argument("--note", action="store_true", help="print the C2SP signed note (tlog-checkpoint) only")
    cl.set_defaults(func=cmd_checkpoint_latest)
    cv = csub.add_parser("vkey", parents=[common], help="print the log's note verifier key (NAME+HASH+KEY)",
                         description="The verifier key of the log key, for Go's note.NewVerifier and witnesses.")
    cv.add_argument("--log-key", metavar="log.pub", help="the log's public key (default: DIR/log.pub)")
    cv.set_defaults(func=cmd_checkpoint_vkey)
    cpub = csub.add_parser("publish", parents=[common], help="publish the latest checkpoint off the host",
                           description="Send the latest signed checkpoint to each SPEC: file:DIR (append-only "
                                       "copy), kafka:HOST:PORT/TOPIC, or a witness http://HOST:PORT (C2SP "
                                       "tlog-witness, which co-signs it). TRUSTLOG_PUBLISH does the same for every "
                                       "checkpoint the log signs. Exit 1 if any place failed.")
    cpub.add_argument("spec", nargs="+", metavar="SPEC", help="file:DIR | kafka:HOST:PORT/TOPIC | http://HOST:PORT")
    cpub.set_defaults(func=cmd_checkpoint_publish)
    csub.add_parser("list", parents=[common], help="list the signed checkpoints").set_defaults(func=cmd_checkpoint_list)
    csub.add_parser("create", parents=[common], help="sign a checkpoint of the log now") \
        .set_defaults(func=cmd_checkpoint_create)

    pp = sub.add_parser("proof", help="RFC 9162 inclusion and consistency proofs, and checking them")
    psub = pp.add_subparsers(dest="proofcmd", metavar="ACTION", required=True)
    a = psub.add_parser("inclusion", parents=[common], help="prove that the record at OFFSET is in the log",
                        description="Audit path of a record in the tree of --size leaves (default: the size of the "
                                    "latest signed checkpoint, so `proof verify` can check it against that).")
    a.add_argument("offset", type=int, help="log offset of the record (0 is the first)")
    a.add_argument("--size", type=int, default=None, help="tree size (default: the latest checkpoint's)")
    a.set_defaults(func=cmd_proof_inclusion)
    c = psub.add_parser("consistency", parents=[common], help="prove that the log of NEW records extends OLD")
    c.add_argument("old", type=int, help="the older tree size")
    c.add_argument("new", type=int, nargs="?", default=None, help="(default: the latest checkpoint's size)")
    c.set_defaults(func=cmd_proof_consistency)
    v = psub.add_parser("verify", parents=[common],
                        help="check a proof file or an audit report against signed checkpoints, without the log",
                        description="Check a proof (`trustlog proof inclusion|consistency --json`) against signed "
                                    "checkpoints, or an audit report (`trustlog audit --html`, a .html file) against "
                                    "the checkpoint it embeds: its signature by --log-key, every inclusion proof, "
                                    "and that every cited event and every table row match the log records. Exit 0 "
                                    "if it checks out, 1 if not.")
    v.add_argument("proof", help="JSON proof file, or an audit report REPORT.html")
    v.add_argument("--checkpoint", action="append", default=[], metavar="CP.json",
                   help="signed checkpoint (`trustlog checkpoint latest`, JSON or --note); repeat for a consistency proof's old size; "
                        "for a report, optional: the report must be proven against this one")
    v.add_argument("--log-key", required=True, metavar="log.pub", help="the log's public key (DIR/log.pub)")
    v.set_defaults(func=cmd_proof_verify)

    pl = sub.add_parser("log", help="audit the log itself")
    lsub = pl.add_subparsers(dest="logcmd", metavar="ACTION", required=True)
    lv = lsub.add_parser("verify", parents=[common], help="offline audit of the whole log: trusts nothing on disk",
                         description="Re-reads every record (CRC), recomputes the Merkle root against every signed "
                                     "checkpoint, re-verifies every signature in batches and replays every state "
                                     "transition, then compares every derived file (Merkle levels, index, "
                                     "segment indexes) with the records and names each one that differs. Exit 0 "
                                     "if clean, 1 at the first inconsistency or a wrong derived file (reported "
                                     "precisely). Changes nothing.")
    lv.add_argument("--log-key", metavar="log.pub", help="the log's public key, obtained independently "
                                                        "(default: DIR/log.pub)")
    lv.add_argument("--checkpoint", action="append", default=[], metavar="CP.json",
                    help="extra signed checkpoint to check the log against (JSON or signed note)")
    lv.add_argument("--witness", action="append", default=[], metavar="SPEC",
                    help="a place checkpoints were published to (file:DIR, kafka:HOST:PORT/TOPIC, "
                         "http://HOST:PORT,vkey=FILE); every checkpoint there must be consistent with today's "
                         "log, and a witness's must carry its cosignature. Repeatable")
    lv.set_defaults(func=cmd_log_verify)
    lr = lsub.add_parser("repair", parents=[common], help="rebuild damaged derived files from the segments",
                         description="Opens the log for writing: cuts a torn last record or checkpoint frame and "
                                     "rebuilds any index, Merkle level or snapshot reference that does not match "
                                     "the segments, printing one line per repair. Never erases evidence of "
                                     "tampering (a damaged record or a complete checkpoint frame that fails its "
                                     "CRC): it refuses instead. Read-only commands never repair.")
    lr.set_defaults(func=cmd_log_repair)

    ps = sub.add_parser("snapshot", help="state snapshots for fast restart and replay")
    ssub = ps.add_subparsers(dest="snapcmd", metavar="ACTION", required=True)
    sc = ssub.add_parser("create", parents=[common], help="write a signed state snapshot (now, or --at OFFSET)")
    sc.add_argument("--at", type=int, default=None, metavar="OFFSET", help="snapshot the state after OFFSET records")
    sc.set_defaults(func=cmd_snapshot_create)
    ssub.add_parser("list", parents=[common], help="list snapshots").set_defaults(func=cmd_snapshot_list)

    st = sub.add_parser("state", parents=[common], help="a repository's trust state at a past offset or log time")
    st.add_argument("repo", help="repository (GUN)")
    _add_at_option(st)
    st.add_argument("--tags", type=int, default=20, help="show this many most recent tags")
    st.set_defaults(func=cmd_state)

    pr = sub.add_parser("replay", help="verify against the state at a past point")
    rsub = pr.add_subparsers(dest="replaycmd", metavar="ACTION", required=True)
    rv = rsub.add_parser("verify", parents=[common], help="verdicts an image had at a past offset or log time")
    rv.add_argument("requests", nargs="?", help="JSONL of {repo, tag[, digest]} (default: every tag then)")
    _add_at_option(rv)
    rv.add_argument("--out", "-o", help="write verdicts here (default: stdout)")
    rv.add_argument("--ref-time", help="reference time for expiry (ISO 8601; default: now)")
    rv.set_defaults(func=cmd_replay_verify)

    au = sub.add_parser("audit", parents=[common], help="what a key signed, and what falls if it was compromised",
                        description="Everything key K signed (split at --since), the delegations it made after "
                                    "--since and everything signed under them, and which current verdicts change "
                                    "if K is reported compromised since then. Rich tables, --json, or --html FILE "
                                    "(a self-contained report with a timeline).")
    au.add_argument("--key", required=True, metavar="K", help="key id (64 hex) or a key name in --keys")
    au.add_argument("--since", metavar="T", help="compromise point, log time: ISO 8601 or integer ns "
                                                 "(default: the key's whole history)")
    au.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    au.add_argument("--ref-time", help="reference time for expiry in the verdicts (ISO 8601; default: now)")
    au.add_argument("--limit", type=int, default=50, help="rows per table (default 50)")
    au.set_defaults(func=cmd_audit)
