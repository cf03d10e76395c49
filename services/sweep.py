"""The registry sweep: verify what a registry actually serves against the trust state.

Docker Content Trust exists to stop one attack: a registry (or someone who owns it)
serving a manifest for a tag other than the one its publisher signed. A sweep walks the
registry through the OCI distribution API — the catalog, each repository's tags, and a
manifest ``HEAD`` per tag for the ``Docker-Content-Digest`` it serves — and asks the
verifier about each (GUN, tag, served digest). Every tag gets a finding:

- ``VALID``: signed, trusted, and the registry serves the signed digest;
- ``UNKNOWN_REPOSITORY`` / ``UNKNOWN_TAG`` / ``TAG_DELETED``: served but not (or no longer)
  signed — *unsigned*;
- ``DIGEST_MISMATCH``: signed, but the registry serves another digest — *mismatch*;
- any other verdict code (``KEY_COMPROMISED``, ``EXPIRED``, ...): signed but not trusted;
- ``UNREADABLE``: the registry's answer for the tag could not be read or was not of the
  API's form (a missing or malformed digest, an invalid name). Fail closed: a tag the sweep
  could not check is a failure, never a pass.

The registry is untrusted: its names are checked against the distribution grammar and
the trust-name grammar before they reach the verifier. HEAD requests run on a pool of
threads, one persistent connection each; verification runs in batches of ``chunk`` tags.
"""
from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import msgspec

from trustlog.core.evaluate import Request
from trustlog.core.names import is_distribution_name, is_tag
from trustlog.ingest.oci import RegistryClient, Served

UNREADABLE = "UNREADABLE"
UNSIGNED_CODES = frozenset({"UNKNOWN_REPOSITORY", "UNKNOWN_TAG", "TAG_DELETED"})
MISMATCH_CODES = frozenset({"DIGEST_MISMATCH"})


class Finding(msgspec.Struct, frozen=True, omit_defaults=True):
    """The sweep's verdict for one tag the registry serves (one JSONL line)."""

    repo: str                       # the GUN the tag was checked under
    tag: str
    code: str
    reason: str
    served_digest: str | None = None
    signed_digest: str | None = None
    state_version: int | None = None
    registry_repo: str | None = None

    @property
    def ok(self) -> bool:
        return self.code == "VALID"

    @property
    def kind(self) -> str:
        """``ok``, ``unsigned``, ``mismatch``, ``untrusted`` or ``unreadable``."""
        if self.code == "VALID":
            return "ok"
        if self.code in UNSIGNED_CODES:
            return "unsigned"
        if self.code in MISMATCH_CODES:
            return "mismatch"
        if self.code == UNREADABLE:
            return "unreadable"
        return "untrusted"


@dataclass
class SweepSummary:
    registry: str
    gun_prefix: str
    repositories: int = 0
    tags: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    state_version: int | None = None
    seconds: float = 0.0

    @property
    def failing(self) -> int:
        return self.tags - self.kinds.get("ok", 0)

    def to_dict(self) -> dict:
        return {"registry": self.registry, "gun_prefix": self.gun_prefix, "repositories": self.repositories,
                "tags": self.tags, "failing": self.failing, "by_kind": dict(self.kinds.most_common()),
                "verdicts": dict(self.codes.most_common()), "state_version": self.state_version,
                "seconds": round(self.seconds, 3)}


VerifyFn = Callable[[list[Request]], Iterable]  # requests -> Verdicts, in order


def gun_for(prefix: str, registry_repo: str) -> str:
    """The GUN a registry repository is signed under (Docker Content Trust: the
    registry's host, then the repository path)."""
    return f"{prefix}/{registry_repo}" if prefix else registry_repo


def list_tags(client: RegistryClient, patterns: Iterable[str] = ()) -> Iterator[tuple[str, str | None]]:
    """(registry repo, tag) for every tag of every catalog repository that matches one of
    ``patterns`` (shell-style; all when none). A repository whose name breaks the
    grammar is yielded once with tag None, to be reported unreadable."""
    pats = list(patterns)
    for repo in client.catalog():
        if pats and not any(fnmatch.fnmatchcase(repo, p) for p in pats):
            continue
        if not is_distribution_name(repo):
            yield repo, None
            continue
        for tag in client.tags(repo):
            yield repo, tag


class Sweeper:
    """One sweep of one registry against one verifier."""

    def __init__(self, client: RegistryClient, verify: VerifyFn, *, gun_prefix: str,
                 concurrency: int = 16, chunk: int = 4096) -> None:
        if concurrency < 1 or chunk < 1:
            raise ValueError("concurrency and chunk must be at least 1")
        self.client = client
        self.verify = verify
        self.gun_prefix = gun_prefix.rstrip("/")
        self.concurrency = concurrency
        self.chunk = chunk

    def _head(self, item: tuple[str, str | None]) -> Served:
        repo, tag = item
        if tag is None:
            return Served(repo, "", None, "repository name is not a valid distribution name")
        if not is_tag(tag):
            return Served(repo, tag, None, "tag is not a valid distribution tag")
        return self.client.served_digest(repo, tag)

    def findings(self, items: Iterable[tuple[str, str | None]],
                 progress: Callable[[int], None] | None = None) -> Iterator[Finding]:
        """A finding per (registry repo, tag), in order, chunk by chunk."""
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sweep") as pool:
            buf: list[tuple[str, str | None]] = []
            for item in items:
                buf.append(item)
                if len(buf) >= self.chunk:
                    yield from self._chunk(pool, buf, progress)
                    buf = []
            if buf:
                yield from self._chunk(pool, buf, progress)

    def _chunk(self, pool: ThreadPoolExecutor, items: list[tuple[str, str | None]],
               progress: Callable[[int], None] | None) -> Iterator[Finding]:
        served = list(pool.map(self._head, items))
        reqs: list[Request] = []
        where: list[int] = []
        out: list[Finding | None] = [None] * len(served)
        for i, s in enumerate(served):
            gun = gun_for(self.gun_prefix, s.repo)
            if s.digest is None:
                out[i] = Finding(gun, s.tag, UNREADABLE, s.error or "no digest", registry_repo=s.repo)
                continue
            reqs.append(Request(gun, s.tag, s.digest))
            where.append(i)
        try:
            verdicts = list(self.verify(reqs)) if reqs else []
            if len(verdicts) != len(reqs):
                raise RuntimeError(f"{len(verdicts)} verdicts for {len(reqs)} requests")
        except Exception as e:  # noqa: BLE001 - fail closed: a fault is a failing finding
            why = f"internal error: {type(e).__name__}: {e}"
            for i, r in zip(where, reqs):
                out[i] = Finding(r.repo, r.tag, "ERROR", why, served_digest=r.digest, registry_repo=served[i].repo)
            verdicts = []
        for i, v in zip(where, verdicts):
            s = served[i]
            out[i] = Finding(v.repo, v.tag, v.code, v.reason, served_digest=s.digest, signed_digest=v.digest,
                             state_version=v.state_version, registry_repo=s.repo)
        if progress is not None:
            progress(len(items))
        for f in out:
            assert f is not None
            yield f
