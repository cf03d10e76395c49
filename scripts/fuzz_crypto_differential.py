#!/usr/bin/env python3
"""Differential fuzz of key and signature parsing: compiled vs pure-Python backend.

Feeds structure-aware inputs drawn by hypothesis (``tests/crypto_strategies.py``: mutated DER for RSA keys,
P-256 points in every SEC1 form, Ed25519 points of every order, exponents at and past
the bounds, signatures of every length), each with a few quick byte-level variants
(``--variants``), through both batch verifiers and compares the verdict bytes item by
item. Two more properties are checked on every item:

* a verdict of 1 (valid) only ever comes for a key in its type's one accepted encoding
  (``trustlog.core.keyparse.material`` is not None), so no alias encoding can verify;
* neither backend ever answers 2 (error) on these inputs.

Runs outside CI time: ``.venv/bin/python scripts/fuzz_crypto_differential.py --n 1000000``
prints progress to stderr and, with ``--json``, one JSON line at the end. Exit 0 when
nothing diverged, 1 when something did (the first divergent items are in the JSON), 2 on
bad arguments or a missing compiled backend.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import crypto_strategies as cs  # noqa: E402
from trustlog.core.keyparse import material  # noqa: E402
from trustlog.core.keys import ALG_BY_KEYTYPE  # noqa: E402
from trustlog.verifier.backend import load  # noqa: E402
from trustlog.verifier.crypto_batch import pack_batch  # noqa: E402

_TYPE_OF_ALG = {alg: kt for kt, alg in ALG_BY_KEYTYPE.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="inputs to compare (default 100000)")
    ap.add_argument("--batch", type=int, default=32, help="structured items per hypothesis example (default 32)")
    ap.add_argument("--variants", type=int, default=8,
                    help="inputs per structured item: itself and byte-level variants of it (default 8)")
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed of the first chunk (default 0)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    args = ap.parse_args(argv)
    if args.n < 1 or args.batch < 1 or args.variants < 1:
        print("error: --n, --batch and --variants must be positive", file=sys.stderr)
        return 2
    try:
        c = load("c")
    except ImportError as e:
        print(f"error: the compiled backend is missing ({e}); run scripts/setup", file=sys.stderr)
        return 2
    py = load("py")
    cs.material()  # make the keys before the clock starts
    stats = {"inputs": 0, "valid": 0, "examples": 0, "by_alg": {}}
    divergences: list[dict] = []
    t0 = time.perf_counter()
    last = t0

    def record(item: cs.Item, a: int, b: int, what: str) -> None:
        if len(divergences) < 20:
            alg, key, msg, sig = item
            divergences.append({"what": what, "alg": alg, "key": key.hex(), "msg": msg.hex(), "sig": sig.hex(),
                                "c": a, "py": b})
        stats.setdefault("divergent", 0)
        stats["divergent"] += 1

    def check(items: list[cs.Item], nthreads: int) -> None:
        nonlocal last
        packed = pack_batch(items).args()
        got_c = c.verify_batch(*packed, nthreads=nthreads)
        got_py = py.verify_batch(*packed, nthreads=1)
        for it, a, b in zip(items, got_c, got_py):
            if a != b:
                record(it, a, b, "backends differ")
            elif a == 2:
                record(it, a, b, "error verdict")
            elif a == 1:
                stats["valid"] += 1
                kt = _TYPE_OF_ALG.get(it[0])
                if kt is None or material(kt, it[1]) is None:
                    record(it, a, b, "valid under a key that is not in its accepted encoding")
            stats["by_alg"][it[0]] = stats["by_alg"].get(it[0], 0) + 1
        stats["inputs"] += len(items)
        stats["examples"] += 1
        now = time.perf_counter()
        if now - last > 10:
            last = now
            rate = stats["inputs"] / (now - t0)
            print(f"fuzz: {stats['inputs']:,}/{args.n:,} inputs, {stats['valid']:,} valid, "
                  f"{stats.get('divergent', 0)} divergent, {rate:,.0f}/s", file=sys.stderr, flush=True)

    chunk = 0
    while stats["inputs"] < args.n:
        todo = -(-(args.n - stats["inputs"]) // (args.batch * args.variants))
        per_chunk = min(todo, 500)

        @seed(args.seed + chunk)
        @settings(max_examples=per_chunk, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(items=st.lists(cs.crypto_item(), min_size=args.batch, max_size=args.batch),
               nthreads=st.sampled_from([1, 2]), salt=st.integers(0, 2**32 - 1))
        def run(items: list[cs.Item], nthreads: int, salt: int) -> None:
            rng = random.Random(salt)
            check([v for it in items for v in cs.byte_variants(it, rng, args.variants)], nthreads)

        run()
        chunk += 1
    elapsed = time.perf_counter() - t0
    ok = not divergences
    summary = {"ok": ok, "inputs": stats["inputs"], "valid": stats["valid"], "examples": stats["examples"],
               "divergent": stats.get("divergent", 0), "seconds": round(elapsed, 1),
               "inputs_per_s": round(stats["inputs"] / elapsed), "by_alg": stats["by_alg"],
               "first_divergences": divergences}
    print(f"fuzz: {stats['inputs']:,} inputs in {elapsed:.0f} s, {stats['valid']:,} valid, "
          f"{summary['divergent']} divergent: {'ok' if ok else 'DIVERGENCE'}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
