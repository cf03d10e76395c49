"""The fold rules for imported TUF / Notary v1 metadata (``MetadataImported``).

A repository created by an imported root is folded the way a TUF client
(python-tuf's ``TrustedMetadataSet``, Notary's client) trusts its metadata, on top of
trustlog's own structures, so that ``verify``, the audit, ``state --at``, proofs and the
compiled verifier work on it unchanged:

1. **root** — the first root (version 1) is trusted on first use or checked against the
   pins, and must carry its own threshold; each later root must be exactly the next
   version and carry a threshold of the old root keys AND of its own
   (``ROOT_OLD_THRESHOLD`` / ``ROOT_NEW_THRESHOLD``). Notary's certificate-wrapped root
   keys count only while the certificate is valid at log time and names the GUN.
2. **targets and delegated roles** — each file must be signed by a threshold of the keys
   its delegator's *current* metadata gives the role, and carry a version above the one
   folded before (``VERSION_ROLLBACK``; the same version with other bytes is
   ``METADATA_CHANGED``). A role that no current metadata delegates is ``UNKNOWN_ROLE``.
3. **the tag view** — after every change, each target path is resolved as
   ``tuf.ngclient`` resolves it (pre-order depth-first through the delegations whose
   paths match, terminating delegations ending the search) and bound to a
   :class:`TagEntry` that keeps the publisher's canonical signed bytes and signatures,
   so the batch verifier re-checks the publisher's own signatures. Unlike native
   events, a role whose keys change makes what its old keys signed untrusted until it is
   re-signed (TUF's rule), and a target no longer listed is deleted.

Expiry is judged at verification time, against the run's reference time: the root
grant carries the root's expiry, the ``targets`` grant that of ``targets.json``, a
delegated role's grant the earliest expiry of the metadata above it, and each tag the
expiry of the metadata that lists it.
"""
from __future__ import annotations

import fnmatch
import hashlib

from .errors import KeyMaterialError
from .events import ROOT, TARGETS, Envelope, MetadataImported, Signature
from .keys import PublicKey, validate_public_key
from .names import MAX_REPO_LEN, is_imported_role, is_repo, is_target_path
from .reasons import Reject
from .shared_maps import owned
from .state import _HANDLERS, Grant, Mutation, RejectedEventError, RepoState, SigCheck, TagEntry, TrustState
from .state import count_signers, pinned_origin
from .tuf_format import MetaKey, Root, Signed, Targets, TufFormatError, parse_root, parse_targets
from .tuf_model import TufDelegation, TufRepo, TufRole

_METHOD_OF_KEYTYPE = {"ed25519": "eddsa", "ecdsa-p256": "ecdsa", "ecdsa-p256-der": "ecdsa", "rsa-pss-sha256": "rsapss"}
MAX_DELEGATED_ROLES = 1024          # per repository
MAX_SEARCH_ROLES = 32               # roles visited per target (python-tuf's max_delegations)


def metadata_imported(st: TrustState, env: Envelope, ev: MetadataImported, log_time: int, offset: int,
                      sigcheck: SigCheck) -> Mutation:
    """Validate one imported metadata file; return the closure that folds it in."""
    try:
        parsed = parse_root(ev.metadata) if ev.role == ROOT else parse_targets(ev.metadata)
    except TufFormatError as e:
        raise RejectedEventError(Reject.MALFORMED, f"{ev.repo} {ev.role}: {e}") from e
    if isinstance(parsed, Root):  # ev.role == ROOT
        return _root(st, ev, parsed, log_time, offset, sigcheck)
    return _targets(st, ev, parsed, log_time, offset, sigcheck)


# -- keys and signatures --------------------------------------------------------------------


