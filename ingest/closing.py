"""``with`` for the objects of the log that hold files open (the segment log, the rejects
log, the Merkle store, views, :class:`~trustlog.ingest.pipeline.TrustLog`): leaving the
block closes them, however it is left."""
from __future__ import annotations

from typing import TypeVar

_C = TypeVar("_C", bound="Closing")


class Closing:
    """A base for a class with ``close()``: ``with X(...) as x:`` closes ``x`` at the end."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
