"""Raw signature-check throughput: compiled batch vs pure Python vs the one-core limit.

    python benchmarks/crypto_raw.py [--n 20000] [--threads 2] [--repeat 3]

Deterministic data (seeded messages of 64 bytes; 64 distinct keys per algorithm, 8 for
RSA, so the per-thread key cache sees realistic reuse). Each figure is the median of
``--repeat`` interleaved rounds, in verifications per second:

* ``c batch``      — ``_cverify.verify_batch`` on ``--threads`` threads (GIL released);
* ``py batch``     — ``crypto_batch.verify_batch`` (the reference twin);
* ``naive loop``   — ``VerifyKey(pk).verify(msg, sig)`` per item (Ed25519 only);
* ``raw limit xT`` — ``raw_verify_loop`` (one signature verified over and over in C) on
  T Python threads at once: the ceiling the batch should approach.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import threading
import time
from collections.abc import Callable

import cryptography
import nacl
import nacl.signing

from trustlog.core.keys import SigningKey
from trustlog.verifier import _cverify, crypto_batch
from trustlog.verifier.crypto_batch import pack_batch


def median_rate(fn: Callable[[], int], repeat: int) -> float:
    rates = []
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def make_items(keytype: str, n: int, nkeys: int = 64) -> list[tuple[int, bytes, bytes, bytes]]:
    rng = random.Random(f"trustlog-bench-{keytype}")
    if keytype == "ed25519":
        keys = [SigningKey.from_seed(f"bench-{i}".encode()) for i in range(nkeys)]
    else:
        keys = [SigningKey.generate(keytype) for _ in range(nkeys)]
    items = []
    for i in range(n):
        k = keys[i % nkeys]
        msg = rng.randbytes(64)
        items.append((k.public_key.alg, k.public_key.public, msg, k.sign(msg)))
    return items


def raw_limit(item: tuple[int, bytes, bytes, bytes], threads: int, count: int) -> float:
    def work() -> None:
        assert _cverify.raw_verify_loop(*item, count) == count

    def run() -> int:
        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return threads * count

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="Ed25519 items (ECDSA/RSA use n/4)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--py", action="store_true", help="also time the pure-Python batch for ECDSA/RSA")
    a = ap.parse_args()
    print(f"python {platform.python_version()}  pynacl {nacl.__version__}  cryptography {cryptography.__version__}  "
          f"cores {os.cpu_count()}  threads {a.threads}  median of {a.repeat} interleaved rounds")

    ed = make_items("ed25519", a.n)
    b = pack_batch(ed).args()

    def naive() -> int:
        for _, pk, msg, sig in ed:
            nacl.signing.VerifyKey(pk).verify(msg, sig)
        return len(ed)

    count = max(1000, a.n // a.threads)
    contenders: list[tuple[str, str, Callable[[], int]]] = [
        ("ed25519", "c batch", lambda: len(_cverify.verify_batch(*b, nthreads=a.threads))),
        ("ed25519", "c batch x1", lambda: len(_cverify.verify_batch(*b, nthreads=1))),
        ("ed25519", "py batch", lambda: len(crypto_batch.verify_batch(*b, nthreads=a.threads))),
        ("ed25519", "naive loop", naive),
        ("ed25519", "raw limit x1", raw_limit(ed[0], 1, count)),
        ("ed25519", f"raw limit x{a.threads}", raw_limit(ed[0], a.threads, count)),
    ]
    for keytype in ("ecdsa-p256", "ecdsa-p256-der", "rsa-pss-sha256"):
        items = make_items(keytype, max(1000, a.n // 4), nkeys=8 if keytype.startswith("rsa") else 64)
        bb = pack_batch(items).args()
        contenders.append((keytype, "c batch", lambda bb=bb: len(_cverify.verify_batch(*bb, nthreads=a.threads))))
        contenders.append((keytype, f"raw limit x{a.threads}", raw_limit(items[0], a.threads, max(500, a.n // 8))))
        if a.py:
            contenders.append((keytype, "py batch", lambda bb=bb: len(crypto_batch.verify_batch(*bb, nthreads=a.threads))))

    # Interleaved rounds, so that load from other processes hits every contender alike.
    rates: list[list[float]] = [[] for _ in contenders]
    for _ in range(a.repeat):
        for i, (_, _, fn) in enumerate(contenders):
            rates[i].append(median_rate(fn, 1))
    for (alg, what, _), r in zip(contenders, rates):
        rate = statistics.median(r)
        print(f"{alg:16} {what:14} {rate:12,.0f} /s   {1e6 / rate:8.1f} us each")


if __name__ == "__main__":
    main()
