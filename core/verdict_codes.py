"""The verdict table: codes, the compiled engine's numbers for them, and the reason texts.

One source for both engines. ``core/evaluate.py`` (the reference) words every chain
verdict from :class:`Reason`; the compiled engine (``verifier/_rules.pxi``) returns a
verdict byte and a detail number per tag, which ``verifier/compiled.py`` turns back into
a :class:`~trustlog.core.reasons.Code` and the same words through these tables.

The C side is generated: ``setup.py`` writes ``verifier/_codes.pxi`` (a ``cdef enum``
and :data:`C_CONSTANTS` as the extension's ``CODES_TABLE``) from :func:`pxi_source`
before it runs Cython, so no number is kept by hand in two places; the generated file
is not in git. An extension built from another version of this table is refused
(``verifier/compiled.py`` compares ``CODES_TABLE``), so a stale build fails closed.

This module imports nothing but the standard library and ``core/reasons.py``:
``setup.py`` loads it from the source tree before trustlog is installed.
"""
from __future__ import annotations

from enum import Enum, IntEnum
from typing import Final

from .reasons import Code

#: Verdict byte of the compiled evaluation -> code; byte 0 is a dead row (no verdict).
#: In C: ``V_NONE`` and ``V_<code>``.
VERDICT_BYTES: Final[tuple[Code | None, ...]] = (
    None, Code.VALID, Code.BAD_SIGNATURE, Code.THRESHOLD_NOT_MET, Code.KEY_COMPROMISED,
    Code.DELEGATION_COMPROMISED, Code.ROLE_REMOVED, Code.EXPIRED, Code.ERROR, Code.OUTSIDE_PATTERNS,
)


class ErrorDetail(IntEnum):
    """The detail number of an ``ERROR`` verdict byte: what the compiled state lacked.
    In C: ``E_<name>``. Never produced from a state the fold built."""

    ROW = 1           # the tag entry could not be compiled
    REPO = 2          # the repository could not be compiled
    GRANT = 3         # the entry's grant does not exist
    UNVERIFIED = 4    # a signature reached evaluation without a validity byte
    KEY = 5           # a signature's key is missing from the repository
    CHAIN = 6         # the chain of grants above is malformed
    ROLE = 7          # the entry's role index is out of range


#: What an :class:`ErrorDetail` says in a verdict's reason.
ERROR_TEXTS: Final[dict[ErrorDetail, str]] = {
    ErrorDetail.ROW: "the tag entry could not be compiled",
    ErrorDetail.REPO: "the repository could not be compiled",
    ErrorDetail.GRANT: "the tag's signing grant does not exist",
    ErrorDetail.UNVERIFIED: "a signature reached evaluation without a crypto check",
    ErrorDetail.KEY: "a signature's key is missing from the repository",
    ErrorDetail.CHAIN: "the chain of grants above the tag is malformed",
    ErrorDetail.ROLE: "the tag's role is out of range",
}


def error_text(detail: int) -> str:
    """What an ``ERROR`` verdict byte's detail number says (any number: it fails closed)."""
    try:
        return ERROR_TEXTS[ErrorDetail(detail)]
    except ValueError:
        return f"error {detail}"


class ExpiredDetail(IntEnum):
    """The detail number of an ``EXPIRED`` verdict byte: which expiry fell, checked in
    the order of ``core.evaluate.expiry_fault`` (root, targets, the role, the signing
    grant, the signature). In C: ``X_<name>``."""

    ROOT = 0
    TARGETS = 1
    ROLE = 2
    SIGNATURE = 3
    GRANT = 4


class Reason(str, Enum):
    """The reason text of each verdict, as a ``str.format`` template.

    Fill one with :meth:`text`; both engines do, so their wording cannot drift."""

    TRUSTED = "trusted"
    BAD_SIGNATURE = "{bad} signature(s) do not verify"
    THRESHOLD_NOT_MET = "{counted} of {threshold} signatures"
    KEY_COMPROMISED = "signed at or after its key was reported compromised"
    DELEGATION_COMPROMISED = "the {role} keys set at log offset {offset} were signed by a key compromised at that time"
    ROLE_REMOVED = "signer role {role} was removed at log offset {removed_offset}"
    OUTSIDE_PATTERNS = "{role} may now sign tags matching {paths}, not {tag!r}"
    METADATA_EXPIRED = "{role} metadata expired at {expires}"
    GRANT_EXPIRED = "the {role} keys that signed {tag} (set at log offset {offset}) expired at {expires}"
    SIGNATURE_EXPIRED = "the signature on {tag} expired at {expires}"
    COMPILED_ERROR = "internal error: compiled state: {detail}"
    # Requests answered before any chain is evaluated (verifier/batch.py resolves them).
    UNKNOWN_REPOSITORY = "no such repository in the log"
    UNKNOWN_TAG = "no signed tag of that name"
    TAG_DELETED = "deleted at log offset {offset}"
    DIGEST_MISMATCH = "signed digest is {digest}"

    def text(self, **fields: object) -> str:
        """The reason with ``fields`` filled in."""
        return self.value.format(**fields)


def _c_constants() -> tuple[tuple[str, int], ...]:
    out = [(f"V_{'NONE' if c is None else c.value}", i) for i, c in enumerate(VERDICT_BYTES)]
    out += [(f"E_{d.name}", int(d)) for d in ErrorDetail]
    out += [(f"X_{d.name}", int(d)) for d in ExpiredDetail]
    return tuple(out)


#: Every constant the compiled engine uses, as ``(C name, value)``: what
#: ``verifier/_codes.pxi`` declares and the extension exports as ``CODES_TABLE``.
C_CONSTANTS: Final[tuple[tuple[str, int], ...]] = _c_constants()


def pxi_source() -> str:
    """The text of ``verifier/_codes.pxi``: :data:`C_CONSTANTS` as a ``cdef enum``, and
    as the Python-level ``CODES_TABLE`` the extension exports for the staleness check."""
    lines = [
        "# Generated by setup.py from core/verdict_codes.py (the verdict table). Do not edit:",
        "# change the table and rebuild. Not in git.",
        "",
        "cdef enum:",
    ]
    lines += [f"    {name} = {value}" for name, value in C_CONSTANTS]
    lines += ["", "CODES_TABLE = ("]
    lines += [f"    ({name!r}, {value})," for name, value in C_CONSTANTS]
    lines += [")", ""]
    return "\n".join(lines)
