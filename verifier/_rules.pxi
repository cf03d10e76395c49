# Included by _cverify.pyx: the key-chain rules over the compiled state.
#
# The file to read beside core/evaluate.py (the reference): the same rules in the same
# order, each step marked with its Python twin. tests/test_chain_differential.py checks
# every verdict against the reference on generated histories; a divergence between the
# two is a security bug.
#
#   compiled (here)      reference (core/evaluate.py)
#   _current_policy      effective_threshold, tag_patterns_apply, paths_cover (the role's
#                        current grant, read once per role when a repository is compiled)
#   grant_faults         grant_fault for every grant of a repository, memoised at compile
#   grant_fault          grant_fault, read from that memo: ROLE_REMOVED, DELEGATION_COMPROMISED
#   paths_fault          paths_fault: OUTSIDE_PATTERNS (ROW_OUTSIDE, set at compile)
#   expiry_fault         expiry_fault: EXPIRED (detail: which expiry, X_*)
#   evaluate_entry       evaluate_entry: (1) the signatures (BAD_SIGNATURE, KEY_COMPROMISED,
#                        THRESHOLD_NOT_MET), (2) grant_fault, (3) paths_fault,
#                        (4) expiry_fault, else VALID
#
# Reasons are not built here: verifier/compiled.py words each verdict byte and detail
# from the table in core/verdict_codes.py, the one core/evaluate.py words from.

import fnmatch as _fnmatch
import re as _re

from trustlog.core.evaluate import tag_patterns_apply as _tag_patterns_apply


def _current_policy(repo, role):
    """``(threshold, matcher)`` of ``role``'s current grant: ``matcher(tag)`` is None
    when its paths do not cover the tag (None for targets, which signs every tag);
    ``(None, None)`` when the role has no current grant. The twin of
    ``effective_threshold`` and ``paths_fault`` (``tag_patterns_apply``, ``paths_cover``),
    evaluated once per role when a repository is compiled."""
    g = repo.role_grant(role)
    if g is None:
        return (None, None)
    thr = g.threshold
    if type(thr) is not int or not 0 <= thr <= INT32_MAX:
        raise ValueError(f"{role}: threshold {thr!r} out of range")
    if not _tag_patterns_apply(repo, role) or "*" in g.paths:   # targets, imported, or a catch-all
        return (thr, None)
    rx = _re.compile("|".join(f"(?:{_fnmatch.translate(p)})" for p in g.paths) or "(?!)", _re.DOTALL)
    return (thr, rx.match)


cdef void grant_faults(CT *c, int32_t si) noexcept nogil:
    """grant_fault of the reference for every grant of slot ``si``, memoised in the
    grants (fault, fault_at) when the slot is compiled; read by grant_fault below."""
    cdef SlotC *r = &c.slots[si]
    cdef GrantC *G = c.grants + r.grant_base
    cdef int32_t n = r.ngrants, g0, g, stop, at, steps, p, j, t, good, m, m2
    cdef uint8_t res
    cdef int32_t *gs
    cdef bint dup
    for g in range(n):
        G[g].fault = F_UNKNOWN
        G[g].fault_at = -1
    for g0 in range(n):
        if G[g0].fault != F_UNKNOWN:
            continue
        g = g0
        steps = 0
        while True:
            if G[g].fault != F_UNKNOWN:
                res = G[g].fault
                at = G[g].fault_at
                break
            if steps > n:                       # a cycle: never from the fold
                res = F_ERROR
                at = g0
                break
            steps += 1
            if G[g].flags & G_REMOVED:
                res = F_REMOVED
                at = g
                break
            if G[g].flags & G_ERROR:
                res = F_ERROR
                at = g
                break
            # distinct key materials among its signers not compromised at its log time
            gs = c.gsig + r.gs_base + G[g].gs_start
            good = 0
            for j in range(G[g].gs_n):
                m = c.keys[r.key_base + gs[j]].mat
                if c.mats[r.mat_base + m] <= G[g].log_time:
                    continue
                dup = False
                for t in range(j):
                    m2 = c.keys[r.key_base + gs[t]].mat
                    if m2 == m and c.mats[r.mat_base + m2] > G[g].log_time:
                        dup = True
                        break
                if not dup:
                    good += 1
            if good < G[g].chain_thr:
                res = F_DELEG
                at = g
                break
            p = G[g].parent
            if p < 0:
                res = F_NONE
                at = -1
                break
            g = p
        stop = g
        g = g0
        steps = 0
        while steps <= n:
            if G[g].fault == F_UNKNOWN:
                G[g].fault = res
                G[g].fault_at = at
            if g == stop:
                break
            p = G[g].parent
            if p < 0 or p >= n:
                break
            g = p
            steps += 1


cdef inline uint8_t grant_fault(const GrantC *g, int32_t *detail) noexcept nogil:
    """grant_fault of the reference, read from the memo grant_faults filled at compile
    time: V_NONE (no fault), V_ROLE_REMOVED or V_DELEGATION_COMPROMISED (detail: the
    grant at fault), V_ERROR (E_CHAIN)."""
    if g.fault == F_NONE:
        return V_NONE
    if g.fault == F_REMOVED:
        detail[0] = g.fault_at
        return V_ROLE_REMOVED
    if g.fault == F_DELEG:
        detail[0] = g.fault_at
        return V_DELEGATION_COMPROMISED
    detail[0] = E_CHAIN
    return V_ERROR


