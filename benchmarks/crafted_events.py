"""CPU one crafted event can cost ingest, side by side with a normal event.

    python benchmarks/crafted_events.py [--reps 5] [--json]

Each event is ingested alone into a fresh log (:class:`TrustLog`, the selected crypto
backend; ``TRUSTLOG_PUREPYTHON=1`` for the pure-Python one) and the process CPU time of
``ingest_batch`` (every thread) is measured; medians over ``--reps``. Events, each at
most 64 KiB (the default ``--max-event-bytes``):

* ``normal``: an ``ImageSigned`` with one Ed25519 signature, in a repository that
  exists (the baseline);
* ``rsa_huge_e``: a ``RepoCreated`` whose root key is RSA-3072 with a 3071-bit public
  exponent, and as many distinct signatures under it as fit (finding 8 of issue 8:
  every one of them was verified before the fold rejected the event);
* ``rsa_4096_e64``: the most expensive event the bounds still admit: an RSA-4096 root
  key with a 64-bit exponent and as many signatures under it as fit (at most
  ``MAX_SIGNATURES_PER_ENVELOPE``);
* ``rsa_many_keys_e64``: a ``RepoCreated`` naming as many distinct valid RSA-4096 root
  keys (64-bit exponents) as fit, each with one junk signature: the most pre-check
  work one event can still ask for;
* ``junk_sigs_known_key``: an ``ImageSigned`` with as many junk signatures as fit
  under a known RSA-4096 targets key.

Prints a table with the ratio to ``normal`` and, with ``--json``, one JSON line.
The same script runs on an older checkout (it uses only long-standing APIs), which is
how the "before" figures in docs/security/keys.md were taken.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

import der_blocks as der  # noqa: E402  (tests/der_blocks.py: no hypothesis needed)
from trustlog.core.events import (  # noqa: E402
    DEFAULT_MAX_EVENT_BYTES, Envelope, ImageSigned, RepoCreated, Signature, sign_event,
)
from trustlog.core.keys import PublicKey, SigningKey  # noqa: E402
from trustlog.ingest.pipeline import TrustLog  # noqa: E402
import trustlog.verifier  # noqa: E402,F401  (registers the default signature check)

FAR = 4_000_000_000
DIGEST = "sha256:" + "ab" * 32


def _spki(n: int, e: int) -> bytes:
    pkcs1 = der.tlv(0x30, der.der_int(n) + der.der_int(e))
    return der.tlv(0x30, der.tlv(0x30, der.ALG_IDS["rsa+null"]) + der.tlv(0x03, b"\0" + pkcs1))


def _fill(env: Envelope, keyid: str, sig_len: int, limit: int = DEFAULT_MAX_EVENT_BYTES) -> Envelope:
    """``env`` plus as many distinct junk signatures under ``keyid`` as keep it within
    ``limit`` bytes, at most 128 in all (the bound the fold now sets)."""
    sigs = list(env.signatures)
    i = 0
    while len(sigs) < 128:
        trial = Envelope(env.payload, sigs + [Signature(keyid, i.to_bytes(sig_len, "big"))])
        if len(trial.to_bytes()) > limit:
            return Envelope(env.payload, sigs)
        sigs = trial.signatures
        i += 1
    return Envelope(env.payload, sigs)


def _root_event(public: bytes, sig_len: int, repo: str) -> Envelope:
    pk = PublicKey("rsa-pss-sha256", public)
    t = SigningKey.from_seed(b"crafted-targets")
    ev = RepoCreated(repo, 1, 0, [pk], 1, [t.public_key], 1, FAR)
    return _fill(sign_event(ev, []), pk.keyid, sig_len)


def _many_keys(n: int, repo: str, limit: int = DEFAULT_MAX_EVENT_BYTES) -> Envelope:
    """A RepoCreated naming as many distinct valid RSA-4096 root keys (one modulus, 64-bit
    exponents) as fit, each with one junk signature: one verification per key."""
    t = SigningKey.from_seed(b"crafted-targets")
    best = None
    for count in range(1, 65):
        keys = [PublicKey("rsa-pss-sha256", _spki(n, 2**64 - 59 - 2 * i)) for i in range(count)]
        ev = RepoCreated(repo, 1, 0, keys, 1, [t.public_key], 1, FAR)
        env = sign_event(ev, [])
        env = Envelope(env.payload, [Signature(k.keyid, (i + 1).to_bytes(512, "big")) for i, k in enumerate(keys)])
        if len(env.to_bytes()) > limit:
            break
        best = env
    assert best is not None
    return best


def events() -> dict[str, tuple[list[Envelope], Envelope]]:
    """name -> (setup envelopes, the measured envelope)."""
    root = SigningKey.from_seed(b"crafted-root")
    t_ed = SigningKey.from_seed(b"crafted-targets")
    repo = "registry.example.com/crafted/app"
    setup = [sign_event(RepoCreated(repo, 1, 0, [root.public_key], 1, [t_ed.public_key], 1, FAR), [root])]
    normal = sign_event(ImageSigned(repo, 2, 0, "targets", "v1", DIGEST, 1, FAR), [t_ed])
    out: dict[str, tuple[list[Envelope], Envelope]] = {"normal": (setup, normal)}

    k3072 = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    n = k3072.public_key().public_numbers().n
    huge_e = (n >> 1) | 1
    out["rsa_huge_e"] = ([], _root_event(_spki(n, huge_e), 384, "registry.example.com/crafted/huge-e"))
    k4096 = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    n4 = k4096.public_key().public_numbers().n
    out["rsa_4096_e64"] = ([], _root_event(_spki(n4, 2**64 - 59), 512, "registry.example.com/crafted/e64"))

    out["rsa_many_keys_e64"] = ([], _many_keys(n4, "registry.example.com/crafted/many"))

    t_rsa = SigningKey("rsa-pss-sha256", k4096)
    repo2 = "registry.example.com/crafted/rsa"
    setup2 = [sign_event(RepoCreated(repo2, 1, 0, [root.public_key], 1, [t_rsa.public_key], 1, FAR), [root])]
    junk = _fill(sign_event(ImageSigned(repo2, 2, 0, "targets", "v1", DIGEST, 1, FAR), []), t_rsa.keyid, 512)
    out["junk_sigs_known_key"] = (setup2, junk)
    return out


def measure(setup: list[Envelope], env: Envelope, reps: int) -> tuple[float, str]:
    times = []
    outcome = ""
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as d, TrustLog(Path(d) / "log") as tl:
            if setup:
                tl.ingest_batch([(e.to_bytes(), None) for e in setup])
            raw = env.to_bytes()
            t0 = time.process_time()
            res = tl.ingest_batch([(raw, None)])
            times.append(time.process_time() - t0)
            reject = getattr(res, "last_reject", None)
            if isinstance(reject, tuple):
                reject = reject[0]
            outcome = "accepted" if res.accepted else f"rejected {getattr(reject, 'reason', reject) or ''}".strip()
    return statistics.median(times), outcome


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions per event (median; default 5)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    args = ap.parse_args(argv)
    from trustlog.verifier.backend import BACKEND

    evs = events()
    rows = {}
    for name, (setup, env) in evs.items():
        cpu, outcome = measure(setup, env, args.reps)
        rows[name] = {"cpu_ms": round(cpu * 1000, 2), "bytes": len(env.to_bytes()), "signatures": len(env.signatures),
                      "outcome": outcome}
    base = rows["normal"]["cpu_ms"] or 0.01
    print(f"backend {BACKEND}, python {platform.python_version()}, median of {args.reps}")
    print(f"{'event':22} {'bytes':>7} {'sigs':>5} {'cpu ms':>9} {'x normal':>9}  outcome")
    for name, r in rows.items():
        r["ratio"] = round(r["cpu_ms"] / base, 1)
        print(f"{name:22} {r['bytes']:>7} {r['signatures']:>5} {r['cpu_ms']:>9.2f} {r['ratio']:>9.1f}  {r['outcome']}")
    if args.json:
        print(json.dumps({"backend": BACKEND, "reps": args.reps, "events": rows,
                          "cpus": os.cpu_count()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