def _usable(keys: dict[str, MetaKey], keyids: tuple[str, ...], gun: str | None, at: int | None) -> dict[str, PublicKey]:
    """TUF key id -> trustlog key for the keys of a role that can count. With ``gun``,
    Notary's root-certificate rules apply: the certificate names the GUN and (with
    ``at``) is valid at that time."""
    out: dict[str, PublicKey] = {}
    for kid in keyids:
        k = keys[kid]
        if k.key is None:
            continue
        if k.cert_not_after is not None and gun is not None:
            if k.cert_cn != gun:
                continue
            if at is not None and not (k.cert_not_before or 0) <= at <= k.cert_not_after:
                continue
        try:
            if validate_public_key(k.key) != k.key:
                continue
        except KeyMaterialError:
            continue
        out[kid] = k.key
    return out


def _count(repo: RepoState | None, meta: Signed, keys: dict[str, PublicKey], threshold: int, log_time: int, sigcheck: SigCheck,
           what: str, short: Reject = Reject.THRESHOLD_NOT_MET) -> tuple[str, ...]:
    """The trustlog key ids whose signatures on ``meta`` count (each key material once),
    or a rejection, by the same rule as native events (``count_signers``)."""
    sigs: list[Signature] = []
    by_id: dict[str, PublicKey] = {}
    for s in meta.signatures:
        k = keys.get(s.keyid)
        if k is None:
            continue
        if s.method and s.method != _METHOD_OF_KEYTYPE[k.keytype]:
            raise RejectedEventError(Reject.BAD_SIGNATURE, f"{what}: signature by {s.keyid[:16]}… uses method {s.method!r}; "
                          f"the key signs with {_METHOD_OF_KEYTYPE[k.keytype]!r}")
        by_id[k.keyid] = k
        sigs.append(Signature(k.keyid, s.sig))
    env = Envelope(meta.message, sigs)
    signers: tuple[str, ...] = count_signers(repo, env, by_id, threshold, log_time, sigcheck, what, short)
    return signers


def _mapped_sigs(meta: Signed, keys: dict[str, PublicKey]) -> list[tuple[str, bytes]]:
    return [(keys[s.keyid].keyid, s.sig) for s in meta.signatures if s.keyid in keys]


# -- root -----------------------------------------------------------------------------------


def _root_grant_expiry(root: Root, keys: dict[str, PublicKey]) -> int:
    exp = root.meta.expires
    certs = [c for k in keys if (c := root.keys[k].cert_not_after) is not None]
    return min(exp, max(certs)) if certs else exp


