"""The default batch signature check, registered from above.

``ingest`` needs a signature check but must not import ``verifier`` (the layers point
one way: docs/ARCHITECTURE.md). So the check is injected: callers pass ``crypto=``, or
the verifier package registers its backend's check here when it is imported (which
``trustlog.cli`` and ``trustlog.services`` do on import). This module only holds the
registration; it performs no check and no I/O.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from .errors import TrustlogError

CryptoFn = Callable[[Sequence[tuple[int, bytes, bytes, bytes]]], Sequence[int]]

_factory: Callable[[], CryptoFn] | None = None


class NoCryptoError(TrustlogError):
    """No signature check was passed and none is registered."""


def register_default_crypto(factory: Callable[[], CryptoFn]) -> None:
    """Make ``factory()`` the check used when a caller passes no ``crypto``."""
    global _factory
    _factory = factory


def default_crypto() -> CryptoFn:
    """The registered default check; fails closed (an error, never a pass) when none is."""
    if _factory is None:
        raise NoCryptoError("no signature check is registered: import trustlog.verifier "
                            "(or trustlog.cli / trustlog.services) first, or pass crypto=")
    return _factory()
