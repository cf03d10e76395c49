"""Verdicts from a log that is being written: a :class:`~trustlog.ingest.view.ViewSet`
that follows the writer and one long-lived :class:`~trustlog.verifier.batch.BatchVerifier`
over its state.

No verdict is cached: each request is evaluated against the state as it stands, after
the last :meth:`VerdictService.follow`. What is cached is only what never changes (the
crypto validity of a (key, message, signature), by content hash) and the compiled form
of each repository, recompiled when its version moves. A ``KeyCompromised`` folded in
therefore changes the very next verdict; there is no TTL that could serve a stale VALID.
Each verdict names the state version (records folded) it was computed at.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from trustlog.core.errors import TrustlogError
from trustlog.core.evaluate import Request, Verdict
from trustlog.core.reasons import Code
from trustlog.core.state import Pin
from trustlog.ingest.view import ViewSet
from trustlog.verifier.batch import BatchVerifier


@dataclass
class FollowStatus:
    """Where the service stands against the log."""

    caught_up: bool = False          # the last follow read everything on disk
    failed: str | None = None        # why following stopped (the service then refuses to answer)
    last_follow: float = 0.0         # time.monotonic() of the last follow
    lag_bytes: int = 0               # bytes on disk not yet folded, at the last follow
    folded: int = 0                  # records folded since start


class VerdictService:
    """Answers verification requests from a log directory that another process writes."""

    def __init__(self, log_dir: str, *, pins: Iterable[Pin] | None = None, engine: str | None = None,
                 follow_batch: int = 50_000) -> None:
        self.views = ViewSet(log_dir, pins=pins)
        self.verifier = BatchVerifier(self.views.state, ref_time=int(time.time()), engine=engine)
        self.follow_batch = follow_batch
        self.status = FollowStatus(last_follow=time.monotonic())
        self.follow()

    @property
    def state_version(self) -> int:
        return self.views.version

    def follow(self) -> int:
        """Fold up to ``follow_batch`` records the writer appended; returns how many.
        After a failure the service stays failed (fail closed: it answers 503, never
        from a state that stopped following the log)."""
        if self.status.failed:
            return 0
        try:
            n = self.views.poll(self.follow_batch)
            lag = self.views.lag_bytes
        except (TrustlogError, OSError) as e:
            self.status.failed = str(e)
            self.status.caught_up = False
            return 0
        self.status.folded += n
        self.status.lag_bytes = lag
        # Caught up: this follow read every complete record that was on disk (bytes of a
        # write still in progress may remain, and show in lag_bytes).
        self.status.caught_up = n < self.follow_batch
        self.status.last_follow = time.monotonic()
        return n

    def verify(self, requests: Sequence[Request]) -> list[Verdict]:
        """One verdict per request, against the state now, at the current time. Any
        fault inside verification is an ERROR verdict (the verifier fails closed)."""
        if self.status.failed:
            return [Verdict(r.repo, r.tag, Code.ERROR.value, f"the server stopped following the log: "
                            f"{self.status.failed}", self.state_version) for r in requests]
        self.verifier.ref_time = int(time.time())
        return self.verifier.verify_all(requests)

    def close(self) -> None:
        self.views.close()
