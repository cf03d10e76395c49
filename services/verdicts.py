"""Verdicts from a log that is being written: a :class:`~trustlog.ingest.view.ViewSet`
that follows the writer and one long-lived :class:`~trustlog.verifier.batch.BatchVerifier`
over its state.

No verdict is cached: each request is evaluated against the state as it stands, after
the last :meth:`VerdictService.follow`. What is cached is only what never changes (the
crypto validity of a (key, message, signature), by content hash) and the compiled form
of each repository, recompiled when its version moves. A ``KeyCompromised`` folded in
therefore changes the very next verdict; there is no TTL that could serve a stale VALID.
Each verdict names the state version (records folded) it was computed at.

:meth:`VerdictService.encoded` (the HTTP fast path) keeps the JSON bytes of the verdicts
it computed, but only for the exact ``(state version, reference second)`` they were
computed at: a verdict is a function of the state, the reference time and the request,
so within that pair a recomputation gives the same bytes. The memo is dropped the moment
a record is folded or the clock's second moves, so a ``KeyCompromised`` folded in still
changes the very next verdict.
"""
from __future__ import annotations

import time

import msgspec
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from trustlog.core.errors import TrustlogError
from trustlog.core.evaluate import Request, Verdict
from trustlog.core.reasons import Code
from trustlog.core.state import Pin
from trustlog.ingest.view import ViewSet
from trustlog.verifier.batch import BatchVerifier


_enc = msgspec.json.Encoder()


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
                 follow_batch: int = 50_000, max_memo: int = 100_000) -> None:
        self.views = ViewSet(log_dir, pins=pins)
        self.verifier = BatchVerifier(self.views.state, ref_time=int(time.time()), engine=engine)
        self.follow_batch = follow_batch
        self.status = FollowStatus(last_follow=time.monotonic())
        self._memo: dict[tuple[str, str, str | None], tuple[str, bytes]] = {}
        self._memo_at: tuple[int, int] = (-1, -1)
        self.max_memo = max_memo
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

    def encoded(self, keys: Sequence[tuple[str, str, str | None]]) -> list[tuple[str, bytes]]:
        """``(code, JSON bytes of the verdict)`` for each ``(repo, tag, digest)``: the
        bytes ``msgspec.json.encode(verdict)`` gives for what :meth:`verify` answers now.
        Verdicts computed at this state version and this second are reused (see the
        module docstring), at most ``max_memo`` of them (0: none); the rest are computed
        in one batch."""
        now = int(time.time())
        at = (self.state_version, now)
        memo = self._memo
        if at != self._memo_at or len(memo) >= self.max_memo:
            memo = self._memo = {}
            self._memo_at = at
        out: list[tuple[str, bytes] | None] = [memo.get(k) for k in keys]
        miss = [i for i, o in enumerate(out) if o is None]
        if miss:
            reqs = [Request(*keys[i]) for i in miss]
            if self.status.failed:
                verdicts = self.verify(reqs)
            else:
                self.verifier.ref_time = now  # the second the memo is keyed by
                verdicts = self.verifier.verify_all(reqs)
            enc = _enc.encode
            for i, v in zip(miss, verdicts, strict=True):
                o = out[i] = (v.code, enc(v))
                memo[keys[i]] = o
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.views.close()
