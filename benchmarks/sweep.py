"""Registry sweep: tags/s of `trustlog sweep` against a real registry, beside the naive
per-tag loop.

    python benchmarks/sweep.py [--repos 40] [--tags 50] [--repeat 3] [--json]

Starts Debian's docker-registry (distribution 2.8) with the project's script
(scripts/registry/registry.sh, in a fresh runtime directory), pushes ``repos x tags``
images through its HTTP API (one config and one layer blob per repository, a distinct
manifest per tag), signs every tag but a few into a fresh log (and signs a few with a
digest the registry does not serve), then measures, each ``--repeat`` times:

* ``sweep_per_s``: the sweep (`trustlog.services.sweep`): paged listing, manifest HEADs
  on a pool of persistent connections, batch verification;
* ``naive_per_s``: the naive loop an operator writes first: for each tag, a new
  connection, a manifest HEAD, and a one-request verification.

Both must report the same findings (checked). Prints medians and the ratio; with
``--json`` the last line is one JSON object. The registry is stopped at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from pathlib import Path

from trustlog.core.evaluate import Request
from trustlog.core.events import ImageSigned, RepoCreated, sign_event
from trustlog.core.keys import SigningKey
from trustlog.ingest.oci import OCI_MANIFEST, RegistryClient, image_manifest
from trustlog.ingest.pipeline import TrustLog
from trustlog.services.sweep import Sweeper, gun_for, list_tags
from trustlog.verifier.batch import BatchVerifier

FAR = 4_102_444_800
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "registry" / "registry.sh"


def populate(url: str, log_dir: Path, repos: int, tags: int) -> dict:
    """Push the images and sign them; returns what was made."""
    import hashlib
    import json as _json

    client = RegistryClient(url)
    host = urllib.parse.urlsplit(url).netloc
    root, targets = SigningKey.from_seed(b"bench-sweep-root"), SigningKey.from_seed(b"bench-sweep-targets")
    raws: list[bytes] = []
    unsigned = mismatched = 0
    for r in range(repos):
        repo = f"bench/r{r:04d}"
        config = _json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        layer = f"layer of {repo}".encode()
        cdig, ldig = client.push_blob(repo, config), client.push_blob(repo, layer)
        gun = gun_for(host, repo)
        raws.append(sign_event(RepoCreated(gun, 1, 0, [root.public_key], 1, [targets.public_key], 1, FAR),
                               [root]).to_bytes())
        version = 1
        for t in range(tags):
            tag = f"v{t}"
            m = image_manifest(cdig, len(config), ldig, len(layer), {"org.example.tag": tag})
            digest = client.push_manifest(repo, tag, m, OCI_MANIFEST)
            if t == tags - 1 and r % 10 == 0:
                unsigned += 1
                continue  # pushed, never signed
            if t == tags - 2 and r % 10 == 1:
                mismatched += 1
                digest = "sha256:" + hashlib.sha256(b"signed elsewhere" + tag.encode()).hexdigest()
            version += 1
            raws.append(sign_event(ImageSigned(gun, version, 0, "targets", tag, digest, len(m), FAR),
                                   [targets]).to_bytes())
    client.close()
    with TrustLog(log_dir) as log:
        res = log.ingest([(x, None) for x in raws])
        assert res.rejected == 0, res.reasons
    return {"host": host, "tags": repos * tags, "unsigned": unsigned, "mismatched": mismatched}


def run_sweep(url: str, host: str, state, concurrency: int) -> Counter[str]:
    client = RegistryClient(url)
    verifier = BatchVerifier(state)
    items = list(list_tags(client, ["bench/*"]))
    found = Counter(f.code for f in Sweeper(client, verifier.verify_all, gun_prefix=host,
                                            concurrency=concurrency).findings(items))
    client.close()
    return found


def run_naive(url: str, host: str, state) -> Counter[str]:
    found: Counter[str] = Counter()
    lister = RegistryClient(url)
    verifier = BatchVerifier(state)
    for repo in lister.catalog():
        if not repo.startswith("bench/"):
            continue
        for tag in lister.tags(repo):
            c = RegistryClient(url)  # a fresh connection per tag
            s = c.served_digest(repo, tag)
            c.close()
            if s.digest is None:
                found["UNREADABLE"] += 1
                continue
            found[verifier.verify_all([Request(gun_for(host, repo), tag, s.digest)])[0].code] += 1
    lister.close()
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repos", type=int, default=40)
    p.add_argument("--tags", type=int, default=50, help="tags per repository")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = p.parse_args()
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    work = Path(tempfile.mkdtemp(prefix="trustlog-bench-sweep-"))
    env = dict(os.environ, TRUSTLOG_REGISTRY_DIR=str(work / "registry"))
    url = subprocess.run([str(SCRIPT), "start"], env=env, check=True, capture_output=True, text=True).stdout.strip()
    try:
        t0 = time.perf_counter()
        info = populate(url, work / "log", args.repos, args.tags)
        say(f"registry {url}: {info['tags']} tags in {args.repos} repositories pushed and signed "
            f"({time.perf_counter() - t0:.1f} s); {info['unsigned']} unsigned, {info['mismatched']} mismatched")
        with TrustLog(work / "log") as log:
            state = log.state
            sweep_s, naive_s = [], []
            expect = None
            for i in range(args.repeat):
                t = time.perf_counter()
                a = run_sweep(url, info["host"], state, args.concurrency)
                sweep_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                b = run_naive(url, info["host"], state)
                naive_s.append(time.perf_counter() - t)
                if a != b:
                    raise SystemExit(f"sweep and naive loop disagree: {dict(a)} vs {dict(b)}")
                expect = a
                say(f"  run {i + 1}: sweep {info['tags'] / sweep_s[-1]:,.0f} tags/s, "
                    f"naive {info['tags'] / naive_s[-1]:,.0f} tags/s")
        assert expect is not None
        assert expect.get("UNKNOWN_TAG", 0) == info["unsigned"] and expect.get("DIGEST_MISMATCH", 0) == info["mismatched"]
        sweep_per_s = info["tags"] / statistics.median(sweep_s)
        naive_per_s = info["tags"] / statistics.median(naive_s)
        say(f"sweep {sweep_per_s:,.0f} tags/s (median of {args.repeat}), naive per-tag loop {naive_per_s:,.0f} "
            f"tags/s: {sweep_per_s / naive_per_s:.2f}x; findings {dict(expect)}")
        if args.json:
            print(json.dumps({"tags": info["tags"], "repositories": args.repos, "concurrency": args.concurrency,
                              "sweep_per_s": round(sweep_per_s, 1), "naive_per_s": round(naive_per_s, 1),
                              "ratio": round(sweep_per_s / naive_per_s, 2), "findings": dict(expect),
                              "repeat": args.repeat}))
    finally:
        subprocess.run([str(SCRIPT), "clean"], env=env, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
