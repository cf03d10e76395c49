"""Folded trust state per tag: resident memory of the state that `verify`, `audit` and
the compiled chain evaluation read, for each per-tag store, side by side in one run.

    python benchmarks/state_memory.py [--tags 1000000] [--tags-per-repo 20]
                                      [--store all|compact|dict|tagstore] [--shared-signature] [--json]

Builds a state of ``--tags`` signed tags (one targets-signed ImageSigned per tag, with a
real-sized 64-byte signature of its own and its own key-id string, as a state folded
from a log has: decoding makes one per record; ``--shared-signature`` shares one of each
across all tags, as this script did before) by folding events in-process with the
signature check trusted (memory is the question here, not crypto), then measures the
process's resident set size (``/proc/self/statm``). Each store is measured in a fresh
subprocess, so none inherits another's heap:

* ``compact``: the default, ``RepoState.tags`` as trustlog holds it now for a native
  repository: the compiled :class:`trustlog.core._tagstore_c.CTagStore` (C rows, payload
  re-derived; the versions of tag scopes in it, ``TagVersions``);
* ``dict``: the ``dict[str, TagEntry]`` / ``dict[str, int]`` it replaced (the baseline;
  what ``TRUSTLOG_PUREPYTHON=1`` still holds);
* ``tagstore``: the pure-Python :class:`trustlog.core.tagstore.TagStore` (flat columns,
  payload kept), written into in place of the dict (``--store tagstore`` only).

For each: ``python_bytes_per_tag`` after the fold (RSS: the store's C memory included);
``compiled_bytes_per_tag``, what the compiled chain evaluation adds once it has compiled
the state and swept it (its flat arrays, its validity cache, its per-repository
bookkeeping; over a dict store also the references each row keeps to its ``TagEntry``);
``rss_bytes_per_tag``, both together, against the goal of 300 B a tag; a breakdown of
what the C parts say they hold (``parts``: the compact stores' ``nbytes``, the compiled
tables' ``nbytes``, the ``SigCache``'s, each a tag; RSS adds allocator overhead and
the Python objects); and
``floor_bytes_per_tag``: the bytes one tag's trust facts need in a flat record (digest
32, payload hash 32, one signature 64, key index 4, expiry/offset/log time 24, tag name
as stored). The ratio is compact / dict.

With ``--json`` the last line is one JSON object: the figures of the default
``compact`` store at the top level (``tags``, ``rss_bytes_per_tag``, ...,
``ratio_to_goal``), the dict baseline's under ``dict``, and ``compact_ratio`` (compact /
dict, Python state and total).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

from trustlog.core import tagstore_backend
from trustlog.core.events import ImageSigned, RepoCreated, Envelope, Signature, encode_event
from trustlog.core.keys import SigningKey
from trustlog.core.state import TrustState
from trustlog.core.tagstore import TagStore

FAR = 4_102_444_800
GOAL_BYTES_PER_TAG = 300


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trusted(_key, _message: bytes, _signature: bytes) -> bool:
    return True


def build(n_tags: int, per_repo: int, say, store: str = "compact", shared: bool = False) -> tuple[TrustState, float]:
    with tagstore_backend.forced("compact" if store == "compact" else "dict"):
        return _build(n_tags, per_repo, say, store == "tagstore", shared)


def _build(n_tags: int, per_repo: int, say, compact: bool, shared: bool) -> tuple[TrustState, float]:
    root, targets = SigningKey.from_seed(b"mem-root"), SigningKey.from_seed(b"mem-targets")
    state = TrustState()
    sig = bytes(64)
    kid = targets.keyid
    offset = 0
    t0 = time.perf_counter()
    n_repos = max(1, n_tags // per_repo)
    gc.disable()
    try:
        for r in range(n_repos):
            gun = f"registry.example.com/team{r % 1000}/app{r}"
            ev = RepoCreated(gun, 1, 0, [root.public_key], 1, [targets.public_key], 1, FAR)
            state.apply(Envelope(encode_event(ev), [Signature(root.keyid, sig)]), log_time=offset + 1,
                        offset=offset, sigcheck=_trusted, event=ev)
            offset += 1
            if compact:
                state.repos[gun].tags = TagStore()
            for t in range(per_repo):
                digest = f"sha256:{r:032x}{t:032x}"
                ev2 = ImageSigned(gun, t + 2, 0, "targets", f"v{t}.0.{r % 97}", digest, 1234, FAR)
                if not shared:  # one signature and one key-id string per record, as decoding a log makes
                    sig = offset.to_bytes(8, "little") * 8
                    kid = "".join(targets.keyid)
                state.apply(Envelope(encode_event(ev2), [Signature(kid, sig)]), log_time=offset + 1,
                            offset=offset, sigcheck=_trusted, event=ev2)
                offset += 1
            if r and r % max(1, n_repos // 10) == 0:
                say(f"  folded {r * per_repo:,} tags")
    finally:
        gc.enable()
    return state, time.perf_counter() - t0


def measure(args, say) -> dict:
    """Build the state with one store in this process and measure it."""
    gc.collect()
    base = rss_bytes()
    state, secs = build(args.tags, args.tags_per_repo, say, args.store, args.shared_signature)
    tags = sum(len(r.tags) for r in state.repos.values())
    gc.collect()
    after_py = rss_bytes()
    say(f"[{args.store}] Python fold: {tags:,} tags in {secs:.1f} s; RSS +{(after_py - base) / 2**20:,.0f} MiB")

    from trustlog.verifier.batch import BatchVerifier, backend_name

    t0 = time.perf_counter()
    v = BatchVerifier(state, ref_time=FAR - 1, crypto=lambda items: [1] * len(items))
    res = v.sweep()
    counts = res.counts
    sweep_s = time.perf_counter() - t0
    gc.collect()
    after_c = rss_bytes()
    py_b = (after_py - base) / tags
    c_b = (after_c - after_py) / tags
    total = (after_c - base) / tags
    say(f"[{args.store}] compiled chain evaluation ({v.engine}, backend {backend_name()}): "
        f"RSS +{(after_c - after_py) / 2**20:,.0f} MiB in {sweep_s:.1f} s; verdicts {counts}")
    parts = {"store_c": sum(r.tags.nbytes() for r in state.repos.values() if hasattr(r.tags, "c_view")) / tags}
    ev = getattr(v, "_compiled", None)
    if ev is not None:
        parts.update(compiled_tables=ev.ct.nbytes / tags, sigcache=ev.ct.cache.nbytes / tags)
    say(f"[{args.store}] bytes a tag the C parts hold: " + ", ".join(f"{k} {b:,.1f}" for k, b in parts.items()))
    return {"store": args.store, "tags": tags, "rss_bytes_per_tag": round(total, 1),
            "python_bytes_per_tag": round(py_b, 1), "compiled_bytes_per_tag": round(c_b, 1),
            "parts": {k: round(b, 1) for k, b in parts.items()},
            "engine": v.engine, "fold_seconds": round(secs, 1), "sweep_seconds": round(sweep_s, 1),
            "verdicts": counts}


def _child(args, store: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--store", store, "--json", "--tags", str(args.tags),
           "--tags-per-repo", str(args.tags_per_repo)] + (["--shared-signature"] if args.shared_signature else [])
    out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tags", type=int, default=1_000_000, help="signed tags (default 1,000,000; 10M on request)")
    p.add_argument("--tags-per-repo", type=int, default=20)
    p.add_argument("--store", choices=("all", "compact", "dict", "tagstore"), default="all",
                   help="per-tag store to measure (default all: compact and dict, each in its own subprocess)")
    p.add_argument("--shared-signature", action="store_true",
                   help="share one signature and key-id object across all tags (the old, optimistic build)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = p.parse_args()
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    if args.store != "all":
        fig = measure(args, say)
        if args.json:
            print(json.dumps(fig))
        return 0

    floor = 32 + 32 + 64 + 4 + 24 + 8
    comp, base = _child(args, "compact"), _child(args, "dict")
    say(f"{'bytes per tag':<28}{'compact':>10}{'dict (baseline)':>16}{'ratio':>8}")
    for k, label in (("python_bytes_per_tag", "Python state"), ("compiled_bytes_per_tag", "+ compiled evaluation"),
                     ("rss_bytes_per_tag", "= total")):
        say(f"{label:<28}{comp[k]:>10,.0f}{base[k]:>16,.0f}{comp[k] / base[k]:>8.2f}")
    say(f"{comp['tags']:,} tags; goal {GOAL_BYTES_PER_TAG} B a tag (compact {comp['rss_bytes_per_tag'] / GOAL_BYTES_PER_TAG:.2f}x, "
        f"dict {base['rss_bytes_per_tag'] / GOAL_BYTES_PER_TAG:.2f}x); floor ~{floor} B")
    if args.json:
        out = dict(comp)
        out.update(floor_bytes_per_tag=floor, goal_bytes_per_tag=GOAL_BYTES_PER_TAG,
                   ratio_to_goal=round(comp["rss_bytes_per_tag"] / GOAL_BYTES_PER_TAG, 2),
                   shared_signature=args.shared_signature, dict=base,
                   compact_ratio={k: round(comp[k] / base[k], 3) for k in
                                  ("python_bytes_per_tag", "rss_bytes_per_tag")})
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
