"""Build of the compiled batch verifier only; metadata lives in pyproject.toml.

``trustlog.verifier._cverify`` needs a C compiler with OpenMP, the OpenSSL 3 headers
(libssl-dev / openssl-devel) and Cython. Without them the install still succeeds and
trustlog runs on its pure-Python verifier (``trustlog.verifier.crypto_batch``), with a
warning — unless ``TRUSTLOG_REQUIRE_EXTENSION=1`` (set in CI), which makes a failed
build fail the install.
"""
from __future__ import annotations

import os
import sys

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


def _extensions() -> list[Extension]:
    ext = Extension(
        "trustlog.verifier._cverify",
        ["verifier/_cverify.pyx"],
        depends=["verifier/_trust.pxi"],
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
        depends=["ingest/_fastfold.h"],
        include_dirs=["ingest"],
        libraries=["crypto"],
        define_macros=[("OPENSSL_SUPPRESS_DEPRECATED", None)],
        extra_compile_args=["-O3"],
    )
    try:
        from Cython.Build import cythonize
    except ImportError as e:
        if REQUIRE:
            raise
        _warn("Cython is not installed", e)
        return []
    try:
        return cythonize(
            [ext, fold],
            language_level=3,
            compiler_directives={"boundscheck": False, "wraparound": False},
        )
    except Exception as e:  # Cython's CompileError, or a missing source in an sdist
        if REQUIRE:
            raise
        _warn("could not cythonize verifier/_cverify.pyx or ingest/_fastfold.pyx", e)
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": optional_build_ext})
