"""The batch verifier: requests in, one verdict each out.

Two halves, as DESIGN.md's fast path describes:

1. crypto validity of (key, message, signature), computed in batches by the selected
   backend (compiled or pure Python) and cached by content hash, because it never
   changes;
2. trust status (delegation, compromise, removal, expiry), recomputed cheaply against
   the current state by :mod:`trustlog.core.evaluate` on every run.

Fail closed: an exception while evaluating one request becomes an ``ERROR`` verdict
naming the exception, never a pass and never a crash of the whole run.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from trustlog.core.evaluate import Request, Verdict, evaluate_entry
from trustlog.core.reasons import Code
from trustlog.core.state import RepoState, TagEntry, TrustState

from .cache import CryptoCache, cache_key

CryptoFn = Callable[[Sequence[tuple[int, bytes, bytes, bytes]]], Sequence[int]]
DEFAULT_CHUNK = 20_000


def default_crypto() -> CryptoFn:
    """The selected backend's batch check (compiled unless TRUSTLOG_PUREPYTHON=1)."""
    try:
        from .backend import check_signatures
    except ImportError:  # backend module not yet built into this tree
        from trustlog.core.keys import crypto_valid

        def check_signatures(items: Sequence[tuple[int, bytes, bytes, bytes]]) -> Sequence[int]:
            return [1 if crypto_valid(a, k, m, s) else 0 for a, k, m, s in items]
    return check_signatures


def backend_name() -> str:
    """"c" (compiled) or "py" (pure Python): the crypto backend verification uses."""
    try:
        from .backend import BACKEND
    except ImportError:
        return "py"
    return BACKEND


class BatchVerifier:
    """Verifies requests against one :class:`TrustState` at one reference time.

    ``ref_time`` (seconds) is fixed when the verifier is made, so that every verdict of
    a run is judged against the same clock, however long the run takes.
    """

    def __init__(
        self,
        state: TrustState,
        *,
        ref_time: int | None = None,
        crypto: CryptoFn | None = None,
        cache: CryptoCache | None = None,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        self.state = state
        self.ref_time = int(time.time()) if ref_time is None else ref_time
        self.crypto = crypto or default_crypto()
        self.cache = cache if cache is not None else CryptoCache()
        self.chunk = chunk
        self._memo: dict[tuple[str, int], dict] = {}

    def verify(self, requests: Iterable[Request]) -> Iterator[Verdict]:
        """Yield one verdict per request, in order."""
        buf: list[Request] = []
        for r in requests:
            buf.append(r)
            if len(buf) >= self.chunk:
                yield from self._verify_chunk(buf)
                buf = []
        if buf:
            yield from self._verify_chunk(buf)

    def verify_all(self, requests: Iterable[Request]) -> list[Verdict]:
        return list(self.verify(requests))

    # -- internals ---------------------------------------------------------------------

    def _resolve(self, req: Request) -> tuple[RepoState, TagEntry] | Verdict:
        v = self.state.version
        repo = self.state.repos.get(req.repo)
        if repo is None:
            return Verdict(req.repo, req.tag, Code.UNKNOWN_REPOSITORY.value, "no such repository in the log", v)
        entry = repo.tags.get(req.tag)
        if entry is None:
            if req.tag in repo.deleted_tags:
                return Verdict(req.repo, req.tag, Code.TAG_DELETED.value,
                               f"deleted at log offset {repo.deleted_tags[req.tag]}", v)
            return Verdict(req.repo, req.tag, Code.UNKNOWN_TAG.value, "no signed tag of that name", v)
        if req.digest is not None and req.digest != entry.digest:
            return Verdict(req.repo, req.tag, Code.DIGEST_MISMATCH.value,
                           f"signed digest is {entry.digest}", v, digest=entry.digest, role=entry.role,
                           log_offset=entry.offset)
        return repo, entry

    def _verify_chunk(self, reqs: list[Request]) -> list[Verdict]:
        resolved = [self._resolve(r) for r in reqs]
        # (1) crypto validity of every signature not yet in the cache, in one batch
        keys_needed: list[bytes] = []
        items: list[tuple[int, bytes, bytes, bytes]] = []
        per_req: list[list[bytes] | None] = []
        for res in resolved:
            if isinstance(res, Verdict):
                per_req.append(None)
                continue
            repo, entry = res
            ks: list[bytes] = []
            for keyid, sig in entry.signatures:
                key = repo.keys[keyid]
                ck = cache_key(key.alg, key.public, entry.payload, sig)
                ks.append(ck)
                if ck not in self.cache:
                    keys_needed.append(ck)
                    items.append((key.alg, key.public, entry.payload, sig))
            per_req.append(ks)
        if items:
            results = self.crypto(items)
            for ck, ok in zip(keys_needed, results, strict=True):
                self.cache.put(ck, ok == 1)
        # (2) trust status against the state
        memo = self._memo_for_run()
        out: list[Verdict] = []
        for req, res, ks in zip(reqs, resolved, per_req):
            if isinstance(res, Verdict):
                out.append(res)
                continue
            repo, entry = res
            out.append(self._evaluate(req, repo, entry, ks, memo))
        return out

    def _memo_for_run(self) -> dict:
        key = ("memo", self.state.version)
        memo = self._memo.get(key)
        if memo is None:
            self._memo = {key: {}}
            memo = self._memo[key]
        return memo

    def _evaluate(self, req: Request, repo: RepoState, entry: TagEntry, ks: list[bytes] | None, memo: dict) -> Verdict:
        v = self.state.version
        try:
            valid = [self.cache.get(k) is True for k in ks or ()]
            code, reason, counted = evaluate_entry(repo, entry, valid, self.ref_time, memo.setdefault(repo.name, {}))
        except Exception as e:  # noqa: BLE001 - fail closed: any fault is a rejecting verdict
            return Verdict(req.repo, req.tag, Code.ERROR.value, f"internal error: {type(e).__name__}: {e}", v)
        return Verdict(req.repo, req.tag, code.value, reason, v, digest=entry.digest, role=entry.role,
                       keys=counted, log_offset=entry.offset)


def requests_for_state(state: TrustState) -> Iterator[Request]:
    """A request for every signed tag in the state (a full sweep)."""
    for repo in state.repos.values():
        for tag, entry in repo.tags.items():
            yield Request(repo.name, tag, entry.digest)
