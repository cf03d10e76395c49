# Included at the end of _fastfold.pyx (it uses CompiledFold's C parts).
#
# -- the ingest fold's fast path (TrustLog.ingest_batch) --------------------------------
#
# At ingest an ImageSigned whose role signatures the pre-check found valid is folded
# without its signature checks (TrustLog._fast_fold_ok says why that decides as the
# validating fold does). ``TrustedFold.apply`` did that in Python; this does it on the
# record body the batch builds anyway (``records.encode_record``: v1 or v2), with
# CompiledFold's C reader and fast path: the same conditions and the same changes, and
# whatever is not on the fast path is left to the caller's Python fold, untouched.


cdef class IngestFold(CompiledFold):
    """:class:`CompiledFold` one record at a time, for ``TrustLog.ingest_batch``.

    The caller folds anything :meth:`apply_record` does not take with its Python fold,
    and then calls :meth:`changed` (the cached repository views may be stale). One per
    batch: nothing but this fold and the caller's change the state meanwhile."""

    def apply_record(self, bytes body, long long offset):
        """Fold ``body`` (the record about to be appended at ``offset``) if it is an
        ``ImageSigned`` on the fast path: True when applied (``state.version`` is then
        ``offset + 1``); False when not, and then nothing was changed."""
        self.offset = offset
        if tl_parse_record(<const unsigned char *>PyBytes_AS_STRING(body), <size_t>PyBytes_GET_SIZE(body),
                           self.rec) == 0 and self._fast(self.state.repos, offset, NULL):
            self.fast += 1
            self.last_log_time = self.rec.log_time
            self._flush()
            return True
        return False

    def changed(self):
        """The state was changed by another fold since the last call: forget the cached
        repository views."""
        self._invalidate()
