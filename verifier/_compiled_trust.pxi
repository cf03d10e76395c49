# Included by _cverify.pyx: CompiledTrust, a TrustState compiled to flat arrays.
#
# Compiles each repository into the tables of _structs.pxi (recompiling only those whose
# version changed, compacting when dead space outgrows live), gives every signature a
# validity byte (ensure: the row, else the SigCache, else verified in parallel with the
# GIL released), and evaluates rows with the rules of _rules.pxi on every core.
#
# Crypto validity of a signature is computed once: its BLAKE2b-128 cache key (the same
# bytes as trustlog.core.sigcache.cache_key) is looked up in SigCache, and misses are
# verified in parallel with the GIL released; the byte then lives in the row, so a
# recompiled repository carries it over and a warm run only re-evaluates trust.

from array import array as _array

from trustlog.core.keys import ALG_BY_KEYTYPE as _ALG_BY_KEYTYPE, key_material_id as _key_material_id

cdef enum:
    _ENSURE_CHUNK = 8192    # signatures hashed, looked up and verified at a time (ensure)

cdef object _NO_VIEW = object()
cdef object _mutations_fn = None


cdef long long _store_mutations() except? -2:
    """core._tagstore_c.mutations(): changes of any compact store (0 without the module)."""
    global _mutations_fn
    if _mutations_fn is None:
        try:
            from trustlog.core._tagstore_c import mutations as f
        except ImportError:
            f = lambda: 0       # noqa: E731 - no compact store can exist
        _mutations_fn = f
    return _mutations_fn()


cdef class _Rec:
    """Python-side bookkeeping of one slot (references, and what its compilation saw).

    Kept small (one per repository: ~150 bytes and the key references): the maps from
    key ids, key materials and roles to local indices are rebuilt at each compilation,
    except ``key_idx`` while the slot has rows compiled from TagEntrys, whose validity
    bytes are carried over to the next compilation by local key index."""

    cdef public object name, repo, version, error
    cdef public dict key_idx        # key id -> local key index (None: rebuilt at the next compilation)
    cdef public tuple key_refs      # the public key bytes the slot's KeyC point into
    cdef public object store        # the compact tag store its rows were compiled from in place (or None)
    cdef unsigned long long store_gen   # ... and that store's generation then
    cdef int64_t shape[6]           # _shape_of the repository when compiled

    def __init__(self, name):
        self.name = name
        self.store = None
        self.store_gen = 0
        self.repo = None
        self.version = None
        self.key_idx = None
        self.key_refs = ()
        self.error = None
        self.shape[5] = -2          # matches no repository: compiled on first sight

    cdef bint same_shape(self, repo) except -1:
        cdef int64_t now[6]
        _shape_of(repo, now)
        return memcmp(now, self.shape, sizeof(now)) == 0


