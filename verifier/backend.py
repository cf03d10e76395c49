"""Which crypto backend the batch verifier uses.

The compiled one (``trustlog.verifier._cverify``) unless ``TRUSTLOG_PUREPYTHON=1`` or it
was not built; then the pure-Python twin (``trustlog.verifier.crypto_batch``), with a
warning that says how to build the compiled one. Both expose the same
``verify_batch(algs, keys, key_offsets, msgs, msg_offsets, sigs, sig_offsets, nthreads=0)``
and must return the same verdict bytes (1 valid, 0 invalid, 2 error).
"""
from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Final

from .crypto_batch import ERROR, INVALID, VALID, PackedBatch, pack_batch

__all__ = [
    "BACKEND", "BACKENDS", "ERROR", "INVALID", "VALID", "PackedBatch",
    "check_signatures", "load", "pack_batch", "verify_batch",
]

BACKENDS: Final = {"c": "trustlog.verifier._cverify", "py": "trustlog.verifier.crypto_batch"}
BUILD_HINT: Final = (
    "build it with `pip install -e .` on a machine with a C compiler (with OpenMP) and the "
    "OpenSSL 3 headers (e.g. apt-get install build-essential libssl-dev)"
)


def load(name: str) -> ModuleType:
    """The backend module ``"c"`` or ``"py"``; raises ImportError if it is unavailable."""
    try:
        return importlib.import_module(BACKENDS[name])
    except KeyError:
        raise ValueError(f"unknown crypto backend {name!r}; use one of {', '.join(BACKENDS)}") from None


def _select() -> tuple[str, ModuleType]:
    if os.environ.get("TRUSTLOG_PUREPYTHON") == "1":
        return "py", load("py")
    try:
        return "c", load("c")
    except ImportError as e:
        warnings.warn(
            f"trustlog's compiled verifier is missing ({e}); using the pure-Python one, "
            f"which gives the same verdicts much more slowly. To get it, {BUILD_HINT}.",
            RuntimeWarning,
            stacklevel=3,
        )
        return "py", load("py")


BACKEND, _impl = _select()
verify_batch = _impl.verify_batch


def check_signatures(items: Sequence[tuple[int, bytes, bytes, bytes]], nthreads: int = 0) -> bytearray:
    """Verdict byte per ``(alg, public_key, message, signature)`` on the selected backend."""
    return verify_batch(*pack_batch(items).args(), nthreads=nthreads)


# Which backend this function runs on: BatchVerifier's compiled engine then checks
# signatures itself, in C, instead of calling back into Python.
check_signatures.backend = BACKEND  # type: ignore[attr-defined]
