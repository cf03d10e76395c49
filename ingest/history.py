"""The trust state as it was: ``state_at`` over a log directory or an open ``TrustLog``.

It sits here rather than in ``ingest/replay.py`` because it opens a ``TrustLog``, and
the pipeline builds on replay (the dependency points one way)."""
from __future__ import annotations

import os

from trustlog.core.state import TrustState

from .pipeline import TrustLog


def state_at(trustlog_dir: str | os.PathLike[str] | TrustLog, offset: int | None = None,
             log_time: int | None = None, **open_kw) -> TrustState:
    """The trust state as it was after ``offset`` records, or at log time ``log_time``
    (ns; every record appended at or before it). With both, the earlier wins; with
    neither, the current state. Accepts a log directory or an open ``TrustLog``."""
    if isinstance(trustlog_dir, TrustLog):
        return trustlog_dir.state_at(offset=offset, log_time=log_time)
    with TrustLog(trustlog_dir, **open_kw) as tl:
        return tl.state_at(offset=offset, log_time=log_time)