def _root(st: TrustState, ev: MetadataImported, root: Root, log_time: int, offset: int, sigcheck: SigCheck) -> Mutation:
    now = log_time // 1_000_000_000
    rk, tk = root.roles[ROOT], root.roles[TARGETS]
    notary = root.meta.dialect == "notary"
    new_keys = _usable(root.keys, rk.keyids, ev.repo if notary else None, now)
    targets_keys = _usable(root.keys, tk.keyids, None, None)
    repo = st.repos.get(ev.repo)
    if repo is None:
        if not is_repo(ev.repo):  # the one grammar (core.names), as for RepoCreated
            raise RejectedEventError(Reject.INVALID_FIELD, f"{ev.repo!r} is not a valid repository name (GUN, at most "
                          f"{MAX_REPO_LEN} characters)")
        if ev.version != 1:
            raise RejectedEventError(Reject.VERSION_SKIP, f"{ev.repo}: a repository starts at version 1, not {ev.version}")
        if root.meta.version != 1:
            raise RejectedEventError(Reject.VERSION_SKIP, f"{ev.repo}: the first root imported must be version 1 "
                          f"(the start of its chain), not {root.meta.version}")
        # every matching pin must name every root key that counts, by any of its ids
        # (the same rule as RepoCreated: state.pinned_origin)
        aliases: dict[str, set[str]] = {}
        for kid, k in new_keys.items():
            aliases.setdefault(k.keyid, set()).update({kid, root.keys[kid].canonical_id} - {k.keyid, None})  # type: ignore[arg-type]  # None is subtracted
        origin = pinned_origin(st.pins, ev.repo, [frozenset({tid, *a}) for tid, a in aliases.items()])
        signers = _count(None, root.meta, new_keys, rk.threshold, log_time, sigcheck, "root")

        def create() -> None:
            repo = RepoState(ev.repo, origin)
            repo.tuf = TufRepo(root.meta.dialect, 1, ev.metadata,
                               first_root_names={tid: sorted(a) for tid, a in aliases.items()})
            for k in (*new_keys.values(), *targets_keys.values()):
                repo.keys[k.keyid] = k
            exp = _root_grant_expiry(root, new_keys)
            repo.grants.append(Grant(0, ROOT, _ids(new_keys), rk.threshold, (), exp, log_time, offset, None, signers))
            repo.grants.append(Grant(1, TARGETS, _ids(targets_keys), tk.threshold, (), exp, log_time, offset, 0, signers))
            repo.roles[ROOT], repo.roles[TARGETS] = 0, 1
            st.repos[ev.repo] = repo
            _refresh(repo, offset)

        return create

    tuf = _tuf_repo(repo, ev)
    st._repo_for(ev)
    if root.meta.dialect != tuf.dialect:
        raise RejectedEventError(Reject.MALFORMED, f"{ev.repo}: {root.meta.dialect} metadata for a {tuf.dialect} repository")
    v, cur = root.meta.version, tuf.root_version
    if v <= cur:
        raise RejectedEventError(Reject.VERSION_ROLLBACK, f"{ev.repo}: root version {v} is not above the current {cur}")
    if v != cur + 1:
        raise RejectedEventError(Reject.VERSION_SKIP, f"{ev.repo}: root version {v} skips ahead; expected {cur + 1}")
    old = parse_root(tuf.root_metadata)
    old_grant = repo.role_grant(ROOT)
    assert old_grant is not None  # a TUF repository always has a root grant
    old_keys = {kid: k for kid, k in _usable(old.keys, old.roles[ROOT].keyids, ev.repo if notary else None, None).items()
                if k.keyid in old_grant.keyids}
    signers = _count(repo, root.meta, old_keys, old_grant.threshold, log_time, sigcheck,
                     "root rotation (old root keys)", Reject.ROOT_OLD_THRESHOLD)
    new_signers = _count(repo, root.meta, new_keys, rk.threshold, log_time, sigcheck, "root rotation (new root keys)",
                         Reject.ROOT_NEW_THRESHOLD)

    def rotate() -> None:
        for k in (*new_keys.values(), *targets_keys.values()):
            repo.keys[k.keyid] = k
        gid = len(repo.grants)
        exp = _root_grant_expiry(root, new_keys)
        repo.grants.append(Grant(gid, ROOT, _ids(new_keys), rk.threshold, (), exp, log_time, offset,
                                   old_grant.grant_id, signers))
        repo.roles[ROOT] = gid
        cur_t = repo.role_grant(TARGETS)
        if cur_t is None or set(cur_t.keyids) != set(_ids(targets_keys)) or cur_t.threshold != tk.threshold:
            tid = len(repo.grants)
            repo.grants.append(Grant(tid, TARGETS, _ids(targets_keys), tk.threshold, (), exp, log_time, offset,
                                       gid, new_signers))
            repo.roles[TARGETS] = tid
        tuf.root_version, tuf.root_metadata = v, ev.metadata
        _refresh(repo, offset)

    return rotate


def _ids(keys: dict[str, PublicKey]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(k.keyid for k in keys.values()))


def _tuf_repo(repo: RepoState, ev: MetadataImported) -> TufRepo:
    if repo.tuf is None:
        raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.repo}: a native trustlog repository; TUF/Notary metadata cannot be "
                      "imported into it")
    return repo.tuf


# -- targets and delegated roles ------------------------------------------------------------


def _role_keys(repo: RepoState, tuf: TufRepo, role: str) -> dict[str, PublicKey]:
    """TUF key id -> trustlog key of the keys the current metadata gives ``role``."""
    if role == TARGETS:
        root = parse_root(tuf.root_metadata)
        grant = repo.role_grant(TARGETS)
        assert grant is not None
        return {kid: k for kid, k in _usable(root.keys, root.roles[TARGETS].keyids, None, None).items()
                if k.keyid in grant.keyids}
    parent = tuf.roles[tuf.delegator[role]]
    d = next(d for d in parent.delegations if d.name == role)
    return {tkid: repo.keys[kid] for tkid, kid in d.keymap.items()}


