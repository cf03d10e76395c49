"""The key-compromise audit: what did key K sign, what falls if K was compromised since
log time T, and which current verdicts change.

Answered from the log's indexes (``ingest.logindex``) and the current trust state, so
an audit reads only K's postings, the postings of the repositories K touched, and the
records they name — never the whole log (:func:`audit_scan` is the naive full scan,
kept as the baseline and as a cross-check).

* **signed**: every event carrying a signature by K as a key of the authority that
  signed it (the fold verified it), split at ``since`` (log time, ns: at or after
  ``since`` counts as after, as in ``KeyCompromised``);
* **granted**: events that gave K authority (K among the keys they set);
* **blast radius**: the events K signed at or after ``since``, plus every event signed
  under a grant that K's post-``since`` events created — delegations, targets or root
  key sets — and, transitively, under the grants those made;
* **verdict changes**: current verdicts re-evaluated with K reported compromised since
  ``since`` in every repository that knows K (a copy-on-write what-if: only each
  affected repository's compromise table is copied), listing those that change.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trustlog.core.evaluate import evaluate_entry
from trustlog.core.events import ImageSigned, KeyCompromised, MetadataImported, RoleKeysSet, RoleRemoved, TagDeleted
from trustlog.core.keys import key_material_id
from trustlog.core.state import TrustState

if TYPE_CHECKING:
    from trustlog.ingest.pipeline import TrustLog

GRANT_KINDS = frozenset({"RepoCreated", "RootRotated", "RoleKeysSet"})


@dataclass
class AuditEvent:
    offset: int
    log_time: int
    repo: str
    kind: str
    version: int
    relation: str                  # "signed", "granted" or "delegated" (signed under a fallen grant)
    after: bool                    # at or after ``since``
    role: str | None = None        # signing role (tags) or the role whose keys were set
    tag: str | None = None
    digest: str | None = None
    keys: list[str] = field(default_factory=list)   # keys a grant event set


@dataclass
class FallenGrant:
    repo: str
    grant_id: int
    role: str
    offset: int
    log_time: int
    keyids: list[str]
    parent: int | None
    direct: bool                   # created by an event K signed (else beneath such a grant)


@dataclass
class VerdictChange:
    repo: str
    tag: str
    digest: str
    before: str
    after: str
    reason: str
    log_offset: int


@dataclass
class AuditReport:
    keyid: str
    since: int | None
    ref_time: int
    state_version: int
    signed: list[AuditEvent]
    granted: list[AuditEvent]
    delegated: list[AuditEvent]
    fallen_grants: list[FallenGrant]
    verdict_changes: list[VerdictChange]
    repos: list[str]
    tags_evaluated: int = 0
    already_reported: dict[str, int] = field(default_factory=dict)   # repo -> since, from the log
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def signed_before(self) -> list[AuditEvent]:
        return [e for e in self.signed if not e.after]

    @property
    def signed_after(self) -> list[AuditEvent]:
        return [e for e in self.signed if e.after]

    @property
    def blast_radius(self) -> list[AuditEvent]:
        """Events K signed at or after ``since`` and events under the grants that fall."""
        return sorted(self.signed_after + self.delegated, key=lambda e: e.offset)

    def blast_offsets(self) -> set[int]:
        return {e.offset for e in self.blast_radius}

    def summary(self) -> dict[str, Any]:
        return {
            "keyid": self.keyid, "since": self.since, "state_version": self.state_version,
            "signed": len(self.signed), "signed_before": len(self.signed_before),
            "signed_after": len(self.signed_after), "granted": len(self.granted),
            "delegations_after": sum(1 for g in self.fallen_grants if g.direct),
            "fallen_grants": len(self.fallen_grants), "delegated_events": len(self.delegated),
            "blast_radius": len(self.blast_radius), "repositories": len(self.repos),
            "verdict_changes": len(self.verdict_changes), "tags_evaluated": self.tags_evaluated,
            "already_reported_in": len(self.already_reported),
        }

    def to_dict(self) -> dict[str, Any]:
        d = {"summary": self.summary(), "ref_time": self.ref_time}
        d["signed"] = [dataclasses.asdict(e) for e in self.signed]
        d["granted"] = [dataclasses.asdict(e) for e in self.granted]
        d["fallen_grants"] = [dataclasses.asdict(g) for g in self.fallen_grants]
        d["delegated"] = [dataclasses.asdict(e) for e in self.delegated]
        d["blast_radius_offsets"] = sorted(self.blast_offsets())
        d["verdict_changes"] = [dataclasses.asdict(v) for v in self.verdict_changes]
        d["repositories"] = self.repos
        d["already_reported"] = self.already_reported
        d["seconds"] = self.seconds
        return d


def _describe(tl: TrustLog, offsets: Iterable[int]) -> dict[int, tuple[Any, int]]:
    """Decoded event and log time of each offset (sorted reads)."""
    from trustlog.ingest.replay import decode_trusted

    out = {}
    read = tl.log.read
    for off in sorted(set(offsets)):
        rec, _env, ev = decode_trusted(read(off))
        out[off] = (ev, rec.log_time)
    return out


def _event(off: int, ev: Any, log_time: int, relation: str, after: bool) -> AuditEvent:
    e = AuditEvent(off, log_time, ev.repo, type(ev).__struct_config__.tag, ev.version, relation, after)
    if isinstance(ev, (ImageSigned, TagDeleted)):
        e.role, e.tag = ev.role, ev.tag
        if isinstance(ev, ImageSigned):
            e.digest = ev.digest
    elif isinstance(ev, (RoleKeysSet, RoleRemoved)):
        e.role = ev.role
        if isinstance(ev, RoleKeysSet):
            e.keys = [k.keyid for k in ev.keys]
    elif isinstance(ev, KeyCompromised):
        e.keys = [ev.keyid]
    elif isinstance(ev, MetadataImported):  # the role whose metadata file it is (as the report's proof cites it)
        e.role = ev.role
    elif hasattr(ev, "root_keys"):
        e.role = "root"
        e.keys = [k.keyid for k in ev.root_keys] + [k.keyid for k in getattr(ev, "targets_keys", [])]
    return e


def audit_key(tl: TrustLog, keyid: str, since: int | None = None, *, ref_time: int | None = None,
              state: TrustState | None = None) -> AuditReport:
    """Audit key ``keyid`` in the open log ``tl``; ``since`` is the compromise point
    (log time, ns; None: the key's whole history). ``ref_time`` (s) fixes expiry for the
    verdict re-evaluation."""
    from trustlog.ingest.logindex import SIGNED, GRANTED

    t0 = time.perf_counter()
    state = state if state is not None else tl.state
    ref = int(time.time()) if ref_time is None else ref_time
    cut = 0 if since is None else since
    index = tl.index
    postings = _postings_of_the_key(index, state, keyid)
    signed_p = [p for p in postings if p.b & SIGNED]
    granted_p = [p for p in postings if p.b & GRANTED]
    t1 = time.perf_counter()
    # grants created by events K signed at or after the cut, then everything beneath them
    fallen: list[FallenGrant] = []
    fallen_ids: dict[str, set[int]] = {}
    seeds: dict[str, set[int]] = {}
    for p in signed_p:
        if p.log_time >= cut and p.kind in GRANT_KINDS:
            seeds.setdefault(index.repo_of(p), set()).add(p.offset)
    for repo_name, offs in seeds.items():
        repo = state.repos.get(repo_name)
        if repo is None:
            continue
        ids: set[int] = set()
        for g in repo.grants:
            direct = g.offset in offs
            if direct or (g.parent is not None and g.parent in ids):
                ids.add(g.grant_id)
                fallen.append(FallenGrant(repo_name, g.grant_id, g.role, g.offset, g.log_time, list(g.keyids),
                                          g.parent, direct))
        fallen_ids[repo_name] = ids
    signed_after_offsets = {p.offset for p in signed_p if p.log_time >= cut}
    delegated_p = []
    for repo_name, ids in fallen_ids.items():
        for p in index.repo_postings(repo_name):
            if p.a in ids and p.offset not in signed_after_offsets:
                delegated_p.append(p)
    t2 = time.perf_counter()
    details = _describe(tl, [p.offset for p in (*signed_p, *granted_p, *delegated_p)])
    t3 = time.perf_counter()
    signed = [_event(p.offset, *details[p.offset], "signed", p.log_time >= cut) for p in signed_p]
    granted = [_event(p.offset, *details[p.offset], "granted", p.log_time >= cut) for p in granted_p]
    delegated = [_event(p.offset, *details[p.offset], "delegated", True) for p in sorted(delegated_p)]
    repos = sorted({index.repo_of(p) for p in postings})
    already: dict[str, int] = {}
    changes, evaluated = what_if_compromised(state, keyid, cut, repos, ref, already)
    t4 = time.perf_counter()
    return AuditReport(keyid, since, ref, state.version, signed, granted, delegated, fallen, changes, repos,
                       evaluated, already, {"index": round(t1 - t0, 6), "blast_radius": round(t2 - t1, 6),
                                   "read_records": round(t3 - t2, 6), "what_if": round(t4 - t3, 6),
                                   "total": round(t4 - t0, 6)})


def _postings_of_the_key(index, state: TrustState, keyid: str) -> list:
    """Postings of ``keyid`` and, in each repository that knows it, of every other key id
    with the same key material (the same P-256 key under the other label, the negated
    point, an RSA key with the same modulus): a compromise report takes them all down,
    so the audit lists what each of them signed and granted."""
    postings = list(index.key_postings(keyid))
    for repo_name in sorted({index.repo_of(p) for p in postings}):
        repo = state.repos.get(repo_name)
        if repo is None or keyid not in repo.keys:
            continue
        mat = key_material_id(repo.keys[keyid])
        for kid, pk in repo.keys.items():
            if kid != keyid and key_material_id(pk) == mat:
                postings += [p for p in index.key_postings(kid) if index.repo_of(p) == repo_name]
    merged: dict[int, Any] = {}
    for p in postings:  # one event signed under two of the key's ids is one entry
        q = merged.get(p.offset)
        merged[p.offset] = p if q is None else q._replace(b=q.b | p.b)
    return [merged[o] for o in sorted(merged)]


def what_if_compromised(state: TrustState, keyid: str, since: int, repos: Iterable[str],
                        ref_time: int, already: dict[str, int] | None = None) -> tuple[list[VerdictChange], int]:
    """Current verdicts that change if ``keyid`` is reported compromised since ``since``
    in each of ``repos``. Only tags that K signed at or after ``since``, or that sit
    beneath a grant K signed at or after ``since``, can change; those are evaluated
    twice, against the state and against a copy of the repository whose compromise
    table alone is replaced. Signatures are taken as valid: the fold verified them.
    ``already`` receives the repositories where the log already reports the key
    compromised (and since when)."""
    changes: list[VerdictChange] = []
    evaluated = 0
    for name in repos:
        repo = state.repos.get(name)
        if repo is None or keyid not in repo.keys:
            continue
        mat = key_material_id(repo.keys[keyid])
        same = {k for k, pk in repo.keys.items() if k == keyid or key_material_id(pk) == mat}
        prev = repo.compromised.get(mat)
        if prev is not None and already is not None:
            already[name] = prev
        new_since = since if prev is None else min(prev, since)
        if prev is not None and prev <= new_since:
            continue  # already reported at least this early: nothing changes
        # grants that the compromise can reach: signed by K at/after since, and beneath
        touched: set[int] = set()
        for g in repo.grants:
            if (g.log_time >= new_since and any(s in same for s in g.signers)) or \
                    (g.parent is not None and g.parent in touched):
                touched.add(g.grant_id)
        what_if = dataclasses.replace(repo, compromised={**repo.compromised, mat: new_since},
                                      compromised_keyids={**repo.compromised_keyids,
                                                          **{k: new_since for k in same}})
        memo_before: dict = {}
        memo_after: dict = {}
        for tag, entry in repo.tags.items():
            if entry.grant_id not in touched and not (
                    entry.log_time >= new_since and any(k in same for k, _ in entry.signatures)):
                continue
            valid = [True] * len(entry.signatures)
            b = evaluate_entry(repo, entry, valid, ref_time, memo_before)
            a = evaluate_entry(what_if, entry, valid, ref_time, memo_after)
            evaluated += 1
            if a[0] != b[0]:
                changes.append(VerdictChange(name, tag, entry.digest, b[0].value, a[0].value, a[1], entry.offset))
    return changes, evaluated


def lost_trust(tl: TrustLog, report: AuditReport) -> list[dict[str, Any]]:
    """Current tags that already fail because the log reports the audited key
    compromised: tags it signed (or that sit under its delegations) in the repositories
    where the compromise is recorded, judged now."""
    from trustlog.core.evaluate import Request
    from trustlog.verifier.batch import BatchVerifier

    cited = {e.offset for e in (*report.signed, *report.delegated) if e.kind == "ImageSigned"}
    reqs = []
    for name in sorted(report.already_reported):
        repo = tl.state.repos.get(name)
        if repo is not None:
            reqs += [Request(name, tag, e.digest) for tag, e in sorted(repo.tags.items()) if e.offset in cited]
    out = []
    for v in BatchVerifier(tl.state, ref_time=report.ref_time, crypto=tl.crypto, cache=tl.cache).verify(reqs):
        if v.code in ("KEY_COMPROMISED", "DELEGATION_COMPROMISED"):
            out.append({"repo": v.repo, "tag": v.tag, "digest": v.digest, "code": v.code, "reason": v.reason,
                        "offset": v.log_offset})
    return out


def audit_scan(directory: str, keyid: str, since: int | None = None) -> list[tuple[int, int, bool]]:
    """The naive way: scan the whole log for events carrying a signature by ``keyid``.
    Returns ``(offset, log_time, after)`` for each. No index, no state."""
    from trustlog.ingest.records import decode_record_trusted
    from trustlog.ingest.segment_log import SegmentLog

    cut = 0 if since is None else since
    needle = keyid.encode()
    # a v2 record holds a 64-character lowercase hex key id as its 32 raw bytes
    raw = bytes.fromhex(keyid) if len(keyid) == 64 and _is_hex(keyid) else None
    out = []
    log = SegmentLog.open(f"{directory}/log", create=False, read_only=True)  # a reader: no lock, no tail repair
    try:
        for off, body in log.scan(0):
            if needle not in body and (raw is None or raw not in body):  # cheap pre-filter; then decode to be exact
                continue
            rec, env, _ = decode_record_trusted(body)
            if any(s.keyid == keyid for s in env.signatures):
                out.append((off, rec.log_time, rec.log_time >= cut))
    finally:
        log.close()
    return out


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s)
