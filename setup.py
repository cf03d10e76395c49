"""Build of the compiled batch verifier only; metadata lives in pyproject.toml.

``trustlog.verifier._cverify`` needs a C compiler with OpenMP, the OpenSSL 3 headers
(libssl-dev / openssl-devel) and Cython. Without them the install still succeeds and
trustlog runs on its pure-Python verifier (``trustlog.verifier.crypto_batch``), with a
warning — unless ``TRUSTLOG_REQUIRE_EXTENSION=1`` (set in CI), which makes a failed
build fail the install. An extension whose source no longer builds (a Cython error in
a change) drops only itself, and its earlier in-place build is removed rather than
left to be imported with the old code.
"""
from __future__ import annotations

import importlib
import os
import sys
import sysconfig
import types
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRE = os.environ.get("TRUSTLOG_REQUIRE_EXTENSION") == "1"
HOW = (
    "trustlog will use its pure-Python verifier (correct, much slower). To build the "
    "compiled one install a C compiler with OpenMP and the OpenSSL 3 headers "
    "(e.g. apt-get install build-essential libssl-dev) and rerun `pip install -e .`."
)


def _warn(what: str, err: BaseException) -> None:
    print(f"WARNING: {what}: {err}\n{HOW}", file=sys.stderr)


def _drop_stale_build(source: str) -> None:
    """Remove the in-place build of the extension made from ``source`` (its .pyx or .c) when
    that source no longer builds: left in place, the earlier build would be imported
    with the old code and every test would run against it. Without it its twin is used,
    with the warning above, and a test that needs it fails under CI=true."""
    stale = HERE / (source.rsplit(".", 1)[0] + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    if stale.is_file():
        stale.unlink()
        print(f"WARNING: removed {stale.relative_to(HERE)}, the build of {source} before this change",
              file=sys.stderr)


class optional_build_ext(build_ext):
    """build_ext that turns a failed build into a warning unless REQUIRE is set."""

    _failed = False

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # a missing compiler surfaces as several distutils errors
            if REQUIRE:
                raise
            if not self._failed:  # else already reported by build_extension
                _warn("could not build trustlog's compiled verifier", e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:
            if REQUIRE:
                raise
            self._failed = True
            _warn(f"could not build {ext.name}", e)
            _drop_stale_build(ext.sources[0])   # the generated .c: the build sits beside it all the same


HERE = Path(__file__).resolve().parent
# The parts _cverify.pyx includes (one job each); _codes.pxi is generated below.
PXI = ["_codes", "_blake2b_core", "_blake2b", "_sigcache", "_containers", "_structs", "_rules", "_compiled_trust"]


def _write_codes_pxi() -> None:
    """Write verifier/_codes.pxi from the verdict table, core/verdict_codes.py.

    The table is loaded from the source tree under a private package name (trustlog is
    not installed yet, and core/__init__.py is not run): it needs only the standard
    library and core/reasons.py. The file is rewritten only when its text changes, so
    an unchanged table does not make Cython rebuild the extension."""
    pkg = types.ModuleType("_trustlog_build_core")
    pkg.__path__ = [str(HERE / "core")]
    sys.modules[pkg.__name__] = pkg
    try:
        table = importlib.import_module(f"{pkg.__name__}.verdict_codes")
        text = table.pxi_source()
    finally:
        for name in [m for m in sys.modules if m == pkg.__name__ or m.startswith(pkg.__name__ + ".")]:
            del sys.modules[name]
    out = HERE / "verifier" / "_codes.pxi"
    if not out.is_file() or out.read_text() != text:
        out.write_text(text)


def _extensions() -> list[Extension]:
    try:
        _write_codes_pxi()
    except Exception as e:  # a broken table: no extension (its numbers would be unknown)
        if REQUIRE:
            raise
        _warn("could not generate verifier/_codes.pxi from core/verdict_codes.py", e)
        return []
    ext = Extension(
        "trustlog.verifier._cverify",
        ["verifier/_cverify.pyx"],
        depends=[f"verifier/{name}.pxi" for name in PXI],
        libraries=["crypto"],
        # EC_KEY / RSA are the calls pyca/cryptography itself makes; keep them quiet.
        define_macros=[("OPENSSL_SUPPRESS_DEPRECATED", None)],
        extra_compile_args=["-O3", "-fopenmp"],
        extra_link_args=["-fopenmp"],
    )
    # The compiled trusted fold (ingest/replay.py's TrustedFold with the record reading
    # in C); OpenSSL for the leaf hash. Its pure-Python twin is used when it is missing.
    fold = Extension(
        "trustlog.ingest._fastfold",
        ["ingest/_fastfold.pyx"],
        depends=["ingest/_fastfold.h", "ingest/_record_v2.h", "ingest/_record_v2.pxi", "ingest/_ingestfold.pxi",
                 "ingest/_precheck.pxi", "verifier/_blake2b_core.pxi"],
        include_dirs=["ingest"],
        libraries=["crypto"],
        define_macros=[("OPENSSL_SUPPRESS_DEPRECATED", None)],
        extra_compile_args=["-O3"],
    )
    # The compiled compact tag store (core.tagstore_backend selects it for RepoState.tags):
    # no I/O and no libraries, only C; its pure-Python twin is core.tagstore.TagStore / a dict.
    store = Extension(
        "trustlog.core._tagstore_c",
        ["core/_tagstore_c.pyx"],
        extra_compile_args=["-O3"],
    )
    # The checks of a log's derived files on open, in C (their Python twins beside their
    # callers in segment_log.py and logindex.py); CRC-32C from _fastfold.h.
    scan = Extension(
        "trustlog.ingest._logscan",
        ["ingest/_logscan.pyx"],
        depends=["ingest/_fastfold.h"],
        include_dirs=["ingest"],
        libraries=["crypto"],
        define_macros=[("OPENSSL_SUPPRESS_DEPRECATED", None)],
        extra_compile_args=["-O3"],
    )
    # The records of fetched Kafka batches, read in C (ingest/kafka_records.py puts it
    # under kafka-python's fetcher; kafka-python's own loop is its twin and its fallback).
    kafka_records = Extension(
        "trustlog.ingest._kafkarecords",
        ["ingest/_kafkarecords.pyx"],
        extra_compile_args=["-O3"],
    )
    try:
        from Cython.Build import cythonize
    except ImportError as e:
        if REQUIRE:
            raise
        _warn("Cython is not installed", e)
        return []
    built = []
    for extension in (ext, fold, store, scan, kafka_records):  # one at a time: one that fails drops only itself
        source = extension.sources[0]
        try:
            built += cythonize(
                [extension],
                language_level=3,
                compiler_directives={"boundscheck": False, "wraparound": False},
            )
        except Exception as e:  # Cython's CompileError, or a missing source in an sdist
            if REQUIRE:
                raise
            _warn(f"could not cythonize {source}", e)
            _drop_stale_build(source)
    return built


setup(ext_modules=_extensions(), cmdclass={"build_ext": optional_build_ext})