def _targets(st: TrustState, ev: MetadataImported, t: Targets, log_time: int, offset: int, sigcheck: SigCheck) -> Mutation:
    repo = st.repos.get(ev.repo)
    if repo is None:
        raise RejectedEventError(Reject.UNKNOWN_REPOSITORY, f"repository {ev.repo!r} does not exist; import its root first")
    tuf = _tuf_repo(repo, ev)
    st._repo_for(ev)
    role = ev.role
    if t.meta.dialect != tuf.dialect:
        raise RejectedEventError(Reject.MALFORMED, f"{ev.repo}: {t.meta.dialect} metadata for a {tuf.dialect} repository")
    if role != TARGETS and role not in tuf.delegator:
        raise RejectedEventError(Reject.UNKNOWN_ROLE, f"{ev.repo}: no current metadata delegates to {role!r}")
    cur = tuf.roles.get(role)
    if cur is not None and t.meta.version <= cur.version:
        if t.meta.version == cur.version and t.meta.message != cur.message:
            raise RejectedEventError(Reject.METADATA_CHANGED, f"{ev.repo} {role}: version {cur.version} was re-signed with "
                          "different content")
        raise RejectedEventError(Reject.VERSION_ROLLBACK, f"{ev.repo} {role}: version {t.meta.version} is not above the "
                      f"current {cur.version}")
    grant = repo.role_grant(role)
    assert grant is not None
    keys = _role_keys(repo, tuf, role)
    signers = _count(repo, t.meta, keys, grant.threshold, log_time, sigcheck, f"{ev.repo} {role}")
    # the delegations this metadata makes
    # the names it brings in become tags and roles of the state: the one grammar (core.names)
    bad_path = next((p for p in t.targets if not is_target_path(p)), None)
    if bad_path is not None:
        raise RejectedEventError(Reject.INVALID_FIELD, f"{ev.repo} {role}: target {bad_path!r} is not a target path "
                      "(tag characters in '/'-separated parts, none empty or starting with '.')")
    bad_role = next((d.name for d in t.delegations if not is_imported_role(d.name)), None)
    if bad_role is not None:
        raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.repo} {role}: delegated role {bad_role!r} is not a role name "
                      "(tag characters in '/'-separated parts)")
    parent_paths = _delegated_paths(tuf, role)
    new_dels: list[tuple[TufDelegation, dict[str, PublicKey]]] = []
    for d in t.delegations:
        if tuf.dialect == "notary":
            # Notary's client never writes a delegation wider than its parent (it
            # restricts on read): one that is can only be tampering or a foreign writer
            if d.paths is None:
                raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.repo} {role}: {d.name!r} uses path hash prefixes, which "
                              "Notary does not")
            if parent_paths is not None:
                wide = [p for p in d.paths if not any(p.startswith(q) for q in parent_paths)]
                if wide:
                    raise RejectedEventError(Reject.OUTSIDE_PATTERNS, f"{ev.repo} {role}: delegation {d.name!r} claims paths "
                                  f"{wide} outside {role}'s own {parent_paths}")
        if tuf.dialect == "notary" and d.name.rsplit("/", 1)[0] != role:
            raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.repo} {role}: Notary role {d.name!r} must be delegated by "
                          f"{d.name.rsplit('/', 1)[0]!r}")
        other = tuf.delegator.get(d.name)
        if other is not None and other != role:
            raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.repo} {role}: {d.name!r} is already delegated by {other!r}")
        if d.name == role or _is_above(tuf, d.name, role):
            raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.repo} {role}: delegation to {d.name!r} makes a cycle")
        dk = _usable(t.keys, d.keyids, None, None)
        td = TufDelegation(d.name, list(_ids(dk)), d.threshold,
                           list(d.paths) if d.paths is not None else None,
                           list(d.path_hash_prefixes) if d.path_hash_prefixes is not None else None,
                           d.terminating, {tkid: k.keyid for tkid, k in dk.items()})
        new_dels.append((td, dk))
    if len(tuf.delegator) + len(new_dels) > MAX_DELEGATED_ROLES:
        raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.repo}: more than {MAX_DELEGATED_ROLES} delegated roles")
    targets = {p: (f.sha256, f.length) for p, f in t.targets.items() if f.sha256 is not None}

    def fold() -> None:
        before = {d.name for d in cur.delegations} if cur is not None else set()
        tuf.roles[role] = TufRole(t.meta.version, t.meta.expires, t.meta.message, _mapped_sigs(t.meta, keys), targets,
                                  [d for d, _ in new_dels], log_time, offset, ev.version)
        for d, dk in new_dels:
            for k in dk.values():
                repo.keys[k.keyid] = k
            g = repo.role_grant(d.name)
            spec = (tuple(d.keyids), d.threshold, tuple(d.paths or d.path_hash_prefixes or ()))
            if g is None or (g.keyids, g.threshold, g.paths) != spec or g.parent != grant.grant_id or g.signers != signers:
                gid = len(repo.grants)
                repo.grants.append(Grant(gid, d.name, spec[0], d.threshold, spec[2], t.meta.expires, log_time,
                                           offset, grant.grant_id, signers))
                repo.roles[d.name] = gid
            tuf.delegator[d.name] = role
        for gone in before - {d.name for d, _ in new_dels}:
            _drop(repo, tuf, gone, offset)
        _refresh(repo, offset)

    return fold


