"""The Kafka ingest worker as a process, with faults injected on its seams (tests only).

    python tests/fault_worker.py --fault-fsync-after N [worker options ...]

runs ``python -m trustlog.cli.kafka_worker [worker options ...]`` with an fsync that
works N times (counted over every log of the process) and then fails with EIO, so a
test sees what a real disk failure does to a real worker process: exit status 3, and
nothing of the failed batch committed. The library has no fault switches of its own;
this script hands the fault to the worker through its ``fsync_fn`` seam.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable

from trustlog.cli.kafka_worker import main


def failing_fsync(after: int) -> Callable[[int], None]:
    """An fsync that works ``after`` times, then raises ``OSError(EIO)`` every time."""
    calls = [0]

    def fsync(fd: int) -> None:
        calls[0] += 1
        if calls[0] > after:
            raise OSError(errno.EIO, f"injected fsync failure (--fault-fsync-after {after})")
        os.fsync(fd)

    return fsync


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tests/fault_worker.py", allow_abbrev=False, add_help=False)
    p.add_argument("--fault-fsync-after", type=int, metavar="N", help="fsync fails with EIO after N calls")
    faults, worker_argv = p.parse_known_args(argv)
    hooks = {}
    if faults.fault_fsync_after is not None:
        hooks["fsync_fn"] = failing_fsync(faults.fault_fsync_after)
    return main(worker_argv, **hooks)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
