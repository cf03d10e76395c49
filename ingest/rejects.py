"""The rejects log: every input that was not accepted, with the reason, so that nothing
is dropped silently. A :class:`SegmentLog` of canonical :class:`RejectRecord` bodies.

It is part of the tamper-evident record: :attr:`RejectsLog.tree` is the RFC 9162 tree
over the record bodies (kept in memory, rebuilt from the segments on open), and every
signed checkpoint carries its size and root."""
from __future__ import annotations

from typing import TYPE_CHECKING

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from trustlog.core.errors import EncodingError, LogCorruptionError, LogError
from trustlog.core.merkle import MemoryNodeStore, leaf_hash

from .closing import Closing
from .records import KafkaPosition, LogClock, RejectRecord, decode_reject, encode_reject
from .segment_log import SegmentLog

DEFAULT_MAX_RAW_BYTES = 1024 * 1024


if TYPE_CHECKING:
    from trustlog.core.checkpoint import Checkpoint


class RejectsLog(Closing):
    """Append-only log of rejected inputs. Open with :meth:`open`.

    ``raw`` longer than ``max_raw_bytes`` is cut to that length (an oversized input is
    a common reason for a reject, and must not make the reject itself unstorable); the
    detail then says how long it was.
    """

    def __init__(self, log: SegmentLog, clock: LogClock, max_raw_bytes: int) -> None:
        """Use :meth:`open`."""
        self._log = log
        self._clock = clock
        self._max_raw_bytes = max_raw_bytes
        self.tree = MemoryNodeStore(leaf_hash(body) for _, body in log.scan())

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        max_raw_bytes: int = DEFAULT_MAX_RAW_BYTES,
        now_ns: Callable[[], int] = time.time_ns,
        **log_options: Any,
    ) -> RejectsLog:
        """Open the rejects log in ``directory``; ``log_options`` go to :meth:`SegmentLog.open`."""
        if max_raw_bytes < 0:
            raise ValueError(f"max_raw_bytes must be >= 0, not {max_raw_bytes}")
        try:
            log = SegmentLog.open(directory, **log_options)
        except LogCorruptionError as e:
            raise LogCorruptionError(f"{directory}/{e.segment}", e.offset, e.detail) from e
        clock = LogClock(now_ns)
        try:
            if log.durable_offset:
                clock.observe(decode_reject(log.read(log.durable_offset - 1)).log_time)
            return cls(log, clock, max_raw_bytes)
        except EncodingError as e:
            log.close()
            raise LogError(f"{directory} does not hold a rejects log (its last record is not a RejectRecord: {e})") from e
        except LogCorruptionError as e:
            log.close()
            raise LogCorruptionError(f"{directory}/{e.segment}", e.offset, e.detail) from e
        except BaseException:
            log.close()
            raise

    @property
    def log(self) -> SegmentLog:
        return self._log

    def record(
        self,
        reason: str,
        detail: str,
        raw: bytes,
        event_id: str = "",
        source: KafkaPosition | None = None,
        log_time: int | None = None,
    ) -> int:
        """Append a reject and return its offset (durable after :meth:`flush`).

        ``log_time`` defaults to the next log time; if given it must be later than
        every log time already in this log.
        """
        if not reason:
            raise ValueError("a reject needs a reason code")
        if log_time is None:
            log_time = self._clock.next()
        elif log_time <= self._clock.last:
            raise ValueError(
                f"log_time {log_time} is not after the last log time {self._clock.last}; log times must increase"
            )
        else:
            self._clock.observe(log_time)
        if len(raw) > self._max_raw_bytes:
            detail = f"{detail} [raw cut to the first {self._max_raw_bytes} of {len(raw)} bytes]"
            raw = raw[: self._max_raw_bytes]
        rec = RejectRecord(log_time, reason, detail, bytes(raw), event_id, source)
        body = encode_reject(rec)
        offset = self._log.append(body)
        self.tree.append(leaf_hash(body))
        return offset

    def flush(self) -> None:
        self._log.flush()

    def __iter__(self) -> Iterator[RejectRecord]:
        """The durable rejects, oldest first."""
        return (decode_reject(body) for _, body in self._log.scan())

    def counts_by_reason(self) -> dict[str, int]:
        """How many durable rejects there are per reason code (reads the whole log)."""
        return dict(Counter(rec.reason for rec in self))

    def close(self) -> None:
        self._log.close()


def commitment_problem(tree: MemoryNodeStore, cp: Checkpoint) -> str | None:
    """What is wrong with a rejects log whose Merkle ``tree`` should hold what checkpoint
    ``cp`` committed to (``rejects_size``, ``rejects_root``), or None (also when ``cp``
    commits to nothing)."""
    if not cp.rejects_root:
        return None
    if tree.size < cp.rejects_size:
        return (f"holds {tree.size} rejected inputs but the latest signed checkpoint committed to "
                f"{cp.rejects_size}: rejects were removed")
    if tree.root_at(cp.rejects_size) != cp.rejects_root:
        return (f"its first {cp.rejects_size} rejected inputs do not hash to the root the latest signed "
                "checkpoint committed to: the rejects log was replaced or altered")
    return None
