"""`trustlog sweep`: verify every tag a registry serves against the trust state."""
from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse

import msgspec

from trustlog.core.errors import InputError

from .common import open_log
from .times import parse_time
from .ui import UI

_DESCRIPTION = """\
Walk a registry through the OCI distribution API (/v2/_catalog, /v2/<name>/tags/list,
a manifest HEAD per tag for the Docker-Content-Digest it serves, with pagination) and
verify each tag's served digest against the trust state in --log. Reports unsigned tags
(served, never signed), mismatches (signed, but the registry serves another digest: the
attack Docker Content Trust exists to stop), untrusted tags (compromised, expired, ...)
and tags the registry's answers did not let it check. Exit 1 when any tag fails."""


def cmd_sweep(args: argparse.Namespace, ui: UI) -> int:
    from trustlog.ingest.oci import RegistryClient
    from trustlog.services.sweep import Finding, Sweeper, SweepSummary, list_tags
    from trustlog.verifier.batch import BatchVerifier

    if args.concurrency < 1 or args.concurrency > 256:
        raise InputError(f"--concurrency {args.concurrency}: give 1 to 256 parallel requests")
    prefix = args.gun_prefix if args.gun_prefix is not None else urllib.parse.urlsplit(args.registry).netloc
    client = RegistryClient(args.registry, username=args.username,
                            password=os.environ.get("TRUSTLOG_REGISTRY_PASSWORD") if args.username else None,
                            ca_file=args.ca_file)
    ref = int(time.time()) if args.ref_time is None else parse_time(args.ref_time) // 1_000_000_000
    t0 = time.perf_counter()
    summary = SweepSummary(registry=client.url, gun_prefix=prefix)
    enc = msgspec.json.Encoder()
    failures: list[Finding] = []
    with open_log(args, ui) as log:
        client.check()
        items = list(list_tags(client, args.repo))  # the listing is paged and cheap; HEADs are the work
        summary.repositories = len({r for r, _ in items})
        verifier = BatchVerifier(log.state, ref_time=ref)
        summary.state_version = log.state.version
        out = open(args.out, "wb") if args.out else None
        try:
            with ui.progress(f"sweep {client.host}", total=len(items)) as bar:
                sweeper = Sweeper(client, verifier.verify_all, gun_prefix=prefix, concurrency=args.concurrency)
                for f in sweeper.findings(items, progress=bar.advance):
                    summary.tags += 1
                    summary.codes[f.code] += 1
                    summary.kinds[f.kind] += 1
                    if out is not None:
                        out.write(enc.encode(f) + b"\n")
                    if not f.ok and len(failures) < args.show:
                        failures.append(f)
        finally:
            if out is not None:
                out.close()
            client.close()
    summary.seconds = time.perf_counter() - t0
    if args.json:
        d = summary.to_dict()
        d["reference_time"] = ref
        if not args.out:
            d["failures"] = [msgspec.to_builtins(f) for f in failures]
        sys.stdout.write(msgspec.json.encode(d).decode() + "\n")
    else:
        ui.table(f"sweep of {client.url} (GUN prefix {prefix or '(none)'}; state version {summary.state_version})",
                 ["result", "tags"], [[k, v] for k, v in summary.kinds.most_common()])
        if failures:
            ui.table(f"failing tags (first {len(failures)} of {summary.failing})",
                     ["repository", "tag", "verdict", "served digest", "reason"],
                     [[f.repo, f.tag, f.code, (f.served_digest or "-")[:19] + "…", f.reason]
                      for f in failures])
        ui.info(f"{summary.tags} tags in {summary.repositories} repositories, {summary.failing} failing, "
                f"{summary.seconds:.1f} s" + (f"; findings in {args.out}" if args.out else ""))
    return 1 if summary.failing else 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sw = sub.add_parser("sweep", parents=[common], help="verify every tag a registry serves (OCI distribution API)",
                        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("--registry", required=True, metavar="URL",
                    help="the registry's base URL, e.g. https://registry.example.com or http://127.0.0.1:5000")
    sw.add_argument("--gun-prefix", default=None, metavar="PREFIX",
                    help="GUN prefix tags are signed under (default: the registry URL's host[:port], as Docker "
                         "Content Trust names them); '' for none")
    sw.add_argument("--repo", action="append", default=[], metavar="PATTERN",
                    help="only registry repositories matching this shell pattern (repeat; default: all)")
    sw.add_argument("--concurrency", type=int, default=16, help="parallel manifest HEAD requests (default 16)")
    sw.add_argument("--out", "-o", help="write one JSON finding per tag to this JSONL file")
    sw.add_argument("--show", type=int, default=20, help="list this many failing tags (default 20)")
    sw.add_argument("--ref-time", help="reference time for expiry (ISO 8601; default: now, fixed for the run)")
    sw.add_argument("--username", help="registry user (password from TRUSTLOG_REGISTRY_PASSWORD)")
    sw.add_argument("--ca-file", help="CA bundle for an https registry")
    sw.set_defaults(func=cmd_sweep)
