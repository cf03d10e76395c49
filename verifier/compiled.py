"""Key-chain evaluation over the compiled state: the fast twin of ``core.evaluate``.

:class:`CompiledEvaluator` wraps ``_cverify.CompiledTrust`` (``_compiled_trust.pxi``): the
trust state compiled to flat arrays, kept current by recompiling only the repositories
whose version changed, evaluated in C (the rules: ``_rules.pxi``) on every core with the
GIL released. It yields the same ``(code, reason, counted keys)`` as
:func:`trustlog.core.evaluate.evaluate_entry` for every tag;
``tests/test_chain_differential.py`` checks that on generated histories, because a
divergence between the two is a security bug.

Only verdict bytes and small integers come out of C; reasons and key lists are built
here, from the state and the verdict table (``core/verdict_codes.py``, which the
reference words its reasons from too), when a :class:`~trustlog.core.evaluate.Verdict`
is wanted.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from trustlog.core.bounds import check_ref_time
from trustlog.core.evaluate import Verdict, effective_threshold, outside_reason, signing_grant_expired_reason
from trustlog.core.reasons import Code
from trustlog.core.state import RepoState, TagEntry, TrustState
from trustlog.core.verdict_codes import C_CONSTANTS, VERDICT_BYTES, ErrorDetail, ExpiredDetail, Reason, error_text



def table_mismatch(built: object) -> str | None:
    """Why an extension that exports ``built`` as its ``CODES_TABLE`` must not be used
    (its verdict bytes would mean other codes than the table's), or None."""
    if built == C_CONSTANTS:
        return None
    return ("trustlog's compiled verifier was built from another version of core/verdict_codes.py; "
            "rebuild it (`pip install -e .` or scripts/setup)")


# Why the compiled engine cannot be used, or None when it can.
UNAVAILABLE: str | None = None
try:
    from ._cverify import CODES_TABLE, CompiledTrust, SigCache
except ImportError as e:  # pragma: no cover - the pure-Python path never comes here
    CompiledTrust = SigCache = None  # type: ignore[assignment,misc]
    UNAVAILABLE = f"trustlog's compiled verifier is not built ({e})"
else:
    UNAVAILABLE = table_mismatch(CODES_TABLE)
    if UNAVAILABLE is not None:  # pragma: no cover - a stale build fails closed: the Python engine
        CompiledTrust = SigCache = None  # type: ignore[assignment,misc]

# Verdict byte -> code (index 0: a dead row, no verdict): the table's, which the C side
# is generated from (setup.py writes verifier/_codes.pxi).
CODES: tuple[Code | None, ...] = VERDICT_BYTES

Result = tuple[Code, str, list[str]]


def available() -> bool:
    return CompiledTrust is not None


def _expiry_reason(repo: RepoState, entry: TagEntry, level: int) -> str:
    if level == ExpiredDetail.SIGNATURE:
        return Reason.SIGNATURE_EXPIRED.text(tag=entry.tag, expires=entry.expires)
    if level == ExpiredDetail.GRANT:
        return signing_grant_expired_reason(repo, entry)
    name = ("root", "targets", entry.role)[level]
    g = repo.role_grant(name)
    return Reason.METADATA_EXPIRED.text(role=name, expires=g.expires if g is not None else "?")


def reason(code: Code, detail: int, repo: RepoState, entry: TagEntry, n_counted: int) -> str:
    """The reference's reason text for a compiled verdict (the table's wording)."""
    if code is Code.VALID:
        return Reason.TRUSTED.text()
    if code is Code.BAD_SIGNATURE:
        return Reason.BAD_SIGNATURE.text(bad=detail)
    if code is Code.KEY_COMPROMISED:
        return Reason.KEY_COMPROMISED.text()
    if code is Code.THRESHOLD_NOT_MET:
        return Reason.THRESHOLD_NOT_MET.text(counted=n_counted, threshold=effective_threshold(repo, entry))
    if code is Code.DELEGATION_COMPROMISED:
        g = repo.grants[detail]
        return Reason.DELEGATION_COMPROMISED.text(role=g.role, offset=g.offset)
    if code is Code.ROLE_REMOVED:
        g = repo.grants[detail]
        return Reason.ROLE_REMOVED.text(role=g.role, removed_offset=g.removed_offset)
    if code is Code.EXPIRED:
        return _expiry_reason(repo, entry, detail)
    if code is Code.OUTSIDE_PATTERNS:
        g = repo.role_grant(entry.role)
        return outside_reason(g.paths if g is not None else (), entry)
    return Reason.COMPILED_ERROR.text(detail=error_text(detail))


class CompiledEvaluator:
    """Trust status of tags from the compiled state; crypto validity from its cache.

    ``cache``: a :class:`SigCache` to share between verifiers (a new one if None), or a
    Python :class:`~trustlog.core.sigcache.CryptoCache`, which is then consulted and
    filled on misses besides a private SigCache. ``crypto``: a batch check function to
    use for misses instead of the compiled one.
    """

    def __init__(self, state: TrustState, *, cache: Any = None, crypto: Any = None, nthreads: int = 0,
                 compact_min: int = 4096) -> None:
        if CompiledTrust is None:
            raise ImportError(UNAVAILABLE)
        sig_cache = cache if isinstance(cache, SigCache) else SigCache()
        py_cache = None if cache is None or isinstance(cache, SigCache) else cache
        self.state = state
        self.cache = sig_cache if py_cache is None else py_cache
        self.ct = CompiledTrust(state, sig_cache, pycache=py_cache, crypto=crypto, nthreads=nthreads,
                                compact_min=compact_min)

    def refresh(self) -> int:
        """Apply the state's changes since the last call; the repositories recompiled."""
        return self.ct.refresh()

    def evaluate(self, items: Sequence[tuple[RepoState, TagEntry]], ref_time: int) -> list[Result]:
        """``(code, reason, counted keyids)`` for each ``(repo, entry)``, as evaluate_entry."""
        ct = self.ct
        ct.refresh(list({id(r): r for r, _ in items}.values()))
        rows = ct.rows_for_items(items)
        ct.ensure(rows)
        codes, details, counted, offsets = ct.evaluate(rows, check_ref_time(ref_time))
        out: list[Result] = []
        for i, (repo, entry) in enumerate(items):
            b = codes[i]
            if rows[i] < 0:
                err = ct.repo_error(repo.name)
                out.append((Code.ERROR, Reason.COMPILED_ERROR.text(detail=err or "the tag is not compiled"), []))
                continue
            code = CODES[b] if 0 < b < len(CODES) else Code.ERROR
            if code is Code.ERROR:
                err = ct.repo_error(repo.name) if details[i] == ErrorDetail.REPO else None
                msg = Reason.COMPILED_ERROR.text(detail=err) if err else reason(code, details[i], repo, entry, 0)
                out.append((code, msg, []))
                continue
            lo = offsets[i]
            sigs = entry.signatures
            keys = [sigs[k][0] for k in range(offsets[i + 1] - lo) if counted[lo + k]]
            out.append((code, reason(code, details[i], repo, entry, len(keys)), keys))
        return out

    def sweep(self, ref_time: int, timings: dict[str, float] | None = None) -> Sweep:
        """Evaluate every signed tag of the state: verdict bytes, no Python object each.

        ``timings``, if given, receives the seconds spent in each stage: ``compile``
        (deltas of changed repositories), ``crypto`` (content hashes, cache lookups,
        verification of misses), ``evaluate`` (the key-chain rules)."""
        ct = self.ct
        t0 = time.perf_counter()
        ct.refresh()
        t1 = time.perf_counter()
        ct.ensure(None)
        t2 = time.perf_counter()
        codes, details, counted = ct.sweep(check_ref_time(ref_time))
        t3 = time.perf_counter()
        if timings is not None:
            timings.update(compile=t1 - t0, crypto=t2 - t1, evaluate=t3 - t2)
        return Sweep(self, codes, details, counted, self.state.version, _generation(ct))


def _generation(ct: Any) -> tuple[int, int]:
    return (ct.recompiled, ct.compactions)


@dataclass
class Sweep:
    """The verdicts of one full sweep, as bytes; Verdict objects on demand.

    Materialise (:meth:`verdicts`) before the state changes again: reasons are read
    from the state, and the rows from the compiled state as it was.
    """

    evaluator: CompiledEvaluator
    codes: bytearray
    details: Any
    counted: bytearray
    state_version: int
    generation: tuple[int, int]

    @property
    def total(self) -> int:
        return len(self.codes) - self.codes.count(0)

    @property
    def counts(self) -> dict[str, int]:
        c: Counter[str] = Counter()
        for b, code in enumerate(CODES):
            if code is not None:
                n = self.codes.count(b)
                if n:
                    c[code.value] = n
        bad = self.total - sum(c.values())
        if bad:
            c[Code.ERROR.value] += bad
        return dict(c.most_common())

    def verdicts(self) -> Iterator[Verdict]:
        ct = self.evaluator.ct
        if _generation(ct) != self.generation:
            raise RuntimeError("the compiled state changed since this sweep; sweep again")
        repos = self.evaluator.state.repos
        v = self.state_version
        codes, details, counted = self.codes, self.details, self.counted
        for row in ct.live_row_ids():
            name, entry, lo, n = ct.row_info(row)
            b = codes[row]
            code = CODES[b] if 0 < b < len(CODES) else Code.ERROR
            repo = repos[name]
            if code is Code.ERROR:
                yield Verdict(name, entry.tag, code.value, reason(code, details[row], repo, entry, 0), v)
                continue
            sigs = entry.signatures
            keys = [sigs[k][0] for k in range(n) if counted[lo + k]]
            yield Verdict(name, entry.tag, code.value, reason(code, details[row], repo, entry, len(keys)), v,
                          digest=entry.digest, role=entry.role, keys=keys, log_offset=entry.offset,
                          root_trust=repo.origin)
