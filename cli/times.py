"""Times on the command line: log times (ns) from ISO 8601 or integers."""
from __future__ import annotations

from datetime import datetime, timezone

from trustlog.core.bounds import INT64_MAX
from trustlog.core.errors import InputError


def parse_time(s: str) -> int:
    """Log time in ns from ISO 8601 or an integer of ns (``ns:`` prefix optional)."""
    s = s.strip()
    if s.startswith("ns:"):
        s = s[3:]
    if s.isdigit():
        return _in_range(s, int(s))
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{s!r} is not a time: use ISO 8601 like 2026-11-01T00:00:00Z or integer ns") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return _in_range(s, int(dt.timestamp() * 1_000_000) * 1000)


def _in_range(s: str, ns: int) -> int:
    if not -(2**63) <= ns <= INT64_MAX:
        raise InputError(f"{s!r} is outside the log times trustlog can represent (int64 ns: years 1677 to 2262)")
    return ns