def _delegated_paths(tuf: TufRepo, role: str) -> list[str] | None:
    """The paths ``role``'s delegator gives it (None for ``targets``: everything)."""
    parent = tuf.delegator.get(role)
    if parent is None or parent not in tuf.roles:
        return None
    for d in tuf.roles[parent].delegations:
        if d.name == role:
            return d.paths if d.paths is not None else []
    return None


def _is_above(tuf: TufRepo, name: str, role: str) -> bool:
    r = role
    while r in tuf.delegator:
        r = tuf.delegator[r]
        if r == name:
            return True
    return False


def _drop(repo: RepoState, tuf: TufRepo, name: str, offset: int) -> None:
    """A delegation no longer made: the role and everything beneath it go."""
    rs = tuf.roles.pop(name, None)
    if rs is not None:
        for d in rs.delegations:
            if tuf.delegator.get(d.name) == name:
                _drop(repo, tuf, d.name, offset)
    tuf.delegator.pop(name, None)
    for g in repo.grants:
        if g.role == name and g.removed_offset is None:
            g.removed_offset = offset
    repo.roles.pop(name, None)


# -- the tag view -----------------------------------------------------------------------------


def _matches(d: TufDelegation, path: str, dialect: str) -> bool:
    if d.paths is not None:
        if dialect == "notary":
            return any(path.startswith(p) for p in d.paths)
        t_parts = path.split("/")
        for p in d.paths:
            p_parts = p.split("/")
            if len(p_parts) == len(t_parts) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(t_parts, p_parts)):
                return True
        return False
    h = hashlib.sha256(path.encode()).hexdigest()
    return any(h.startswith(p) for p in d.path_hash_prefixes or ())


def resolve(tuf: TufRepo, path: str) -> str | None:
    """The role whose metadata decides ``path``: python-tuf's pre-order depth-first
    search (``Updater._preorder_depth_first_walk``) over the folded metadata."""
    stack = [TARGETS]
    visited: set[str] = set()
    while stack and len(visited) <= MAX_SEARCH_ROLES:
        role = stack.pop()
        if role in visited:
            continue
        rs = tuf.roles.get(role)
        if rs is None:
            continue
        if path in rs.targets:
            return role
        visited.add(role)
        children: list[str] = []
        for d in rs.delegations:
            if _matches(d, path, tuf.dialect):
                children.append(d.name)
                if d.terminating:
                    stack.clear()
                    break
        stack.extend(reversed(children))
    return None


