"""The raw signature-verification limit the benchmarks measure against: one valid
signature checked over and over in C (``_cverify.raw_verify_loop``) on N threads at
once, no Python between checks. Shared by ``verify.py`` and ``ingest.py``."""
from __future__ import annotations

import threading
import time

from trustlog.verifier import _cverify


def raw_loop_rate(item: tuple[int, bytes, bytes, bytes], threads: int, count: int) -> float:
    """Signatures per second when ``threads`` threads each check ``item`` (alg code,
    public key, message, signature) ``count`` times; raises if it does not verify."""
    def work() -> None:
        if _cverify.raw_verify_loop(*item, count) != count:
            raise RuntimeError(f"a signature of algorithm {item[0]} did not verify in the raw loop")

    ts = [threading.Thread(target=work) for _ in range(threads)]
    t = time.perf_counter()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return threads * count / (time.perf_counter() - t)
