# Included by _cverify.pyx: the layout of the compiled trust state.
#
# Layout. Every repository of the state owns one *slot*; a slot's data lives in
# contiguous segments of global tables:
#
#   keys    KeyC   alg, key material (local index), pointer to the public key bytes
#   mats    int64  compromised_since per key material (INT64_MAX: never)
#   grants  GrantC parent, thresholds, log time, removed flag, signer range, fault memo
#   gsig    int32  signer key (local index) of each grant
#   roles   RoleC  expiry and threshold of the current grant of each role named by a tag
#   rows    RowC   one per signed tag: grant, role, signature range, and whether its role's
#                  *current* paths still cover it (re-delegation rules of core.evaluate:
#                  policy changes apply to every tag; rotation keeps them); its log time
#                  and expiry are read from the compact store's row, or from its RowX
#   sigs    SigC   one per signature of a tag: key, member of the grant?, validity byte
#   xrows   RowX   the Python references of a row compiled from a TagEntry (none for a
#                  compact store's C row)
#
# Rows and signatures refer to keys, grants and roles by *local* index (the slot adds its
# bases), so a changed repository is recompiled alone: its new segments are appended, the
# old ones become dead space, and compaction copies the live segments when dead space
# outgrows live. A row compiled from a TagEntry keeps references to the entry, its payload
# and signature tuple (RowX), so the bytes are there when it is verified, and so that a
# TagEntry's address (the key of the row index) cannot be reused while the row lives.
#
# The verdict bytes (V_*) and their details (E_*, X_*) come from _codes.pxi, generated
# from core/verdict_codes.py; the flags below are internal to the compiled state.

cdef enum:
    # Grant faults (memoised per slot at compile time).
    F_UNKNOWN = 0xFF
    F_NONE = 0
    F_REMOVED = 1
    F_DELEG = 2
    F_ERROR = 3
    # Flags.
    G_REMOVED = 1
    G_ERROR = 2
    ROW_DEAD = 1
    ROW_ERROR = 2
    ROW_OUTSIDE = 4         # the role's current paths do not cover the tag (core.evaluate.paths_fault)
    SLOT_BROKEN = 1
    SLOT_DEAD = 2
    SLOT_STALE = 4          # its compact store changed since it was compiled: its C rows are not read
    # Signature validity byte (0 invalid, 1 valid, 2 check failed: retried next time).
    S_UNKNOWN = 0xFF
    S_MISS = 0xFE           # internal: not in the cache, to verify


# A row of a compiled compact tag store (core/_tagstore_c.pyx, its tl_row): a repository
# whose tags are in one is compiled from these rows in place, with no Python object per
# tag (RowC.ext -1; a signature's bytes read from the store's arena and the payload
# re-derived by the store when it is hashed). The store's c_view()
# names its layout; a store with another one is compiled through its entries instead.
cdef struct StoreRowC:
    int64_t log_time
    int64_t expires
    uint8_t digest[32]
    int32_t grant_id
    int32_t role            # >= 0: index into the store's string table; < 0: kept verbatim
    uint32_t name_off
    uint32_t name_len       # (and flags)
    uint32_t sig_off
    uint32_t sig_len
    uint32_t size           # the narrow columns, which the evaluation does not read
    uint32_t offset
    uint32_t version
    uint32_t issued_at

STORE_ROW_LAYOUT = ("tl_row/2", sizeof(StoreRowC), <Py_ssize_t>&(<StoreRowC *>0).log_time,
                    <Py_ssize_t>&(<StoreRowC *>0).expires, <Py_ssize_t>&(<StoreRowC *>0).grant_id,
                    <Py_ssize_t>&(<StoreRowC *>0).role, <Py_ssize_t>&(<StoreRowC *>0).sig_off,
                    <Py_ssize_t>&(<StoreRowC *>0).sig_len)