cdef inline uint8_t paths_fault(const RowC *e) noexcept nogil:
    """paths_fault of the reference: whether the role's current paths still cover the
    tag was decided when the row was compiled (_current_policy sets ROW_OUTSIDE)."""
    return V_OUTSIDE_PATTERNS if e.flags & ROW_OUTSIDE else V_NONE


cdef inline uint8_t expiry_fault(const CT *c, const RowC *e, const SlotC *r, const GrantC *g, int64_t expires,
                                 int64_t ref, int32_t *detail) noexcept nogil:
    """expiry_fault of the reference, in its order: root, targets, the signing role as it
    is now, the grant that signed the tag, the tag's signature (detail: X_*). V_VALID when
    nothing expired at ``ref``."""
    if r.root_exp <= ref:
        detail[0] = X_ROOT
        return V_EXPIRED
    if r.targets_exp <= ref:
        detail[0] = X_TARGETS
        return V_EXPIRED
    if e.role >= 0:
        if e.role >= r.nroles:
            detail[0] = E_ROLE
            return V_ERROR
        if c.roles[r.role_base + e.role].expires <= ref:
            detail[0] = X_ROLE
            return V_EXPIRED
    if g.expires <= ref:
        detail[0] = X_GRANT
        return V_EXPIRED
    if expires <= ref:
        detail[0] = X_SIGNATURE
        return V_EXPIRED
    return V_VALID


cdef inline uint8_t evaluate_entry(const CT *c, int64_t i, int64_t ref, int32_t *detail, uint8_t *cnt) noexcept nogil:
    """Verdict byte of row i at reference time ``ref``: evaluate_entry of the reference,
    steps (1) to (4) in its order (V_NONE for a dead row)."""
    cdef const RowC *e = &c.rows[i]
    cdef const SlotC *r
    cdef const GrantC *g
    cdef const SigC *S
    cdef const StoreRowC *sr
    cdef int32_t j, t, counted = 0, bad = 0, comp = 0, m, k, thr
    cdef int64_t log_time, expires
    cdef bint dup
    cdef uint8_t v
    detail[0] = 0
    if e.flags & ROW_DEAD:
        return V_NONE
    if e.nsig:
        memset(cnt, 0, <size_t>e.nsig)
    if e.flags & ROW_ERROR:
        detail[0] = E_ROW
        return V_ERROR
    r = &c.slots[e.repo]
    if r.flags:
        detail[0] = E_REPO
        return V_ERROR
    if e.grant < 0 or e.grant >= r.ngrants:
        detail[0] = E_GRANT
        return V_ERROR
    g = &c.grants[r.grant_base + e.grant]
    if e.ext >= 0:
        log_time = c.xrows[e.ext].log_time
        expires = c.xrows[e.ext].expires
    elif r.srows != NULL and r.row_start <= i < r.row_start + r.nrows:
        sr = &r.srows[i - r.row_start]     # current: checked (SLOT_STALE) before the call
        log_time = sr.log_time
        expires = sr.expires
    else:
        detail[0] = E_ROW
        return V_ERROR
    if e.role >= 0:
        if e.role >= r.nroles:
            detail[0] = E_ROLE
            return V_ERROR
        thr = c.roles[r.role_base + e.role].thr
    else:
        thr = r.targets_thr
    if thr < 0:
        thr = g.thr         # the role has no current grant: the signing grant's threshold
    S = c.sigs + e.sig_start
    # (1) signatures: valid, by a member key, not compromised when appended, each key once
    #     (evaluate_entry's loop over entry.signatures; thr is effective_threshold)
    for j in range(e.nsig):
        if not S[j].member:
            continue
        if S[j].valid != 1:
            if S[j].valid == S_UNKNOWN:
                detail[0] = E_UNVERIFIED
                return V_ERROR
            bad += 1
            continue
        k = S[j].key
        if k < 0 or k >= r.nkeys:
            detail[0] = E_KEY
            return V_ERROR
        m = c.keys[r.key_base + k].mat
        if m < 0 or m >= r.nmats:
            detail[0] = E_KEY
            return V_ERROR
        if c.mats[r.mat_base + m] <= log_time:
            comp += 1
            continue
        dup = False
        for t in range(j):
            if cnt[t] and c.keys[r.key_base + S[t].key].mat == m:
                dup = True
                break
        if not dup:
            cnt[j] = 1
            counted += 1
    if counted < thr:
        if bad:
            detail[0] = bad
            return V_BAD_SIGNATURE
        if comp:
            return V_KEY_COMPROMISED
        detail[0] = counted
        return V_THRESHOLD_NOT_MET
    # (2) the chain of authority above the signing keys
    v = grant_fault(g, detail)
    if v != V_NONE:
        return v
    # (3) the role's current paths
    v = paths_fault(e)
    if v != V_NONE:
        return v
    # (4) expiry at the run's fixed reference time
    return expiry_fault(c, e, r, g, expires, ref, detail)
