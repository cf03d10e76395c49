"""Folded trust state per tag: resident memory of the state that `verify`, `audit` and
the compiled chain evaluation read, beside the floor a compact record could reach.

    python benchmarks/state_memory.py [--tags 1000000] [--tags-per-repo 20] [--json]

Builds a state of ``--tags`` signed tags (one targets-signed ImageSigned per tag, with a
real-sized 64-byte signature) by folding events in-process with the signature check
trusted (memory is the question here, not crypto), then measures the process's resident
set size (``/proc/self/statm``):

* ``python_bytes_per_tag``: after the Python fold (the reference ``TrustState``);
* ``compiled_bytes_per_tag``: what the compiled chain evaluation adds once it has
  compiled the state and swept it (its flat arrays and validity cache);
* ``rss_bytes_per_tag``: both together, against the goal of 300 B a tag;
* ``floor_bytes_per_tag``: the bytes one tag's trust facts need in a flat record (digest
  32, payload hash 32, one signature 64, key index 4, expiry/offset/log time 24, tag name
  as stored), the baseline a compact state can approach.

With ``--json`` the last line is one JSON object with these figures.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

from trustlog.core.events import ImageSigned, RepoCreated, Envelope, Signature, encode_event
from trustlog.core.keys import SigningKey
from trustlog.core.state import TrustState

FAR = 4_102_444_800
GOAL_BYTES_PER_TAG = 300


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trusted(_key, _message: bytes, _signature: bytes) -> bool:
    return True


def build(n_tags: int, per_repo: int, say) -> tuple[TrustState, float]:
    root, targets = SigningKey.from_seed(b"mem-root"), SigningKey.from_seed(b"mem-targets")
    state = TrustState()
    sig = bytes(64)
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
            for t in range(per_repo):
                digest = f"sha256:{r:032x}{t:032x}"
                ev2 = ImageSigned(gun, t + 2, 0, "targets", f"v{t}.0.{r % 97}", digest, 1234, FAR)
                state.apply(Envelope(encode_event(ev2), [Signature(targets.keyid, sig)]), log_time=offset + 1,
                            offset=offset, sigcheck=_trusted, event=ev2)
                offset += 1
            if r and r % max(1, n_repos // 10) == 0:
                say(f"  folded {r * per_repo:,} tags")
    finally:
        gc.enable()
    return state, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tags", type=int, default=1_000_000, help="signed tags (default 1,000,000; 10M on request)")
    p.add_argument("--tags-per-repo", type=int, default=20)
    p.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = p.parse_args()
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    gc.collect()
    base = rss_bytes()
    state, secs = build(args.tags, args.tags_per_repo, say)
    tags = sum(len(r.tags) for r in state.repos.values())
    gc.collect()
    after_py = rss_bytes()
    say(f"Python fold: {tags:,} tags in {secs:.1f} s; RSS +{(after_py - base) / 2**20:,.0f} MiB")

    from trustlog.verifier.batch import BatchVerifier, backend_name

    v = BatchVerifier(state, ref_time=FAR - 1, crypto=lambda items: [1] * len(items))
    res = v.sweep()
    counts = res.counts
    gc.collect()
    after_c = rss_bytes()
    engine = v.engine
    py_b = (after_py - base) / tags
    c_b = (after_c - after_py) / tags
    total = (after_c - base) / tags
    floor = 32 + 32 + 64 + 4 + 24 + 8
    say(f"compiled chain evaluation ({engine}, backend {backend_name()}): RSS +{(after_c - after_py) / 2**20:,.0f} MiB; "
        f"verdicts {counts}")
    say(f"per tag: Python {py_b:,.0f} B + compiled {c_b:,.0f} B = {total:,.0f} B "
        f"(goal {GOAL_BYTES_PER_TAG} B: {total / GOAL_BYTES_PER_TAG:.1f}x over; floor ~{floor} B: {total / floor:.1f}x)")
    if args.json:
        print(json.dumps({"tags": tags, "rss_bytes_per_tag": round(total, 1), "python_bytes_per_tag": round(py_b, 1),
                          "compiled_bytes_per_tag": round(c_b, 1), "floor_bytes_per_tag": floor,
                          "goal_bytes_per_tag": GOAL_BYTES_PER_TAG, "ratio_to_goal": round(total / GOAL_BYTES_PER_TAG, 2),
                          "engine": engine, "fold_seconds": round(secs, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