cdef struct SlotC:
    int64_t key_base
    int64_t mat_base
    int64_t grant_base
    int64_t gs_base
    int64_t role_base
    int64_t row_start
    int64_t sig_start
    int64_t nrows
    int64_t nsigs
    int64_t root_exp
    int64_t targets_exp
    const StoreRowC *srows  # the compact store's rows the slot's C rows were compiled from (NULL: none);
                            # valid while that store is as it was compiled (checked before each read)
    int32_t targets_thr     # threshold of targets' current grant (-1: none, the signing grant's applies)
    int32_t nkeys
    int32_t nmats
    int32_t ngrants
    int32_t ngs
    int32_t nroles
    uint8_t flags

cdef struct KeyC:
    const uint8_t *ptr
    int32_t len
    int32_t mat             # local material index, -1: key missing
    uint8_t alg             # 0: unknown key type

cdef struct GrantC:
    int64_t log_time
    int64_t expires         # bounds every tag this grant signed, whatever the role is now
    int64_t gs_start        # local offset into the slot's gsig segment
    int32_t gs_n
    int32_t parent          # local grant index, -1: none
    int32_t thr             # the grant's own threshold (for tags it signs)
    int32_t chain_thr       # the threshold its signers had to meet (parent's, or own)
    int32_t fault_at
    uint8_t flags
    uint8_t fault

# 24 bytes a row: what the row's tag says (its log time and expiry) is read where it
# is held once, in the compact store's row (SlotC.srows) or, for a row compiled from a
# TagEntry, in its RowX; the threshold it must meet is its role's (RoleC.thr, or
# SlotC.targets_thr) or, when the role has no current grant, its signing grant's.
cdef struct RowC:
    uint32_t sig_start      # global index into sigs (the compiled state holds < 2**32 signatures)
    int32_t repo            # slot
    int32_t grant           # local grant index
    int32_t role            # local role index, -1: "targets"
    int32_t ext             # index into xrows of a row compiled from a TagEntry; -1: a compact store's C row
    uint16_t nsig           # (a TagEntry of more signatures is ERROR: the fold keeps at most 128)
    uint8_t flags

# The current grant of a role a tag names: its expiry (INT64_MAX: none) and threshold
# (-1: none, the signing grant's applies).
cdef struct RoleC:
    int64_t expires
    int32_t thr

# What a row compiled from a TagEntry (a dict's, or one a compact store keeps verbatim)
# holds besides: references that keep the bytes its signatures and payload are read from
# alive, and that keep the entry's address (the key of the row index) from being reused.
# A compact store's C row has none (RowC.ext -1).
cdef struct RowX:
    PyObject *obj           # the TagEntry (a reference; NULL: free)
    PyObject *payload       # its payload bytes (a reference)
    PyObject *sigtuple      # its signatures tuple (a reference)
    int64_t log_time        # the entry's log time and expiry
    int64_t expires

cdef struct SigC:
    int32_t key             # local key index, -1: missing
    uint8_t member          # keyid is one of the entry's grant keys
    uint8_t valid           # 0, 1, 2 (check failed) or S_UNKNOWN
    # the signature's bytes are found when it is verified: in the row's signature tuple
    # (RowX.sigtuple) or in the compact store's signature arena

cdef struct CT:
    SlotC *slots
    KeyC *keys
    int64_t *mats
    GrantC *grants
    int32_t *gsig
    RoleC *roles
    RowC *rows
    SigC *sigs
    RowX *xrows


cdef inline int64_t _i64(object x) except? -1:
    """A Python int as int64. The fold refuses every time outside int64
    (core/bounds.py), so an OverflowError here means a state the fold did not build: the
    repository is then marked broken and its tags get ERROR, never a clamped verdict."""
    return x


cdef inline int32_t _i32(object x, bint *bad):
    if not isinstance(x, int) or x < -1 or x > INT32_MAX:
        bad[0] = True
        return -1
    return <int32_t>x
