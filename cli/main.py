"""The `trustlog` command line: a thin layer over the library.

Exit codes: 0 success; 1 the job ran but found a problem (a rejected event, a failing
verdict when --fail-on-reject is given); 2 bad input or a failure to run.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from collections.abc import Callable

import msgspec

from trustlog.core.errors import InputError, TrustlogError
from trustlog.core.events import (
    TARGETS, Event, ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, RoleRemoved, RootRotated,
    envelope_to_json, sign_event, version_scope,
)
from trustlog.core.keys import KEY_TYPES, SigningKey

from .common import emit, open_log, open_view, version_string
from .render import print_repo, roles_info, tags_info
from .safe import plain
from .times import parse_time as _parse_time
from .ui import UI

from .logdir import add_init_option
from .options import DEFAULT_KEYS, DEFAULT_LOG, add_global_options, common_parent  # noqa: F401 (re-exported)
from .options import add_max_event_bytes_option, positive_int


def _keystore(args: argparse.Namespace):
    from trustlog.ingest.keystore import KeyStore

    return KeyStore(args.keys)


# -- keys ---------------------------------------------------------------------------------

def cmd_key_generate(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.keystore import passphrase_from_env

    ks = _keystore(args)
    passphrase = passphrase_from_env(args.name)
    if args.prompt:
        import getpass
        passphrase = getpass.getpass(f"New passphrase for {args.name!r}: ")
        if getpass.getpass("Repeat passphrase: ") != passphrase:
            raise InputError("the passphrases differ; nothing was written")
    key = ks.generate(args.name, args.type, passphrase)
    info = {"name": args.name, "keytype": key.keytype, "keyid": key.keyid, "encrypted": bool(passphrase),
            "private": str(ks.dir / f"{args.name}.key"), "public": str(ks.dir / f"{args.name}.pub")}
    if args.json:
        emit(info)
    else:
        ui.say("{} key {}: {}\n  private: {} (mode 0600{})\n  public:  {}", info["keytype"], repr(args.name),
               key.keyid, info["private"], ", encrypted" if passphrase else ", NOT encrypted: set TRUSTLOG_PASSPHRASE",
               info["public"])
    return 0


def cmd_key_list(args: argparse.Namespace, ui: UI) -> int:
    ks = _keystore(args)
    rows = []
    for name in ks.names():
        k = ks.public(name)
        rows.append({"name": name, "keytype": k.keytype, "keyid": k.keyid})
    if args.json:
        emit(rows)
    else:
        ui.table(f"keys in {ks.dir}", ["name", "type", "key id"], [[r["name"], r["keytype"], r["keyid"]] for r in rows])
    return 0


def cmd_key_show(args: argparse.Namespace, ui: UI) -> int:
    import base64
    k = _keystore(args).public(args.name)
    info = {"name": args.name, "keytype": k.keytype, "keyid": k.keyid, "public": base64.b64encode(k.public).decode()}
    if args.json:
        emit(info)
    else:
        ui.say("{} {}\n{}", k.keytype, k.keyid, info["public"])
    return 0


# -- authoring events ------------------------------------------------------------------

def _signers(args: argparse.Namespace, names: list[str]) -> list[SigningKey]:
    if not names:
        raise InputError("no signing key given: use --sign-with NAME (repeat for a threshold)")
    ks = _keystore(args)
    return [ks.load(n) for n in names]


def _publics(args: argparse.Namespace, names: list[str]):
    ks = _keystore(args)
    return [ks.public(n) for n in names]


def _expires(days: float) -> int:
    return int(time.time() + days * 86_400)


def _submit(args: argparse.Namespace, ui: UI, make: Callable[[int], Event], signer_names: list[str]) -> int:
    """Sign the event above the last version of its scope (its tag, role or root:
    core.events.version_scope) and append it to the log (or write it to --out as a
    JSONL line for another pipeline to ingest; with no log to read, at the time in ms)."""
    signers = _signers(args, signer_names)
    clock_version = False
    if args.version is not None:
        version = args.version
    elif args.out and not (Path(args.log) / "log").is_dir():
        # a publisher without the log (it talks only to Kafka): versions need only grow per
        # scope (core.events.version_scope), so the time in ms serves
        version, clock_version = time.time_ns() // 1_000_000, True
        if not args.json:
            ui.say("trustlog: no log in {}: signing at version {} (the time in ms; --version to choose)",
                   args.log, version, err=True)
    else:
        with open_log(args, ui, read_only=(Path(args.log) / "log").is_dir(),
                       create=getattr(args, "init", False)) as log:
            repo = log.state.repos.get(args.repo)
            version = (repo.versions.get(version_scope(make(0)), 0) if repo else 0) + 1
    env = sign_event(make(version), signers)
    if args.out:
        with open(args.out, "ab") as f:
            f.write(envelope_to_json(env) + b"\n")
        result = {"event_id": env.event_id, "version": version, "written_to": args.out}
        if clock_version:
            result["version_from"] = "clock"
        code = 0
    else:
        with open_log(args, ui, create=getattr(args, "init", False)) as log:
            r = log.ingest_batch([(env.to_bytes(), None)])
        if r.accepted:
            result = {"event_id": env.event_id, "version": version, "accepted": True}
            code = 0
        else:
            reason, detail = r.last_reject or ("DUPLICATE", "this exact event is already in the log")
            result = {"event_id": env.event_id, "version": version, "accepted": False, "reason": reason,
                      "detail": detail}
            code = 1
    if args.json:
        emit(result)
    elif result.get("accepted", True):
        ui.say("{}: {} v{} event {}…", "appended" if not args.out else "written", args.repo, version,
               env.event_id[:16])
    else:
        ui.say("trustlog: rejected: {}: {}", result["reason"], result["detail"], err=True)
    return code


def cmd_repo_create(args: argparse.Namespace, ui: UI) -> int:
    if args.out and args.version is None:
        args.version = 1  # a repository starts at version 1: --out needs no log
    root = _publics(args, args.root_key)
    targets = _publics(args, args.targets_key)
    return _submit(args, ui, lambda v: RepoCreated(args.repo, v, int(time.time()), root, args.root_threshold,
                                                   targets, args.targets_threshold, _expires(args.expires_days)),
                   args.sign_with or args.root_key)


def cmd_sign(args: argparse.Namespace, ui: UI) -> int:
    if not args.digest.startswith("sha256:"):
        raise InputError(f"{args.digest!r}: give the manifest digest as sha256:<64 hex>")
    return _submit(args, ui, lambda v: ImageSigned(args.repo, v, int(time.time()), args.role, args.tag, args.digest,
                                                   args.size, _expires(args.expires_days)), args.sign_with)


def cmd_signer_add(args: argparse.Namespace, ui: UI) -> int:
    keys = _publics(args, args.key)
    return _submit(args, ui, lambda v: RoleKeysSet(args.repo, v, int(time.time()), f"targets/{args.name}", keys,
                                                   args.threshold, _expires(args.expires_days), args.paths),
                   args.sign_with)


def cmd_signer_remove(args: argparse.Namespace, ui: UI) -> int:
    return _submit(args, ui, lambda v: RoleRemoved(args.repo, v, int(time.time()), f"targets/{args.name}"),
                   args.sign_with)


def cmd_rotate(args: argparse.Namespace, ui: UI) -> int:
    keys = _publics(args, args.new_key)
    if args.role == "root":
        make = lambda v: RootRotated(args.repo, v, int(time.time()), keys, args.threshold, _expires(args.expires_days))  # noqa: E731
    else:
        make = lambda v: RoleKeysSet(args.repo, v, int(time.time()), TARGETS, keys, args.threshold,  # noqa: E731
                                     _expires(args.expires_days), [])
    return _submit(args, ui, make, args.sign_with)


def cmd_compromise(args: argparse.Namespace, ui: UI) -> int:
    since = _parse_time(args.since)
    keyid = args.keyid
    if len(keyid) != 64:
        keyid = _keystore(args).public(keyid).keyid
    return _submit(args, ui, lambda v: KeyCompromised(args.repo, v, int(time.time()), keyid, since, args.note),
                   args.sign_with)


# -- ingest, verify, inspect -------------------------------------------------------------

def cmd_ingest(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.pipeline import BatchResult, read_lines

    path = Path(args.file)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    total_lines = sum(1 for line in open(path, "rb") if line.strip())
    t0 = time.perf_counter()
    with open_log(args, ui, create=args.init) as log, ui.progress(f"ingest {path.name}", total=total_lines) as bar:
        res: BatchResult = log.ingest(read_lines(path), batch_size=args.batch,
                                      progress=lambda r: bar.advance(r.accepted + r.rejected + r.duplicates))
        version = log.state.version
    for n in log.close_notices:
        ui.err.print(f"trustlog: warning: {n}", markup=False)
    out = {"file": str(path), "accepted": res.accepted, "rejected": res.rejected, "duplicates": res.duplicates,
           "rejected_by_reason": dict(res.reasons), "state_version": version,
           "seconds": round(time.perf_counter() - t0, 3)}
    if args.json:
        emit(out)
    else:
        ui.table("ingest", ["accepted", "rejected", "duplicates", "state version"],
                 [[res.accepted, res.rejected, res.duplicates, version]])
        if res.reasons:
            ui.table("rejected events (kept in the rejects log: `trustlog rejects`)", ["reason", "count"],
                     [[k, v] for k, v in res.reasons.most_common()])
    return 1 if res.rejected else 0


def _read_requests(path: Path):
    from trustlog.core.evaluate import Request
    from trustlog.ingest.pipeline import read_lines

    dec = msgspec.json.Decoder(Request)
    for line, where in read_lines(path):
        try:
            yield dec.decode(line)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise InputError(f"{path}:{where.line}: not a request {{\"repo\", \"tag\"[, \"digest\"]}}: {e}") from e


def cmd_verify(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.verifier.batch import BatchVerifier, requests_for_state

    src = Path(args.requests) if args.requests else None
    if src is not None and not src.is_file():
        raise InputError(f"{src}: no such file")
    ref = int(time.time()) if args.ref_time is None else _parse_time(args.ref_time) // 1_000_000_000
    counts: Counter[str] = Counter()
    t0 = time.perf_counter()
    if src is not None:
        reqs = list(_read_requests(src))  # parse everything first: bad input is reported before the log is read
        total = len(reqs)
    # Only the repositories asked about are loaded: one request on a big log is fast.
    with open_view(args, repos={r.repo for r in reqs} if src is not None else None, ui=ui) as log:
        if src is None:
            total = sum(len(r.tags) for r in log.state.repos.values())
            reqs = requests_for_state(log.state)
        verifier = BatchVerifier(log.state, ref_time=ref)
        out = open(args.out, "wb") if args.out else sys.stdout.buffer
        enc = msgspec.json.Encoder()
        try:
            with ui.progress("verify", total=total) as bar:
                for v in verifier.verify(reqs):
                    counts[v.code] += 1
                    out.write(enc.encode(v) + b"\n")
                    bar.advance()
        finally:
            if args.out:
                out.close()
        state_version = log.state.version
    secs = time.perf_counter() - t0
    summary = {"requests": sum(counts.values()), "verdicts": dict(counts.most_common()),
               "state_version": state_version, "reference_time": ref, "seconds": round(secs, 3)}
    if args.json:
        if args.out:
            emit(summary)
    elif args.out:
        ui.table(f"verdicts → {args.out} (state version {state_version})", ["verdict", "count"],
                 [[k, v] for k, v in counts.most_common()])
    else:
        ui.say("{} verdicts: {}", summary["requests"], ", ".join(f"{k}={v}" for k, v in counts.most_common()), err=True)
    failing = sum(v for k, v in counts.items() if k != "VALID")
    return 1 if (args.fail_on_reject and failing) else 0


def cmd_inspect(args: argparse.Namespace, ui: UI) -> int:
    with open_view(args, repos=[args.repo], ui=ui) as log:
        repo = log.state.repos.get(args.repo)
        if repo is None:
            raise InputError(f"no repository {args.repo!r} in {args.log} (at state version {log.state.version})")
        roles = roles_info(repo)
        info = {"repo": repo.name, "version": repo.version, "versions": dict(repo.versions), "origin": repo.origin,
                "roles": roles,
                "tags": len(repo.tags), "deleted_tags": len(repo.deleted_tags),
                "compromised_keys": dict(repo.compromised_keyids), "state_version": log.state.version}
        recent = tags_info(sorted(repo.tags.values(), key=lambda e: e.offset)[-args.tags:] if args.tags else [])
        if args.json:
            info["recent_tags"] = recent
            emit(info)
            return 0
    ui.say("[bold]{}[/bold]  version {}  first root: {}  tags: {}", repo.name, repo.version,
           "pinned" if repo.origin == "pinned" else "trusted on first use", len(repo.tags))
    print_repo(ui, roles, info["compromised_keys"], recent, "most recent tags")
    return 0


def cmd_demo(args: argparse.Namespace, ui: UI) -> int:
    from .demo import run_demo

    s = run_demo(args.dir, args.scale, ui, seed=args.seed)
    if args.json:
        emit(s.to_dict())
        return 0
    ui.say("\n[bold]trustlog demo[/bold] — {} repositories, {} tags, {} events (backend {}); log in {}",
           s.repositories, s.tags, s.events, s.backend, s.directory)
    ui.table("verdicts", ["verdict", "count"], [[k, v] for k, v in s.verdicts.items()])
    ui.table("rejected events (kept in the rejects log with their reason)", ["reason", "count"],
             [[k, v] for k, v in s.rejected_events.items()])
    ui.table("compromised signer key", ["key id", "repositories", "tags losing trust", "tags signed before, kept"],
             [[s.compromised_key[:16] + "…", s.compromised_repositories, s.compromise_affected_tags,
               s.compromise_kept_tags]])
    ui.table("incidents woven in", ["incident", "repository"], [[k, v] for k, v in s.incidents.items()])
    ui.say("timings: ingest {} s, verify {} s; verdicts in {}/verdicts.jsonl", s.seconds["ingest"], s.seconds["verify"],
           s.directory)
    return 0


# -- parser -------------------------------------------------------------------------------

def _authoring_options(a: argparse.ArgumentParser, *, sign_help: str, expires_days: float | None = 365,
                       show_version: bool = True) -> None:
    """The options every command that signs an event shares."""
    a.add_argument("--sign-with", action="append", default=[], metavar="KEY", help=sign_help)
    a.add_argument("--out", metavar="FILE",
                   help="append the signed event to this JSONL file instead of the log (for `trustlog ingest` "
                        "or `trustlog publish` elsewhere)")
    a.add_argument("--version", dest="version", type=int, default=None,
                   help="version to sign: above the last of its tag, role or root (default: the log's last of it + 1; "
                   "with --out and no log, the time in ms)" if show_version
                   else argparse.SUPPRESS)
    if expires_days is not None:
        a.add_argument("--expires-days", type=float, default=expires_days, metavar="DAYS",
                       help="the signed metadata expires after this many days (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    common = common_parent()

    p = _Parser(
        prog="trustlog",
        description="Event-sourced trust metadata for container images: a tamper-evident log of signing and "
                    "key-rotation events, and a batch verifier over it.",
        epilog="Start with `trustlog demo`. Every command takes --help. Exit codes: 0 ok, 1 the job ran and found "
               "a problem, 2 bad input or a failure to run. Reference: docs/REFERENCE.md.",
    )
    p.add_argument("--version", dest="show_version", action="store_true",
                   help="print the version and the verifier backend in use")
    add_global_options(p, suppress=False)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    # key
    pk = sub.add_parser("key", help="generate and list signing keys", description="Signing keys in --keys.")
    ksub = pk.add_subparsers(dest="keycmd", metavar="ACTION", required=True)
    g = ksub.add_parser("generate", parents=[common], help="create a key pair (PKCS#8 PEM, mode 0600)",
                        description="Create a key pair. The private key is encrypted with the passphrase from "
                                    "TRUSTLOG_<NAME>_PASSPHRASE or TRUSTLOG_PASSPHRASE, or one typed at --prompt.")
    g.add_argument("name", help="key name: files NAME.key and NAME.pub in --keys")
    g.add_argument("--type", default="ed25519", choices=KEY_TYPES, help="key type (default %(default)s)")
    g.add_argument("--prompt", action="store_true", help="ask for a passphrase")
    g.set_defaults(func=cmd_key_generate)
    ksub.add_parser("list", parents=[common], help="list keys", description="List the keys in --keys.") \
        .set_defaults(func=cmd_key_list)
    s = ksub.add_parser("show", parents=[common], help="print a public key and its key id",
                        description="Print a public key (base64) and its TUF key id.")
    s.add_argument("name", help="key name in --keys")
    s.set_defaults(func=cmd_key_show)

    def authoring(name: str, help_: str, **kw: Any) -> argparse.ArgumentParser:
        a = sub.add_parser(name, parents=[common], help=help_, description=help_, **kw)
        _authoring_options(a, sign_help="name of a private key to sign with (repeat for a threshold)")
        return a

    # repo create
    pr = sub.add_parser("repo", help="create a repository", description="Repositories (GUNs).")
    rsub = pr.add_subparsers(dest="repocmd", metavar="ACTION", required=True)
    desc = ("Create a repository: its root keys and threshold, its targets keys and threshold, signed by the "
            "root keys. The first root is trusted on first use unless --pins says otherwise.")
    c = rsub.add_parser("create", parents=[common], help="create a repository with root and targets keys",
                        description=desc)
    c.add_argument("repo", help="repository (GUN), e.g. registry.example.com/team/app")
    c.add_argument("--root-key", action="append", required=True, metavar="KEY", help="root key (repeat)")
    c.add_argument("--root-threshold", type=int, default=1, metavar="N",
                   help="root keys needed to sign a root rotation or a targets key change (default 1)")
    c.add_argument("--targets-key", action="append", required=True, metavar="KEY", help="targets key (repeat)")
    c.add_argument("--targets-threshold", type=int, default=1, metavar="N",
                   help="targets keys needed to sign a tag or a delegation (default 1)")
    _authoring_options(c, sign_help="root keys to sign with (default: every --root-key)", expires_days=3650,
                       show_version=False)
    add_init_option(c)
    c.set_defaults(func=cmd_repo_create)

    a = authoring("sign", "sign a tag: bind REPO:TAG to a manifest digest")
    a.add_argument("repo", help="repository (GUN)")
    a.add_argument("tag", help="image tag")
    a.add_argument("digest", help="manifest digest, sha256:<64 hex>")
    a.add_argument("--size", type=int, default=0, help="manifest size in bytes")
    a.add_argument("--role", default="targets", help="targets (default) or targets/NAME for a delegated signer")
    a.set_defaults(func=cmd_sign)

    ps = sub.add_parser("signer", help="add or remove a delegated signer (docker trust signer add/remove)",
                        description="Delegated signers: the roles targets/NAME.")
    ssub = ps.add_subparsers(dest="signercmd", metavar="ACTION", required=True)
    sa = ssub.add_parser("add", parents=[common], help="delegate tag patterns to a signer, signed by targets",
                         description="Delegate the tags matching --paths to a signer (role targets/NAME) with its "
                                     "keys and threshold; signed by the targets keys (--sign-with).")
    sa.add_argument("repo", help="repository (GUN)")
    sa.add_argument("name", help="signer name: the role becomes targets/NAME")
    sa.add_argument("--key", action="append", required=True, metavar="KEY", help="signer public key (repeat)")
    sa.add_argument("--threshold", type=int, default=1, metavar="N",
                    help="signer keys needed to sign one of its tags (default 1)")
    sa.add_argument("--paths", nargs="+", default=["*"], metavar="PATTERN",
                    help="tag patterns the signer may sign (default: *)")
    _authoring_options(sa, sign_help="targets key to sign the delegation with (repeat for a threshold)")
    sa.set_defaults(func=cmd_signer_add)
    sr = ssub.add_parser("remove", parents=[common], help="remove a delegated signer; its tags lose trust",
                         description="Remove the role targets/NAME; the tags it signed lose trust.")
    sr.add_argument("repo", help="repository (GUN)")
    sr.add_argument("name", help="signer name (role targets/NAME)")
    _authoring_options(sr, sign_help="targets key to sign the removal with (repeat for a threshold)",
                       expires_days=None)
    sr.set_defaults(func=cmd_signer_remove)

    ro = authoring("rotate", "rotate root (signed by old AND new root keys) or targets keys (signed by root)")
    ro.add_argument("role", choices=["root", "targets"], help="the role whose keys change")
    ro.add_argument("repo", help="repository (GUN)")
    ro.add_argument("--new-key", action="append", required=True, metavar="KEY",
                    help="a key of the new key set (repeat); generate it first with `trustlog key generate`")
    ro.add_argument("--threshold", type=int, default=1, metavar="N", help="threshold of the new key set (default 1)")
    ro.set_defaults(func=cmd_rotate)

    co = authoring("compromise", "report a key compromised since a log time; what it signed after falls")
    co.add_argument("repo", help="repository (GUN); see `trustlog compromise-everywhere` for all of them")
    co.add_argument("keyid", help="key id (64 hex) or a key name in the key directory")
    co.add_argument("--since", required=True, help="log time: ISO 8601 (2026-11-01T00:00:00Z) or integer ns")
    co.add_argument("--note", default="", help="free text kept in the report")
    co.set_defaults(func=cmd_compromise)

    i = sub.add_parser("ingest", parents=[common], help="append events from a JSONL file to the log",
                       description="Decode, batch-verify, fold and append (fsynced) the envelopes in FILE. Events "
                                   "that fail are kept in the rejects log with their reason (`trustlog rejects`). "
                                   "Exit 1 when any event was rejected.")
    # FILE is optional: kafka_cmds gives this parser a Kafka mode (--kafka) and checks that one is given
    i.add_argument("file", nargs="?", help="JSONL: one envelope {payload, signatures} per line (or --kafka)")
    i.add_argument("--batch", type=positive_int, default=2048, metavar="N", help="events per verified, fsynced batch")
    add_max_event_bytes_option(i)
    add_init_option(i)
    i.set_defaults(func=cmd_ingest)

    v = sub.add_parser("verify", parents=[common], help="verify a JSONL of requests into a JSONL of verdicts",
                       description="One verdict per request {repo, tag[, digest]}, against the log's current "
                                   "state; each verdict names the state version. Exit 1 with --fail-on-reject "
                                   "when a verdict is not VALID.")
    v.add_argument("requests", nargs="?", help="JSONL of {repo, tag[, digest]} (default: every tag in the log)")
    v.add_argument("--out", "-o", metavar="FILE", help="write verdicts here (default: stdout)")
    v.add_argument("--ref-time", help="reference time for expiry (ISO 8601; default: now, fixed for the run)")
    v.add_argument("--fail-on-reject", action="store_true", help="exit 1 if any verdict is not VALID")
    v.set_defaults(func=cmd_verify)

    ins = sub.add_parser("inspect", parents=[common], help="show a repository's trust state",
                         description="A repository's roles, keys, thresholds, compromised keys and latest tags.")
    ins.add_argument("repo", help="repository (GUN)")
    ins.add_argument("--tags", type=int, default=10, metavar="N", help="show this many most recent tags")
    ins.set_defaults(func=cmd_inspect)

    d = sub.add_parser("demo", parents=[common], help="generate a synthetic registry, ingest, verify, summarise",
                       description="The main job on the embedded default (no broker): ~1,000 repositories and "
                                   "20,000 signed tags with incidents woven in; --scale 50 reaches a million tags. "
                                   "The events are deterministic: the same --seed gives the same bytes.")
    d.add_argument("--dir", help="directory for the log (default: a fresh temporary one)")
    d.add_argument("--scale", type=float, default=1.0, help="multiply the registry size (default 1)")
    d.add_argument("--seed", default="trustlog-demo", help="seed of every key and event (default %(default)s)")
    d.set_defaults(func=cmd_demo)

    for register in _registrars():
        register(sub, common)
    _fill_descriptions(p)
    return p


def _fill_descriptions(parser: argparse.ArgumentParser) -> None:
    """A subcommand registered with only ``help=`` gets it as its --help description too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sp in action.choices.items():
                if not sp.description and helps.get(name):
                    text = helps[name]
                    sp.description = text[0].upper() + text[1:] + "."
                _fill_descriptions(sp)


