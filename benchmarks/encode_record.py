"""CPU per record of ``records.encode_record`` (what the ingest main thread pays per
accepted event, ``pipeline.py``): the compiled fold's C encoder (``_fastfold.encode_v2``,
the Python encoder deciding only where it answers None) against the Python encoder alone
(``records.encode_record_py``), and the v1 encoding as the floor. ImageSigned records as
the pipeline writes them (one or more ed25519-sized signatures, 64-hex key ids, a Kafka
source), with and without the decoded envelope and event the pipeline passes.

Rounds alternate A/B in the same minutes; each figure is the median over rounds of CPU
time (``time.process_time``) per record. Before timing, every record's bytes are checked
equal on both encoders (the tests check correctness, this only measures).

    .venv/bin/python benchmarks/encode_record.py [--records 20000] [--rounds 7] [--sigs 1] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable

from trustlog.core.encoding import canonical_bytes
from trustlog.core.events import Envelope, Event, ImageSigned, Signature, decode_event
from trustlog.ingest import fold_backend, records
from trustlog.ingest.records import KafkaPosition, LogRecord, encode_record_v1

Item = tuple[LogRecord, Envelope, Event]


def make_records(n: int, sigs: int, seed: int = 1) -> list[Item]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        ev = ImageSigned(f"registry.example.com/team/app-{i % 500:04d}", 1_700_000_000 + i, 1_700_000_000,
                         "targets" if i % 4 else "targets/ci", f"v1.{i}", "sha256:" + rnd.randbytes(32).hex(),
                         rnd.randrange(1, 1 << 31), 4_102_444_800)
        env = Envelope(canonical_bytes(ev), [Signature(rnd.randbytes(32).hex(), rnd.randbytes(64))
                                             for _ in range(sigs)])
        rec = LogRecord(1_764_000_000_000_000_000 + i, env.to_bytes(), KafkaPosition("trust-events", i % 12, i))
        out.append((rec, env, decode_event(env.payload)))
    return out


def cpu_per_record(fn: Callable[[Item], bytes], items: list[Item]) -> float:
    """CPU seconds per record of ``fn`` over ``items`` (one pass)."""
    t = time.process_time()
    for it in items:
        fn(it)
    return (time.process_time() - t) / len(items)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sigs", type=int, default=1, help="signatures per envelope")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    a = ap.parse_args(argv)
    if records._c_encode_v2 is None:
        print(f"the C encoder is not in use (backend {fold_backend.BACKEND}; TRUSTLOG_PUREPYTHON="
              f"{os.environ.get('TRUSTLOG_PUREPYTHON', '')!r}): build the compiled fold "
              f"(./scripts/setup) and run without TRUSTLOG_PUREPYTHON=1", file=sys.stderr)
        return 2
    items = make_records(a.records, a.sigs)
    for rec, env, ev in items:
        want = records.encode_record_py(rec)
        if records.encode_record(rec) != want or records.encode_record(rec, env, ev) != want or want[0] != 0xC1:
            raise SystemExit(f"the encoders disagree on {rec!r}")
    fns: dict[str, Callable[[Item], bytes]] = {
        "c": lambda it: records.encode_record(it[0]),
        "py": lambda it: records.encode_record_py(it[0]),
        "c_hinted": lambda it: records.encode_record(*it),
        "py_hinted": lambda it: records.encode_record_py(*it),
        "v1": lambda it: encode_record_v1(it[0]),
    }
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(a.rounds):
        for k, fn in fns.items():  # alternating: each round measures every encoder in turn
            runs[k].append(cpu_per_record(fn, items))
    us = {k: statistics.median(v) * 1e6 for k, v in runs.items()}
    fig = {"records": a.records, "rounds": a.rounds, "sigs": a.sigs, "loadavg": os.getloadavg()[0],
           **{f"{k}_us": round(v, 3) for k, v in us.items()},
           "speedup": round(us["py"] / us["c"], 1), "speedup_hinted": round(us["py_hinted"] / us["c_hinted"], 1)}
    if a.json:
        print(json.dumps(fig))
    else:
        for k in fns:
            print(f"{k:10s} {us[k]:7.3f} us CPU/record (median of {a.rounds})")
        print(f"speedup {fig['speedup']}x (hinted {fig['speedup_hinted']}x), load average {fig['loadavg']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