def _refresh(repo: RepoState, offset: int) -> None:
    """Recompute grant expiries and the tag → entry view from the folded metadata."""
    tuf = repo.tuf
    root_g = repo.role_grant(ROOT)
    assert tuf is not None and root_g is not None
    # expiry: targets grant = targets.json's; a delegated grant = the earliest above it
    above: dict[str, int] = {}
    ts = tuf.roles.get(TARGETS)
    tg = repo.role_grant(TARGETS)
    assert tg is not None
    tg.expires = ts.expires if ts is not None else root_g.expires
    if ts is not None:
        todo = [(TARGETS, ts.expires)]
        while todo:
            name, exp = todo.pop()
            rs = tuf.roles.get(name)
            if rs is None:
                continue
            for d in rs.delegations:
                if d.name in above:
                    continue
                above[d.name] = exp
                g = repo.role_grant(d.name)
                if g is not None:
                    g.expires = exp
                child = tuf.roles.get(d.name)
                if child is not None:
                    todo.append((d.name, min(exp, child.expires)))
    view: dict[str, str] = {}
    for rs in tuf.roles.values():
        for path in rs.targets:
            if path not in view:
                r = resolve(tuf, path)
                if r is not None:
                    view[path] = r
    for tag in [t for t in repo.tags if t not in view]:
        del repo.tags[tag]
        owned(repo, "deleted_tags")[tag] = offset
    for path, role in view.items():
        rs = tuf.roles[role]
        sha, length = rs.targets[path]
        gid = repo.roles[role]
        e = repo.tags.get(path)
        digest = "sha256:" + sha
        if (e is not None and e.role == role and e.grant_id == gid and e.offset == rs.offset and e.digest == digest
                and e.size == length):
            continue
        repo.tags[path] = TagEntry(path, digest, length, rs.expires, role, gid, rs.log_time, rs.offset,
                                     rs.event_version, rs.message, tuple(rs.signatures))
        repo.deleted_tags.pop(path, None)


def imported_postings(st: TrustState, ev: MetadataImported) -> tuple[int | None, list[str], list[str]]:
    """For the key index, from the state before ``ev``: the grant whose keys sign it,
    the trustlog key ids whose signatures it carries, and the keys it gives authority
    (a root's keys; the keys of the delegations a targets file makes). Best effort on
    a file the fold will refuse: nothing."""
    try:
        parsed = parse_root(ev.metadata) if ev.role == ROOT else parse_targets(ev.metadata)
    except TufFormatError:
        return None, [], []
    repo = st.repos.get(ev.repo)
    gid = repo.roles.get(ev.role) if repo is not None else None
    known: dict[str, PublicKey] = {}
    granted: dict[str, PublicKey]
    if isinstance(parsed, Root):  # ev.role == ROOT
        granted = {kid: pk for r in (ROOT, TARGETS) for kid in parsed.roles[r].keyids
                   if (pk := parsed.keys[kid].key) is not None}
        known.update(granted)
        if repo is not None and repo.tuf is not None:
            try:
                old = parse_root(repo.tuf.root_metadata)
                known.update({kid: k.key for kid, k in old.keys.items() if k.key is not None})
            except TufFormatError:
                pass
    else:
        granted = {kid: pk for kid, k in parsed.keys.items() if (pk := k.key) is not None}
        if repo is not None and repo.tuf is not None:
            tuf = repo.tuf
            try:
                if ev.role == TARGETS or ev.role in tuf.delegator:
                    known = _role_keys(repo, tuf, ev.role) if repo.role_grant(ev.role) is not None else {}
            except (TufFormatError, StopIteration, KeyError):
                known = {}
    signed = [known[s.keyid].keyid for s in parsed.meta.signatures if s.keyid in known]
    return gid, list(dict.fromkeys(signed)), list(dict.fromkeys(k.keyid for k in granted.values()))


# The fold's table of rules gets this one from here rather than core/state.py importing
# this module, which builds on state's helpers (the way back would be an import cycle).
# core/__init__.py imports this module, so the rule is in the table before any fold runs.
_HANDLERS[MetadataImported] = metadata_imported

__all__ = ["imported_postings", "metadata_imported", "resolve"]
