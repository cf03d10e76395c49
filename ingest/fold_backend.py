"""Which trusted fold replay uses: the compiled one or its pure-Python twin.

The compiled fold (``trustlog.ingest._fastfold``, built by setup.py) reads records in C
and applies ``ImageSigned`` on the fast path; :class:`trustlog.ingest.replay.TrustedFold`
is the reference it is checked against (``tests/test_compiled_fold.py``). As for the
verifier (``trustlog.verifier.backend``): the compiled one unless ``TRUSTLOG_PUREPYTHON=1``
or it was not built; then the Python one, with a warning that says how to build it.

It lives in ``ingest`` (not beside the verifier) because it is part of reading the log:
it needs the state and the record layout, never the verifier, and ``ingest`` must not
import ``verifier``; so no injection hook is needed.
"""
from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType
from typing import Final

MODULE: Final = "trustlog.ingest._fastfold"
BUILD_HINT: Final = ("build it with `pip install -e .` on a machine with a C compiler, Cython and the OpenSSL 3 "
                     "headers (e.g. apt-get install build-essential libssl-dev)")


def load() -> ModuleType:
    """The compiled fold's module; raises ImportError if it was not built."""
    return importlib.import_module(MODULE)


def _select() -> tuple[str, ModuleType | None]:
    if os.environ.get("TRUSTLOG_PUREPYTHON") == "1":
        return "py", None
    try:
        return "c", load()
    except ImportError as e:
        warnings.warn(f"trustlog's compiled replay fold is missing ({e}); using the pure-Python one, which "
                      f"gives the same states more slowly. To get it, {BUILD_HINT}.", RuntimeWarning, stacklevel=3)
        return "py", None


BACKEND, compiled = _select()


def logscan() -> ModuleType | None:
    """The compiled checks of a log's derived files on open (``trustlog.ingest._logscan``)
    when the compiled fold is in use and they were built, else None: then their
    pure-Python twins, which give the same answers (``tests/test_logscan.py``)."""
    if BACKEND != "c":
        return None
    try:
        return importlib.import_module("trustlog.ingest._logscan")
    except ImportError:  # a build that predates it: the twins are used
        return None