cdef class CompiledTrust:
    """A TrustState compiled to flat arrays, kept up to date by per-repository deltas.

    Not thread-safe: one Python thread drives it (its C parts use every core).
    """

    cdef readonly object state
    cdef readonly SigCache cache
    cdef object pycache             # an optional CryptoCache consulted and filled on misses
    cdef object crypto              # an optional batch crypto function (else the C one)
    cdef readonly int nthreads
    cdef Buf slots, keys, mats, grants, gsig, roles, rows, sigs, xrows
    cdef PtrMap pm
    cdef list recs
    cdef dict by_name
    cdef readonly Py_ssize_t live_rows, live_sigs, dead_rows, dead_sigs, dead_hdr, live_hdr
    cdef Py_ssize_t dead_x          # freed RowX entries (reclaimed by compaction)
    cdef readonly Py_ssize_t compact_min
    cdef readonly unsigned long long recompiled, compactions, verified, cache_hits
    cdef long long all_current_at    # store changes counted at the last full refresh (-1: none since)

    def __cinit__(self):
        self.all_current_at = -1
        buf_init(&self.slots, sizeof(SlotC))
        buf_init(&self.keys, sizeof(KeyC))
        buf_init(&self.mats, sizeof(int64_t))
        buf_init(&self.grants, sizeof(GrantC))
        buf_init(&self.gsig, sizeof(int32_t))
        buf_init(&self.roles, sizeof(RoleC))
        buf_init(&self.rows, sizeof(RowC))
        buf_init(&self.sigs, sizeof(SigC))
        buf_init(&self.xrows, sizeof(RowX))
        self.pm.keys = NULL
        self.pm.vals = NULL
        self.pm.cap = 0
        self.pm.count = 0

    def __init__(self, state, SigCache cache=None, *, pycache=None, crypto=None, int nthreads=0,
                 Py_ssize_t compact_min=4096):
        """``compact_min``: dead rows (or header entries) tolerated before compaction is
        considered; it then runs when dead space outgrows live space."""
        self.compact_min = compact_min
        if nthreads < 0:
            raise ValueError(f"nthreads must be >= 0, got {nthreads}")
        self.state = state
        self.cache = cache if cache is not None else SigCache()
        self.pycache = pycache
        self.crypto = crypto
        self.nthreads = nthreads if nthreads > 0 else default_threads()
        self.recs = []
        self.by_name = {}

    def __dealloc__(self):
        cdef Py_ssize_t i
        cdef RowX *X = <RowX *>self.xrows.p
        for i in range(self.xrows.n):
            Py_XDECREF(X[i].obj)
            Py_XDECREF(X[i].payload)
            Py_XDECREF(X[i].sigtuple)
        buf_free(&self.slots)
        buf_free(&self.keys)
        buf_free(&self.mats)
        buf_free(&self.grants)
        buf_free(&self.gsig)
        buf_free(&self.roles)
        buf_free(&self.rows)
        buf_free(&self.sigs)
        buf_free(&self.xrows)
        pm_free(&self.pm)

    cdef inline PyObject *_entry_of(self, int64_t row) noexcept:
        """The TagEntry row ``row`` was compiled from (NULL: a compact store's C row)."""
        cdef int32_t x = (<RowC *>self.rows.p)[row].ext
        return NULL if x < 0 else (<RowX *>self.xrows.p)[x].obj

    cdef bint _has_entries(self, int64_t start, int64_t n) noexcept:
        """Whether rows ``start`` .. ``start + n`` include one compiled from a TagEntry."""
        cdef RowC *R = <RowC *>self.rows.p
        cdef int64_t i
        for i in range(start, start + n):
            if R[i].ext >= 0:
                return True
        return False

    cdef void _view(self, CT *c) noexcept:
        c.slots = <SlotC *>self.slots.p
        c.keys = <KeyC *>self.keys.p
        c.mats = <int64_t *>self.mats.p
        c.grants = <GrantC *>self.grants.p
        c.gsig = <int32_t *>self.gsig.p
        c.roles = <RoleC *>self.roles.p
        c.rows = <RowC *>self.rows.p
        c.sigs = <SigC *>self.sigs.p
        c.xrows = <RowX *>self.xrows.p

    # -- deltas ------------------------------------------------------------------------

    def refresh(self, repos=None):
        """Bring the arrays up to date with the state; return how many repositories
        were recompiled. Each repository costs one comparison of its version (and a
        few sizes) unless it changed. ``repos``: check only these RepoState objects
        (the ones a batch of requests names) instead of the whole state."""
        cdef int n = 0
        cdef Py_ssize_t slot
        st_repos = self.state.repos
        if repos is not None:
            for repo in repos:
                n += self._refresh_one(repo.name, repo)
        else:
            if self.slots.n == 0:
                self._reserve_for(st_repos)
            for name, repo in st_repos.items():
                n += self._refresh_one(name, repo)
            if len(self.by_name) > len(st_repos):
                for name in [nm for nm in self.by_name if nm not in st_repos]:
                    self._drop(self.by_name.pop(name))
        self.recompiled += n
        if self.dead_rows > self.compact_min and self.dead_rows > self.live_rows:
            self._compact()
        elif self.dead_x > self.compact_min and 2 * self.dead_x > self.xrows.n:
            self._compact()
        elif self.dead_hdr > self.compact_min and self.dead_hdr > 2 * self.live_hdr:
            self._compact()
        # every slot now reads its store as it is: until a store changes, a sweep need
        # not check them one by one (_read_stores)
        self.all_current_at = _store_mutations() if repos is None else -1
        return n

    cdef int _reserve_for(self, dict repos) except -1:
        """Before the first compilation of a whole state: room for its slots, rows and (one
        a row) signatures at once, so the tables are not grown by half, copied and left
        with up to a third unused (a state of millions of tags: tens of MB)."""
        cdef Py_ssize_t nrows = 0
        for repo in repos.values():
            nrows += len(repo.tags)
        buf_reserve(&self.slots, len(repos))
        buf_reserve(&self.rows, nrows)
        buf_reserve(&self.sigs, nrows)
        return 0

    cdef int _refresh_one(self, name, repo) except -1:
        cdef Py_ssize_t slot
        cdef _Rec rec
        got = self.by_name.get(name)
        if got is None:
            slot = buf_grow(&self.slots, 1)
            rec = _Rec(name)
            self.recs.append(rec)
            self.by_name[name] = slot
            self._compile(slot, rec, repo)
            return 1
        rec = self.recs[got]
        if rec.repo is not repo or rec.version != repo.version or not rec.same_shape(repo):
            self._compile(got, rec, repo)
            return 1
        return 0

    cdef void _release_rows(self, int64_t start, int64_t n) noexcept:
        cdef RowC *R = <RowC *>self.rows.p
        cdef RowX *X
        cdef int64_t i
        for i in range(start, start + n):
            if R[i].flags & ROW_DEAD:
                continue
            if R[i].ext >= 0:
                X = &(<RowX *>self.xrows.p)[R[i].ext]
                if X.obj != NULL and pm_get(&self.pm, <uint64_t>X.obj) == i:
                    pm_del(&self.pm, <uint64_t>X.obj)
                Py_XDECREF(X.obj)
                Py_XDECREF(X.payload)
                Py_XDECREF(X.sigtuple)
                X.obj = NULL
                X.payload = NULL
                X.sigtuple = NULL
                self.dead_x += 1
                R[i].ext = -1
            R[i].flags = ROW_DEAD

    cdef void _drop(self, Py_ssize_t slot):
        cdef SlotC *s = &(<SlotC *>self.slots.p)[slot]
        self._release_rows(s.row_start, s.nrows)
        self.live_rows -= s.nrows
        self.live_sigs -= s.nsigs
        self.dead_rows += s.nrows
        self.dead_sigs += s.nsigs
        hdr = s.nkeys + s.nmats + s.ngrants + s.ngs + s.nroles
        self.live_hdr -= hdr
        self.dead_hdr += hdr
        s.nrows = 0
        s.nsigs = 0
        s.flags = SLOT_DEAD
        rec = self.recs[slot]
        self.recs[slot] = _Rec(rec.name)

    cdef int _compile(self, Py_ssize_t slot, _Rec rec, repo) except -1:
        """Recompile one repository into fresh segments; the old ones become dead."""
        cdef SlotC old = (<SlotC *>self.slots.p)[slot]
        cdef SlotC *s
        cdef Py_ssize_t row0 = self.rows.n, sig0 = self.sigs.n
        cdef CT c
        old_refs = rec.key_refs
        role_idx = {}
        current = {}            # role -> (threshold now, matcher of its current paths or None)
        rec.error = None
        broken = False
        try:
            self._compile_header(slot, rec, repo)
        except Exception as e:  # noqa: BLE001 - fail closed: the whole repository is ERROR
            rec.error = f"{type(e).__name__}: {e}"
            broken = True
        s = &(<SlotC *>self.slots.p)[slot]
        s.row_start = row0
        s.sig_start = sig0
        s.srows = NULL
        s.targets_thr = -1
        if not broken:
            try:
                self._compile_rows(slot, rec, repo, old.row_start, old.nrows, role_idx, current)
            except Exception as e:  # noqa: BLE001
                rec.error = f"{type(e).__name__}: {e}"
                broken = True
        if not broken:
            try:
                self._compile_roles(slot, rec, repo, role_idx, current)
            except Exception as e:  # noqa: BLE001
                rec.error = f"{type(e).__name__}: {e}"
                broken = True
        s = &(<SlotC *>self.slots.p)[slot]
        s.nrows = self.rows.n - row0
        s.nsigs = self.sigs.n - sig0
        s.flags = SLOT_BROKEN if broken else 0
        self._release_rows(old.row_start, old.nrows)
        if not broken:
            self._view(&c)
            grant_faults(&c, <int32_t>slot)
        self.live_rows += s.nrows - old.nrows
        self.live_sigs += s.nsigs - old.nsigs
        self.dead_rows += old.nrows
        self.dead_sigs += old.nsigs
        hdr_old = old.nkeys + old.nmats + old.ngrants + old.ngs + old.nroles
        hdr_new = s.nkeys + s.nmats + s.ngrants + s.ngs + s.nroles
        self.live_hdr += hdr_new - hdr_old
        self.dead_hdr += hdr_old
        rec.repo = repo
        rec.version = repo.version
        _shape_of(repo, rec.shape)
        if not self._has_entries(s.row_start, s.nrows):
            rec.key_idx = None      # nothing to carry over by key index next time
        del old_refs
        return 0

    cdef int _compile_header(self, Py_ssize_t slot, _Rec rec, repo) except -1:
        cdef SlotC *s
        cdef KeyC *K
        cdef GrantC *G
        cdef int32_t *GS
        cdef int64_t *M
        cdef Py_ssize_t kb, mb, gb, gsb, i, j, nk, ng, ngs
        cdef bint bad
        keys = repo.keys
        if rec.key_idx is None:
            rec.key_idx = {}
        key_idx = rec.key_idx
        for keyid in keys:
            if keyid not in key_idx:
                key_idx[keyid] = len(key_idx)
        nk = len(key_idx)
        kb = buf_grow(&self.keys, nk)
        refs = [None] * nk
        mat_idx = {}
        for keyid, i in key_idx.items():
            key = keys.get(keyid)
            K = &(<KeyC *>self.keys.p)[kb + i]
            if key is None:
                K.mat = -1
                continue
            public = key.public
            if not isinstance(public, bytes):
                raise TypeError(f"key {keyid!r}: public key is not bytes")
            refs[i] = public
            K.ptr = <const uint8_t *>PyBytes_AS_STRING(public)
            K.len = <int32_t>PyBytes_GET_SIZE(public)
            K.alg = <uint8_t>_ALG_BY_KEYTYPE.get(key.keytype, 0)
            mat = _key_material_id(key)
            m = mat_idx.get(mat)
            if m is None:
                m = mat_idx[mat] = len(mat_idx)
            K.mat = <int32_t>m
        rec.key_refs = tuple(refs)
        # compromised_since per key material
        mb = buf_grow(&self.mats, len(mat_idx))
        compromised = repo.compromised
        for mat, i in mat_idx.items():
            since = compromised.get(mat)
            M = <int64_t *>self.mats.p
            M[mb + i] = INT64_MAX if since is None else _i64(since)
        # grants, and the keys of their parent that signed each
        grants = repo.grants
        ng = len(grants)
        ngs = 0
        for gr in grants:
            ngs += len(gr.signers)
        gb = buf_grow(&self.grants, ng)
        gsb = buf_grow(&self.gsig, ngs)
        ngs = 0
        for i in range(ng):
            gr = grants[i]
            G = &(<GrantC *>self.grants.p)[gb + i]
            bad = False
            if gr.grant_id != i:
                bad = True
            if gr.removed_offset is not None:
                G.flags |= G_REMOVED
            parent = gr.parent
            if parent is None:
                G.parent = -1
                G.chain_thr = _i32(gr.threshold, &bad)
            else:
                G.parent = _i32(parent, &bad)
                if not 0 <= G.parent < ng:
                    bad = True
                    G.parent = -1
                    G.chain_thr = 0
                else:
                    G.chain_thr = _i32(grants[parent].threshold, &bad)
            G.thr = _i32(gr.threshold, &bad)
            G.log_time = _i64(gr.log_time)
            G.expires = _i64(gr.expires)
            G.gs_start = ngs
            signers = gr.signers
            G.gs_n = <int32_t>len(signers)
            GS = <int32_t *>self.gsig.p
            for k in signers:
                j = key_idx.get(k, -1)
                if j < 0 or keys.get(k) is None:
                    bad = True
                    j = -1
                GS[gsb + ngs] = <int32_t>j
                ngs += 1
            if bad:
                G.flags |= G_ERROR
        s = &(<SlotC *>self.slots.p)[slot]
        s.key_base = kb
        s.nkeys = <int32_t>nk
        s.mat_base = mb
        s.nmats = <int32_t>len(mat_idx)
        s.grant_base = gb
        s.ngrants = <int32_t>ng
        s.gs_base = gsb
        s.ngs = <int32_t>ngs
        s.nroles = 0
        s.role_base = self.roles.n
        return 0

    cdef int _compile_roles(self, Py_ssize_t slot, _Rec rec, repo, dict role_idx, dict current) except -1:
        """The current grant of each role the rows name (``current``: role -> the
        ``_current_policy`` the rows were compiled with; a role missing from it belongs
        only to rows that failed: ERROR)."""
        cdef Py_ssize_t rb = buf_grow(&self.roles, len(role_idx))
        cdef SlotC *s
        cdef RoleC *RO = <RoleC *>self.roles.p
        for name, i in role_idx.items():
            g = repo.role_grant(name)
            RO[rb + i].expires = INT64_MAX if g is None else _i64(g.expires)
            cur = current.get(name)
            RO[rb + i].thr = -1 if cur is None or cur[0] is None else <int32_t>cur[0]
        s = &(<SlotC *>self.slots.p)[slot]
        cur = current.get("targets")
        s.targets_thr = -1 if cur is None or cur[0] is None else <int32_t>cur[0]
        s.role_base = rb
        s.nroles = <int32_t>len(role_idx)
        g = repo.role_grant("root")
        s.root_exp = INT64_MAX if g is None else _i64(g.expires)
        g = repo.role_grant("targets")
        s.targets_exp = INT64_MAX if g is None else _i64(g.expires)
        return 0

    cdef int _compile_rows(self, Py_ssize_t slot, _Rec rec, repo, int64_t old_start, int64_t old_n,
                           dict role_idx, dict current) except -1:
        """The rows of one repository; ``role_idx`` gets the local index of each role its
        tags name (other than targets), ``current`` each role's ``_current_policy``."""
        cdef Py_ssize_t ri, si, j, nsig, oi, r, nstore = 0, xi
        cdef RowC *e
        cdef RowC *o
        cdef RowX *X
        cdef RowX *OX
        cdef SigC *S
        cdef SigC *OS
        cdef SlotC *sl = &(<SlotC *>self.slots.p)[slot]
        cdef int64_t kb = sl.key_base
        cdef int32_t nk = sl.nkeys
        cdef int32_t ngr = sl.ngrants
        cdef bint bad
        cdef int64_t gid
        cdef KeyC *K
        cdef const StoreRowC *SR = NULL
        cdef const StoreRowC *sr
        cdef const uint8_t *sarena = NULL
        cdef uint32_t at, end, n32
        cdef uint16_t k16
        members = {}
        grants = repo.grants
        key_idx = rec.key_idx
        tags = repo.tags
        rec.store = None
        rec.store_gen = 0
        strs = None
        if hasattr(tags, "c_view"):
            if tags.dead_rows():
                tags.compact()     # a compact store's row k is then compiled row k (rows_for_items)
            view = tags.c_view()
            if view[0] == STORE_ROW_LAYOUT:     # else compiled through its entries, as a mapping
                SR = <const StoreRowC *><Py_ssize_t>view[1]
                nstore = view[2]
                sarena = <const uint8_t *><Py_ssize_t>view[3]
                rec.store = tags
                rec.store_gen = view[4]
                strs = view[5]
                sl.srows = SR
        it = None if SR != NULL else iter(tags.values())
        r = -1
        while True:
            r += 1
            sr = NULL
            if SR != NULL:
                if r >= nstore:
                    break
                if SR[r].role >= 0:
                    sr = &SR[r]
                    entry = None
                else:
                    entry = tags.entry_at(r)    # kept verbatim by the store: compiled as an entry
            else:
                entry = next(it, None)
                if entry is None:
                    break
            ri = buf_grow(&self.rows, 1)
            e = &(<RowC *>self.rows.p)[ri]
            e.repo = <int32_t>slot
            if self.sigs.n > UINT32_MAX - 0xFFFF:
                raise MemoryError("the compiled state holds at most 2**32 signatures")
            e.sig_start = <uint32_t>self.sigs.n
            e.role = -1
            e.ext = -1
            bad = False
            if sr != NULL:
                # -- a C row of the store: no Python object kept, the signatures in its arena
                try:
                    gid = sr.grant_id
                    if not 0 <= gid < ngr:
                        bad = True
                        gid = -1
                    e.grant = <int32_t>gid
                    role = strs[sr.role]
                    if role != "targets":
                        rr = role_idx.get(role)
                        if rr is None:
                            rr = role_idx[role] = len(role_idx)
                        e.role = <int32_t>rr
                    mem = members.get(gid) if gid >= 0 else frozenset()
                    if mem is None:
                        mem = members[gid] = frozenset(grants[gid].keyids)
                    cur = current.get(role)
                    if cur is None:
                        cur = current[role] = _current_policy(repo, role)
                    if cur[0] is None and gid >= 0:
                        _i32(grants[gid].threshold, &bad)   # the signing grant's applies (GrantC.thr)
                    if cur[1] is not None and cur[1](tags.name_at(r)) is None:
                        e.flags |= ROW_OUTSIDE
                    nsig = 0
                    at = sr.sig_off
                    end = at + sr.sig_len
                    while at < end:
                        memcpy(&n32, sarena + at + 2, 4)
                        at += 6 + n32
                        nsig += 1
                    if nsig > 0xFFFF:
                        raise ValueError(f"{nsig} signatures on one tag")
                    e.nsig = <uint16_t>nsig
                    si = buf_grow(&self.sigs, nsig)
                    e = &(<RowC *>self.rows.p)[ri]
                    at = sr.sig_off
                    for j in range(nsig):
                        S = &(<SigC *>self.sigs.p)[si + j]
                        S.valid = S_UNKNOWN
                        S.key = -1
                        S.member = 0
                        memcpy(&k16, sarena + at, 2)
                        memcpy(&n32, sarena + at + 2, 4)
                        at += 6 + n32
                        keyid = strs[k16]
                        k = key_idx.get(keyid)
                        if k is None:
                            bad = True
                            continue
                        S.key = <int32_t>k
                        K = &(<KeyC *>self.keys.p)[kb + S.key]
                        if K.mat < 0 or K.alg == 0:
                            bad = True      # missing key or unknown key type: never passes
                        S.member = keyid in mem
                except Exception:  # noqa: BLE001 - fail closed: this tag is ERROR
                    bad = True
                e = &(<RowC *>self.rows.p)[ri]
                if bad:
                    e.flags |= ROW_ERROR
                continue
            # -- a TagEntry (a dict's, or one a compact store keeps verbatim)
            xi = buf_grow(&self.xrows, 1)
            X = &(<RowX *>self.xrows.p)[xi]
            Py_INCREF(entry)
            X.obj = <PyObject *>entry
            e.ext = <int32_t>xi
            try:
                gid = entry.grant_id
                if not 0 <= gid < ngr:
                    bad = True
                    gid = -1
                e.grant = <int32_t>gid
                X = &(<RowX *>self.xrows.p)[xi]
                X.log_time = _i64(entry.log_time)
                X.expires = _i64(entry.expires)
                role = entry.role
                if role != "targets":
                    rr = role_idx.get(role)
                    if rr is None:
                        rr = role_idx[role] = len(role_idx)
                    e.role = <int32_t>rr
                payload = entry.payload
                sigs = entry.signatures
                if type(payload) is not bytes or type(sigs) is not tuple:
                    raise TypeError("payload must be bytes and signatures a tuple")
                mem = members.get(gid) if gid >= 0 else frozenset()
                if mem is None:
                    mem = members[gid] = frozenset(grants[gid].keyids)
                cur = current.get(role)
                if cur is None:
                    cur = current[role] = _current_policy(repo, role)
                if cur[0] is None and gid >= 0:
                    _i32(grants[gid].threshold, &bad)   # the signing grant's applies (GrantC.thr)
                if cur[1] is not None and cur[1](entry.tag) is None:
                    e.flags |= ROW_OUTSIDE
                X = &(<RowX *>self.xrows.p)[xi]
                Py_INCREF(payload)
                X.payload = <PyObject *>payload
                Py_INCREF(sigs)
                X.sigtuple = <PyObject *>sigs
                nsig = len(sigs)
                if nsig > 0xFFFF:
                    raise ValueError(f"{nsig} signatures on one tag")
                e.nsig = <uint16_t>nsig
                si = buf_grow(&self.sigs, nsig)
                e = &(<RowC *>self.rows.p)[ri]
                for j in range(nsig):
                    S = &(<SigC *>self.sigs.p)[si + j]
                    S.valid = S_UNKNOWN
                    S.key = -1
                    item = sigs[j]
                    if type(item) is not tuple or len(item) != 2:
                        bad = True
                        continue
                    keyid, sig = item
                    if type(sig) is not bytes or PyBytes_GET_SIZE(sig) > 0xFFFFFFFF:
                        bad = True
                        continue
                    k = key_idx.get(keyid)
                    if k is None:
                        bad = True
                        continue
                    S.key = <int32_t>k
                    K = &(<KeyC *>self.keys.p)[kb + S.key]
                    if K.mat < 0 or K.alg == 0:
                        bad = True      # missing key or unknown key type: never passes
                    S.member = keyid in mem
                # carry the validity bytes over from the row this entry had before
                oi = pm_get(&self.pm, <uint64_t><PyObject *>entry)
                if oi >= old_start and oi < old_start + old_n and not bad:
                    o = &(<RowC *>self.rows.p)[oi]
                    X = &(<RowX *>self.xrows.p)[xi]
                    OX = &(<RowX *>self.xrows.p)[o.ext] if o.ext >= 0 else NULL
                    if OX != NULL and OX.payload == X.payload and OX.sigtuple == X.sigtuple and o.nsig == e.nsig:
                        OS = <SigC *>self.sigs.p + o.sig_start
                        S = <SigC *>self.sigs.p + e.sig_start
                        for j in range(nsig):
                            if OS[j].key == S[j].key and OS[j].valid <= 1:
                                S[j].valid = OS[j].valid
            except Exception:  # noqa: BLE001 - fail closed: this tag is ERROR
                bad = True
            e = &(<RowC *>self.rows.p)[ri]
            if bad:
                e.flags |= ROW_ERROR
            pm_put(&self.pm, <uint64_t><PyObject *>entry, ri)
        return 0

    cdef bint _store_current(self, _Rec rec) except -1:
        """Whether the compact store ``rec``'s rows point into is unchanged since they
        were compiled (its memory may have moved otherwise)."""
        st = rec.store
        return st is not None and rec.repo is not None and rec.repo.tags is st and st.generation == rec.store_gen

    cdef int _compact(self) except -1:
        """Copy every live segment into fresh tables, slot by slot."""
        cdef Buf nkeys, nmats, ngrants, ngsig, nroles, nrows, nsigs, nx
        cdef SlotC *s
        cdef RowX *X
        cdef Py_ssize_t slot, i, at
        cdef int64_t d
        cdef RowC *R
        buf_init(&nkeys, sizeof(KeyC))
        buf_init(&nmats, sizeof(int64_t))
        buf_init(&ngrants, sizeof(GrantC))
        buf_init(&ngsig, sizeof(int32_t))
        buf_init(&nroles, sizeof(RoleC))
        buf_init(&nrows, sizeof(RowC))
        buf_init(&nsigs, sizeof(SigC))
        buf_init(&nx, sizeof(RowX))
        try:
            buf_reserve(&nrows, self.live_rows)
            buf_reserve(&nsigs, self.live_sigs)
            buf_reserve(&nkeys, self.keys.n)
            buf_reserve(&ngrants, self.grants.n)
            for slot in range(self.slots.n):
                s = &(<SlotC *>self.slots.p)[slot]
                if s.flags & SLOT_DEAD:
                    continue
                at = buf_grow(&nkeys, s.nkeys)
                memcpy(nkeys.p + at * nkeys.item, self.keys.p + s.key_base * self.keys.item, s.nkeys * nkeys.item)
                s.key_base = at
                at = buf_grow(&nmats, s.nmats)
                memcpy(nmats.p + at * nmats.item, self.mats.p + s.mat_base * self.mats.item, s.nmats * nmats.item)
                s.mat_base = at
                at = buf_grow(&ngrants, s.ngrants)
                memcpy(ngrants.p + at * ngrants.item, self.grants.p + s.grant_base * self.grants.item,
                       s.ngrants * ngrants.item)
                s.grant_base = at
                at = buf_grow(&ngsig, s.ngs)
                memcpy(ngsig.p + at * ngsig.item, self.gsig.p + s.gs_base * self.gsig.item, s.ngs * ngsig.item)
                s.gs_base = at
                at = buf_grow(&nroles, s.nroles)
                memcpy(nroles.p + at * nroles.item, self.roles.p + s.role_base * self.roles.item,
                       s.nroles * nroles.item)
                s.role_base = at
                at = buf_grow(&nsigs, s.nsigs)
                memcpy(nsigs.p + at * nsigs.item, self.sigs.p + s.sig_start * self.sigs.item, s.nsigs * nsigs.item)
                d = at - s.sig_start
                s.sig_start = at
                at = buf_grow(&nrows, s.nrows)
                memcpy(nrows.p + at * nrows.item, self.rows.p + s.row_start * self.rows.item, s.nrows * nrows.item)
                s.row_start = at
                R = <RowC *>nrows.p
                for i in range(at, at + s.nrows):
                    R[i].sig_start += d
            # the live rows' references move to fresh RowX entries (copied, not counted again)
            R = <RowC *>nrows.p
            for i in range(nrows.n):
                if R[i].ext >= 0:
                    at = buf_grow(&nx, 1)
                    (<RowX *>nx.p)[at] = (<RowX *>self.xrows.p)[R[i].ext]
                    R[i].ext = <int32_t>at
        except BaseException:
            buf_free(&nkeys)
            buf_free(&nmats)
            buf_free(&ngrants)
            buf_free(&ngsig)
            buf_free(&nroles)
            buf_free(&nrows)
            buf_free(&nsigs)
            buf_free(&nx)
            raise
        # dead rows hold no references (released when they died)
        buf_free(&self.keys)
        buf_free(&self.mats)
        buf_free(&self.grants)
        buf_free(&self.gsig)
        buf_free(&self.roles)
        buf_free(&self.rows)
        buf_free(&self.sigs)
        buf_free(&self.xrows)
        self.keys = nkeys
        self.mats = nmats
        self.grants = ngrants
        self.gsig = ngsig
        self.roles = nroles
        self.rows = nrows
        self.sigs = nsigs
        self.xrows = nx
        pm_free(&self.pm)
        R = <RowC *>self.rows.p
        X = <RowX *>self.xrows.p
        for i in range(self.rows.n):
            if not (R[i].flags & ROW_DEAD) and R[i].ext >= 0 and X[R[i].ext].obj != NULL:
                pm_put(&self.pm, <uint64_t>X[R[i].ext].obj, i)
        self.dead_x = 0
        self.dead_rows = 0
        self.dead_sigs = 0
        self.dead_hdr = 0
        self.compactions += 1
        return 0

    # -- lookups -----------------------------------------------------------------------

    def rows_for(self, entries):
        """The row of each TagEntry (-1 where it is not compiled), as array('q')."""
        cdef Py_ssize_t n = len(entries), i
        out = _array("q", bytes(8 * n))
        cdef int64_t[::1] o = out
        cdef int64_t row
        cdef RowC *R = <RowC *>self.rows.p
        for i in range(n):
            e = entries[i]
            row = pm_get(&self.pm, <uint64_t><PyObject *>e)
            if row >= 0 and self._entry_of(row) != <PyObject *>e:
                row = -1
            o[i] = row
        return out

    def rows_for_items(self, items):
        """The row of each ``(RepoState, TagEntry)`` (-1 where it is not compiled), as
        array('q'). An entry read from a compact tag store (core._tagstore_c: a copy made
        on access) is found by its tag's row in the store (the rows are compiled in the
        store's order from a store without deleted rows) and must equal the compiled
        entry; any doubt gives -1 (an ERROR verdict)."""
        cdef Py_ssize_t n = len(items), i
        out = _array("q", bytes(8 * n))
        cdef int64_t[::1] o = out
        cdef int64_t row, r
        cdef RowC *R = <RowC *>self.rows.p
        cdef SlotC *sl
        cdef _Rec rec
        for i in range(n):
            repo, e = items[i]
            row = pm_get(&self.pm, <uint64_t><PyObject *>e)
            if row >= 0 and self._entry_of(row) != <PyObject *>e:
                row = -1
            if row < 0 and hasattr(repo.tags, "row_index"):
                slot = self.by_name.get(repo.name)
                if slot is not None:
                    rec = self.recs[slot]
                    sl = &(<SlotC *>self.slots.p)[<Py_ssize_t>slot]
                    store = repo.tags
                    if (rec.repo is repo and rec.same_shape(repo) and not (sl.flags & SLOT_DEAD)
                            and store.dead_rows() == 0 and type(e.tag) is str):
                        r = store.row_index(e.tag)
                        if 0 <= r < sl.nrows:
                            row = sl.row_start + r
                            if R[row].flags & ROW_DEAD:
                                row = -1
                            elif self._entry_of(row) != NULL:   # compiled from an entry the store keeps verbatim
                                if not (<object>self._entry_of(row) == e):
                                    row = -1
                            elif not (self._store_current(rec) and store.entry_at(r) == e):
                                row = -1
            o[i] = row
        return out

    def row_info(self, int64_t row):
        """(repository name, TagEntry, first signature index, signature count) of a row."""
        if not 0 <= row < self.rows.n:
            raise IndexError(row)
        cdef RowC *e = &(<RowC *>self.rows.p)[row]
        cdef _Rec rec
        if e.flags & ROW_DEAD:
            raise KeyError(f"row {row} is dead")
        rec = self.recs[e.repo]
        if e.ext >= 0:
            return rec.name, <object>self._entry_of(row), e.sig_start, e.nsig
        # a compact store's C row: its entry made now, from the store as it was compiled
        if not self._store_current(rec):
            raise RuntimeError(f"the tags of {rec.name} changed since they were compiled; refresh and sweep again")
        return rec.name, rec.store.entry_at(row - (<SlotC *>self.slots.p)[e.repo].row_start), e.sig_start, e.nsig

    def live_row_ids(self):
        """Every live row, in slot order then tag order, as array('q')."""
        out = _array("q")
        cdef SlotC *S = <SlotC *>self.slots.p
        cdef Py_ssize_t slot
        for slot in range(self.slots.n):
            if not (S[slot].flags & SLOT_DEAD) and S[slot].nrows:
                out.extend(range(S[slot].row_start, S[slot].row_start + S[slot].nrows))
        return out

    def store_rows(self):
        """Live rows compiled in place from a compact tag store's C rows (no Python
        object held for them)."""
        cdef RowC *R = <RowC *>self.rows.p
        cdef Py_ssize_t i, n = 0
        for i in range(self.rows.n):
            if not (R[i].flags & ROW_DEAD) and R[i].ext < 0:
                n += 1
        return n

    def repo_error(self, str name):
        slot = self.by_name.get(name)
        return None if slot is None else self.recs[slot].error

    @property
    def nrows(self) -> int:
        return self.rows.n

    @property
    def nsigs(self) -> int:
        return self.sigs.n

    @property
    def nbytes(self) -> int:
        """Bytes held by the compiled tables and the row index (not the SigCache)."""
        return (self.slots.cap * self.slots.item + self.keys.cap * self.keys.item + self.mats.cap * self.mats.item
                + self.grants.cap * self.grants.item + self.gsig.cap * self.gsig.item
                + self.roles.cap * self.roles.item + self.rows.cap * self.rows.item
                + self.sigs.cap * self.sigs.item + self.xrows.cap * self.xrows.item + self.pm.cap * 16)

    # -- crypto validity ----------------------------------------------------------------

    def ensure(self, rows=None):
        """Give every member signature of ``rows`` (array('q'); all rows if None) a
        validity byte: kept in the row, else from the SigCache, else verified now in
        parallel with the GIL released. Returns (looked up, cache hits, verified)."""
        cdef int64_t[::1] rv
        cdef Py_ssize_t nr, i, j, n = 0
        cdef RowC *R = <RowC *>self.rows.p
        cdef SigC *S = <SigC *>self.sigs.p
        cdef RowC *e
        cdef int64_t row
        cdef bint all_rows = rows is None
        if all_rows:
            nr = self.rows.n
        else:
            rv = rows
            nr = rv.shape[0]
        for i in range(nr):
            row = i if all_rows else rv[i]
            if row < 0 or row >= self.rows.n:
                continue
            e = &R[row]
            if e.flags & (ROW_DEAD | ROW_ERROR):
                continue
            for j in range(e.nsig):
                if S[e.sig_start + j].member and S[e.sig_start + j].valid > 1:
                    n += 1
        if n == 0:
            return 0, 0, 0
        cdef int64_t *tsig = <int64_t *>PyMem_RawMalloc(n * 8)
        cdef int64_t *trow = <int64_t *>PyMem_RawMalloc(n * 8)
        cdef Py_ssize_t t = 0
        try:
            if tsig == NULL or trow == NULL:
                raise MemoryError()
            # (1) the signatures that need a byte; each claimed once (a row may repeat)
            for i in range(nr):
                row = i if all_rows else rv[i]
                if row < 0 or row >= self.rows.n:
                    continue
                e = &R[row]
                if e.flags & (ROW_DEAD | ROW_ERROR):
                    continue
                for j in range(e.nsig):
                    if S[e.sig_start + j].member and S[e.sig_start + j].valid > 1 \
                            and S[e.sig_start + j].valid != S_MISS:
                        S[e.sig_start + j].valid = S_MISS
                        tsig[t] = e.sig_start + j
                        trow[t] = row
                        t += 1
            if len(self.cache) == 0 and self.pycache is None:
                # a cold cache gets every verdict of this call: sized once, not grown by half
                # (each growth copies the table and leaves the old one free in the heap)
                self.cache.presize(t)
            return self._ensure_chunks(t, tsig, trow)
        finally:
            for i in range(t):          # anything left claimed falls back to unknown
                if S[tsig[i]].valid == S_MISS:
                    S[tsig[i]].valid = S_UNKNOWN
            PyMem_RawFree(tsig)
            PyMem_RawFree(trow)

    cdef tuple _ensure_chunks(self, Py_ssize_t n, const int64_t *tsig, const int64_t *trow):
        """:meth:`_ensure` over the claimed signatures, in chunks (the scratch stays small),
        each with the bytes its signatures and payloads are read from found first: a
        TagEntry row's in its signature tuple and payload (RowX); a compact store's C row's
        in the store's signature arena, with the payload re-derived by the store, while
        every store refuses to change (``reading``) and only if the store is as it was
        compiled (else the signature stays unverified: an ERROR verdict)."""
        cdef RowC *R = <RowC *>self.rows.p
        cdef RowX *XR = <RowX *>self.xrows.p
        cdef SlotC *SL = <SlotC *>self.slots.p
        cdef const StoreRowC *SR
        cdef const StoreRowC *sr
        cdef const uint8_t *arena
        cdef const RowC *e
        cdef RowX *X
        cdef Py_ssize_t lo = 0, hi, i, k, m, q, jj, c = _ENSURE_CHUNK if n > _ENSURE_CHUNK else n
        cdef int64_t row
        cdef uint32_t at, n32
        cdef long long[::1] ov
        cdef Py_ssize_t looked = 0, hits = 0, verified = 0
        cdef bint stored
        cdef int64_t *csig = <int64_t *>PyMem_RawMalloc(c * 8)
        cdef int64_t *crow = <int64_t *>PyMem_RawMalloc(c * 8)
        cdef int64_t *cdx = <int64_t *>PyMem_RawMalloc(c * 8)       # a store row's index among the chunk's
        cdef const uint8_t **cpay = <const uint8_t **>PyMem_RawMalloc(c * sizeof(void *))
        cdef int64_t *cplen = <int64_t *>PyMem_RawMalloc(c * 8)
        cdef const uint8_t **csp = <const uint8_t **>PyMem_RawMalloc(c * sizeof(void *))
        cdef uint32_t *csl = <uint32_t *>PyMem_RawMalloc(c * 4)
        cdef const uint8_t **ppay = <const uint8_t **>PyMem_RawMalloc(c * sizeof(void *))
        cdef int64_t *pplen = <int64_t *>PyMem_RawMalloc(c * 8)
        cdef uint8_t *hk = <uint8_t *>PyMem_RawMalloc(c * 16)
        cdef uint8_t *res = <uint8_t *>PyMem_RawMalloc(c)
        cdef int64_t *midx = <int64_t *>PyMem_RawMalloc(c * 8)
        reading = None
        try:
            if (csig == NULL or crow == NULL or cdx == NULL or cpay == NULL or cplen == NULL or csp == NULL
                    or csl == NULL or ppay == NULL or pplen == NULL or hk == NULL or res == NULL or midx == NULL):
                raise MemoryError()
            while lo < n:
                hi = lo + c if lo + c < n else n
                stored = False
                for i in range(lo, hi):
                    if R[trow[i]].ext < 0:
                        stored = True
                        break
                if stored and reading is None:
                    from trustlog.core._tagstore_c import reading
                guard = reading() if stored else None
                if guard is not None:
                    guard.__enter__()
                try:
                    views = {}          # slot -> (store rows, signature arena) as compiled, or None: stale
                    by_slot = {}        # slot -> the chunk's store rows of that slot, in order
                    order = {}          # store row -> its index among the chunk's store rows
                    m = 0
                    for i in range(lo, hi):
                        row = trow[i]
                        e = &R[row]
                        jj = tsig[i] - e.sig_start
                        if e.ext >= 0:
                            X = &XR[e.ext]
                            sig = (<tuple>(<tuple><object>X.sigtuple)[jj])[1]
                            csp[m] = <const uint8_t *>PyBytes_AS_STRING(sig)
                            csl[m] = <uint32_t>PyBytes_GET_SIZE(sig)
                            cpay[m] = <const uint8_t *>PyBytes_AS_STRING(<object>X.payload)
                            cplen[m] = PyBytes_GET_SIZE(<object>X.payload)
                            cdx[m] = -1
                        else:
                            v = views.get(e.repo, _NO_VIEW)
                            if v is _NO_VIEW:
                                rec = <_Rec>self.recs[e.repo]
                                v = None
                                if self._store_current(rec):
                                    view = rec.store.c_view()
                                    v = (view[1], view[3])
                                views[e.repo] = v
                            if v is None:
                                continue
                            SR = <const StoreRowC *><Py_ssize_t>v[0]
                            arena = <const uint8_t *><Py_ssize_t>v[1]
                            sr = &SR[row - SL[e.repo].row_start]
                            at = sr.sig_off
                            for q in range(jj):
                                memcpy(&n32, arena + at + 2, 4)
                                at += 6 + n32
                            memcpy(&n32, arena + at + 2, 4)
                            csp[m] = arena + at + 6
                            csl[m] = n32
                            k = order.get(row, -1)
                            if k < 0:
                                k = order[row] = len(order)
                                by_slot.setdefault(e.repo, []).append(row)
                            cdx[m] = k
                        csig[m] = tsig[i]
                        crow[m] = row
                        m += 1
                    blobs = []
                    for slot, rws in by_slot.items():
                        rec = <_Rec>self.recs[slot]
                        base = SL[<Py_ssize_t>slot].row_start
                        blob, offs = rec.store.derive_payloads([r - base for r in rws])
                        blobs.append(blob)
                        ov = offs
                        for q in range(len(rws)):
                            k = order[rws[q]]
                            ppay[k] = <const uint8_t *>PyBytes_AS_STRING(blob) + ov[q]
                            pplen[k] = ov[q + 1] - ov[q]
                    for i in range(m):
                        if cdx[i] >= 0:
                            cpay[i] = ppay[cdx[i]]
                            cplen[i] = pplen[cdx[i]]
                    got = self._ensure(m, csig, crow, cpay, cplen, csp, csl, hk, res, midx)
                    del blobs
                finally:
                    if guard is not None:
                        guard.__exit__(None, None, None)
                looked += got[0]
                hits += got[1]
                verified += got[2]
                lo = hi
        finally:
            PyMem_RawFree(csig)
            PyMem_RawFree(crow)
            PyMem_RawFree(cdx)
            PyMem_RawFree(cpay)
            PyMem_RawFree(cplen)
            PyMem_RawFree(csp)
            PyMem_RawFree(csl)
            PyMem_RawFree(ppay)
            PyMem_RawFree(pplen)
            PyMem_RawFree(hk)
            PyMem_RawFree(res)
            PyMem_RawFree(midx)
        return looked, hits, verified

    cdef tuple _ensure(self, Py_ssize_t n, const int64_t *tsig, const int64_t *trow, const uint8_t **tpay,
                       const int64_t *tplen, const uint8_t **tsp, const uint32_t *tsl, uint8_t *hk,
                       uint8_t *res, int64_t *midx):
        """Validity bytes of ``n`` claimed signatures (``tsig``, of rows ``trow``), each with
        its payload (``tpay``, ``tplen``) and signature bytes (``tsp``, ``tsl``)."""
        cdef RowC *R = <RowC *>self.rows.p
        cdef SigC *S = <SigC *>self.sigs.p
        cdef SlotC *SL = <SlotC *>self.slots.p
        cdef KeyC *K = <KeyC *>self.keys.p
        cdef const RowC *er
        cdef const KeyC *k
        cdef const SigC *sg
        cdef Py_ssize_t i, m, nmiss = 0, hits = 0, verified = 0
        cdef SigCache cache = self.cache
        cdef ThreadState *st = NULL
        cdef int nt = self.nthreads if n >= 64 * self.nthreads else 1
        cdef int rc = 0
        if n == 0:
            return 0, 0, 0
        # (2) content hash and cache lookup, in parallel under the cache's read lock
        with nogil:
            cache.rdlock()
            for i in prange(n, num_threads=nt, schedule="static"):
                er = &R[trow[i]]
                sg = &S[tsig[i]]
                k = &K[SL[er.repo].key_base + sg.key]
                if cache_key16(k.alg, k.ptr, <size_t>k.len, tpay[i], <size_t>tplen[i], tsp[i], tsl[i], hk + 16 * i):
                    res[i] = cache.find(hk + 16 * i)
                    res[i] = S_MISS if res[i] == 0 else res[i] - 1
                else:
                    res[i] = R_ERROR
            cache.unlock()
        for i in range(n):
            if res[i] == S_MISS:
                midx[nmiss] = i
                nmiss += 1
            elif res[i] <= 1:
                hits += 1
        # (3) an optional Python CryptoCache given by the caller
        if nmiss and self.pycache is not None:
            m = 0
            for i in range(nmiss):
                v = self.pycache.get(PyBytes_FromStringAndSize(<char *>hk + 16 * midx[i], 16))
                if v is None:
                    midx[m] = midx[i]
                    m += 1
                else:
                    res[midx[i]] = 1 if v else 0
                    hits += 1
            nmiss = m
        # (4) verify the misses
        if nmiss and self.crypto is None:
            nt = self.nthreads if nmiss >= 4 * self.nthreads else 1
            with nogil, parallel(num_threads=nt):
                st = state_new()
                for m in prange(nmiss, schedule="dynamic", chunksize=16):
                    i = midx[m]
                    er = &R[trow[i]]
                    sg = &S[tsig[i]]
                    k = &K[SL[er.repo].key_base + sg.key]
                    res[i] = <uint8_t>verify_item(st, k.alg, k.ptr, <size_t>k.len, tpay[i], <size_t>tplen[i],
                                                  tsp[i], tsl[i])
                state_free(st)
        elif nmiss:
            items = []
            for m in range(nmiss):
                i = midx[m]
                er = &R[trow[i]]
                sg = &S[tsig[i]]
                k = &K[SL[er.repo].key_base + sg.key]
                items.append((k.alg, (<const char *>k.ptr)[:k.len], (<const char *>tpay[i])[:tplen[i]],
                              (<const char *>tsp[i])[:tsl[i]]))
            out = self.crypto(items)
            if len(out) != nmiss:
                raise ValueError(f"crypto function returned {len(out)} results for {nmiss} items")
            for m in range(nmiss):
                v = out[m]
                res[midx[m]] = 1 if v == 1 else (0 if v == 0 else R_ERROR)
        verified = nmiss
        # (5) remember what was decided (a failed check is retried next time)
        if nmiss:
            with nogil:
                cache.wrlock()
                rc = cache.reserve(nmiss)
                if rc == 0:
                    for m in range(nmiss):
                        i = midx[m]
                        if res[i] <= 1 and cache.insert(hk + 16 * i, res[i] + 1) != 0:
                            rc = -1
                            break
                cache.unlock()
            if rc != 0:
                raise MemoryError()
            if self.pycache is not None:
                for m in range(nmiss):
                    i = midx[m]
                    if res[i] <= 1:
                        self.pycache.put(PyBytes_FromStringAndSize(<char *>hk + 16 * i, 16), res[i] == 1)
        for i in range(n):
            S[tsig[i]].valid = res[i] if res[i] <= 1 else R_ERROR
        cache.hits += hits
        cache.misses += n - hits
        self.cache_hits += hits
        self.verified += verified
        return n, hits, verified

    # -- evaluation ---------------------------------------------------------------------

    def evaluate(self, rows, int64_t ref_time):
        """Verdict bytes for ``rows`` (array('q')) at ``ref_time``: (codes, details,
        counted flags per signature, offsets of each row's flags). GIL released."""
        cdef int64_t[::1] rv = rows
        cdef Py_ssize_t n = rv.shape[0], i
        codes = bytearray(n)
        details = _array("i", bytes(4 * n))
        offsets = _array("q", bytes(8 * (n + 1)))
        cdef int64_t[::1] off = offsets
        cdef RowC *R = <RowC *>self.rows.p
        cdef int64_t row, total = 0
        for i in range(n):
            off[i] = total
            row = rv[i]
            if 0 <= row < self.rows.n:
                total += R[row].nsig
        off[n] = total
        counted = bytearray(total)
        if n == 0:
            return codes, details, counted, offsets
        cdef uint8_t[::1] cv = codes
        cdef int32_t[::1] dv = details
        cdef uint8_t *cp = _bytes_ptr(counted)
        cdef CT c
        cdef Py_ssize_t nrows = self.rows.n
        cdef int nt = self.nthreads if n >= 4096 else 1
        slots = set()
        for i in range(n):
            row = rv[i]
            if 0 <= row < nrows:
                slots.add(R[row].repo)
        guard = self._read_stores(slots)
        try:
            self._view(&c)
            with nogil:
                for i in prange(n, num_threads=nt, schedule="static"):
                    row = rv[i]
                    if row < 0 or row >= nrows:
                        cv[i] = V_ERROR
                        dv[i] = E_ROW
                    else:
                        cv[i] = evaluate_entry(&c, row, ref_time, &dv[i], cp + off[i])
        finally:
            if guard is not None:
                guard.__exit__(None, None, None)
        return codes, details, counted, offsets

    def sweep(self, int64_t ref_time):
        """Verdict bytes for every row (dead rows: 0) at ``ref_time``: (codes, details,
        counted flags indexed like the signatures). Run ensure() first."""
        cdef Py_ssize_t n = self.rows.n, i
        codes = bytearray(n)
        details = _array("i", bytes(4 * n))
        counted = bytearray(self.sigs.n)
        if n == 0:
            return codes, details, counted
        cdef uint8_t[::1] cv = codes
        cdef int32_t[::1] dv = details
        cdef uint8_t *cp = _bytes_ptr(counted)
        cdef CT c
        cdef int nt = self.nthreads if n >= 4096 else 1
        guard = self._read_stores(None)
        try:
            self._view(&c)
            with nogil:
                for i in prange(n, num_threads=nt, schedule="static", chunksize=2048):
                    cv[i] = evaluate_entry(&c, i, ref_time, &dv[i], cp + c.rows[i].sig_start)
        finally:
            if guard is not None:
                guard.__exit__(None, None, None)
        return codes, details, counted

    cdef object _read_stores(self, slots):
        """Before the C rows of compact stores are read without the GIL (the slots
        ``slots``, or all): every store is made to refuse changes (the returned guard,
        to exit after; None when no slot reads a store), and a slot whose store changed
        since it was compiled is marked SLOT_STALE, so that its tags are ERROR rather
        than read from memory the store may have moved."""
        cdef SlotC *SL = <SlotC *>self.slots.p
        cdef Py_ssize_t k
        guard = None
        try:
            if slots is None and self.all_current_at >= 0:
                from trustlog.core._tagstore_c import reading
                guard = reading()
                guard.__enter__()
                if _store_mutations() == self.all_current_at:
                    return guard    # no store changed since the last full refresh
            for k in (range(self.slots.n) if slots is None else slots):
                if SL[k].srows == NULL or SL[k].flags & SLOT_DEAD:
                    continue
                if guard is None:
                    from trustlog.core._tagstore_c import reading
                    guard = reading()
                    guard.__enter__()
                if not self._store_current(<_Rec>self.recs[k]):
                    SL[k].flags |= SLOT_STALE
        except BaseException:
            if guard is not None:
                guard.__exit__(None, None, None)
            raise
        return guard


cdef inline uint8_t *_bytes_ptr(bytearray b):
    return <uint8_t *>(<char *>b) if len(b) else <uint8_t *>_EMPTY



cdef int _shape_of(repo, int64_t *out) except -1:
    """A cheap fingerprint of a repository besides its version (guards against a state
    mutated without going through the fold): the sizes of its maps, and the generation of
    a compact tag store, which counts its changes (-1: a plain mapping)."""
    tags = repo.tags
    out[0] = len(repo.keys)
    out[1] = len(repo.grants)
    out[2] = len(repo.roles)
    out[3] = len(repo.compromised)
    out[4] = len(tags)
    gen = getattr(tags, "generation", None)
    out[5] = -1 if gen is None else <int64_t>(gen & 0x7FFFFFFFFFFFFFFF)
    return 0