def _registrars() -> list[Callable[[Any, argparse.ArgumentParser], None]]:
    """The modules that add subcommands: each has ``register(sub, common)``."""
    from .audit_cmds import register as audit
    from .completion import register as completion
    from .kafka_cmds import register as kafka
    from .logdir import register as logdir
    from .import_cmds import register as import_
    from .operator_cmds import register as operator
    from .pins_cmds import register as pins
    from .serve_cmds import register as serve
    from .sweep_cmd import register as sweep
    from .witness_cmds import register as witness

    return [serve, kafka, audit, logdir, operator, functools.partial(completion, build_parser=build_parser), witness,
            sweep, pins, import_]


class _Parser(argparse.ArgumentParser):
    """argparse with the usage error as a JSON error object on stdout under --json."""

    json_errors = False

    def error(self, message: str):  # type: ignore[override]
        if _Parser.json_errors:
            _emit_error("UsageError", f"{self.prog}: {message}")
            raise SystemExit(2)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")  # one line, not the usage


def _emit_error(kind: str, message: str, code: int = 2) -> None:
    """An error under --json: ``{"error": {"type", "message", "exit_code"}}`` on stdout."""
    sys.stdout.write(msgspec.json.encode({"error": {"type": kind, "message": message, "exit_code": code}})
                     .decode() + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _Parser.json_errors = "--json" in argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.show_version and args.cmd is None:
        print(version_string())
        return 0
    if args.cmd is None:
        parser.print_help()
        return 2
    json_mode = getattr(args, "json", False)
    ui = UI(json_mode=json_mode)

    def fail(e: BaseException, code: int = 2) -> int:
        msg = str(e) or type(e).__name__
        if json_mode:
            _emit_error(type(e).__name__, msg, code)
        print(f"trustlog: error: {plain(msg)}", file=sys.stderr)
        return code

    try:
        return args.func(args, ui)
    except (TrustlogError, OSError, ValueError) as e:
        return fail(e)
    except KeyboardInterrupt:
        if json_mode:
            _emit_error("KeyboardInterrupt", "interrupted", 130)
        print("trustlog: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
