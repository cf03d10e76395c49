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


# -- one C pass per fast-path ImageSigned: record bytes, pre-check, postings, fold -------
#
# ``TrustLog._ingest_decoded`` did, per accepted ImageSigned, in Python: build the v1
# record (msgspec) and hand it to encode_v2, compute the index postings
# (logindex.event_postings), ask _fast_fold_ok, then apply_record (which parses the body
# again). ingest_image_signed does all of it over the canonical envelope in one call and
# answers None, having changed nothing, whenever any step is unsure; the caller then
# takes its Python path for the event, which decides exactly as before.

cdef extern from *:
    """
    #include "_record_v2.h"
    /* The canonical v1 bytes of LogRecord{log_time, envelope, source} (msgspec's encoding,
     * as tl_v1_bytes writes it: fields in their order, shortest headers) into buf; its
     * length, or -1 if it does not fit. topic == NULL: no source (nil). */
    static long tl_ingest_v1(unsigned char *buf, size_t cap, int64_t log_time, const unsigned char *env,
                             uint32_t env_len, const char *topic, uint32_t topic_len, int64_t partition,
                             int64_t offset) {
        tl_w w = {buf, buf + cap};
        if (tl_w_byte(&w, 0x83) || tl_w_lit(&w, "log_time") || tl_w_int(&w, log_time)) return -1;
        if (tl_w_lit(&w, "envelope") || tl_w_bin(&w, env, env_len) || tl_w_lit(&w, "source")) return -1;
        if (topic == NULL) {
            if (tl_w_byte(&w, 0xc0)) return -1;
        } else {
            if (tl_w_byte(&w, 0x83) || tl_w_lit(&w, "topic") || tl_w_str(&w, topic, topic_len)) return -1;
            if (tl_w_lit(&w, "partition") || tl_w_int(&w, partition)) return -1;
            if (tl_w_lit(&w, "offset") || tl_w_int(&w, offset)) return -1;
        }
        return (long)(w.p - buf);
    }
    """
    long tl_ingest_v1(unsigned char *buf, size_t cap, int64_t log_time, const unsigned char *env,
                      uint32_t env_len, const char *topic, uint32_t topic_len, int64_t partition,
                      int64_t offset) nogil

from trustlog.ingest.record_types import KafkaPosition as _KafkaPosition

# ingest_image_signed's scratch (the v1 bytes, the v2 output, the re-derived v1 bytes) and
# encode_v2's two readings: allocated once and grown, used only with the GIL held
cdef tl_rec *_ing_recs = NULL
cdef unsigned char *_ing_buf = NULL
cdef size_t _ing_cap = 0


cdef object _ingest_body(long long log_time, bytes canonical, src):
    """The bytes ``records.encode_record(LogRecord(log_time, canonical, src))`` stores when
    its C encoder answers them (v2), or None (the caller's Python path then encodes)."""
    global _ing_recs, _ing_buf, _ing_cap
    cdef const char *topic = NULL
    cdef Py_ssize_t topic_len = 0
    cdef long long partition = 0, soffset = 0
    cdef size_t elen = <size_t>PyBytes_GET_SIZE(canonical)
    cdef size_t n, need
    cdef long v1, got
    cdef unsigned char *grown
    cdef bytes tb
    if elen > 0xffffffff or log_time < 0:
        return None
    if src is not None:
        if type(src) is not _KafkaPosition:
            return None
        t, p, o = src.topic, src.partition, src.offset
        if type(t) is not str or type(p) is not int or type(o) is not int or not (0 <= p <= INT64_MAX) \
                or not (0 <= o <= INT64_MAX):
            return None
        try:
            tb = (<str>t).encode("utf-8")   # msgspec refuses what this refuses (lone surrogates)
        except UnicodeEncodeError:
            return None
        topic, topic_len, partition, soffset = PyBytes_AS_STRING(tb), PyBytes_GET_SIZE(tb), p, o
        if topic_len > 0xffffffff:
            return None
    n = elen + <size_t>topic_len + 96   # the v1 bytes: the envelope, the topic, keys and heads
    need = 4 * n + 64                   # ... then encode_v2's output and its re-derived v1 bytes
    if _ing_recs == NULL:
        _ing_recs = <tl_rec *>PyMem_Malloc(2 * sizeof(tl_rec))
        if _ing_recs == NULL:
            raise MemoryError()
    if need > _ing_cap:
        grown = <unsigned char *>PyMem_Realloc(_ing_buf, need)
        if grown == NULL:
            raise MemoryError()
        _ing_buf, _ing_cap = grown, need
    v1 = tl_ingest_v1(_ing_buf, n, log_time, <const unsigned char *>PyBytes_AS_STRING(canonical), <uint32_t>elen,
                      topic, <uint32_t>topic_len, partition, soffset)
    if v1 < 0:
        return None
    got = tl_encode_v2(_ing_buf, <size_t>v1, &_ing_recs[0], &_ing_recs[1], _ing_buf + n, <size_t>v1 + 32,
                       _ing_buf + n + v1 + 32, _ing_cap - n - <size_t>v1 - 32)
    if got < 0:
        return None
    return PyBytes_FromStringAndSize(<const char *>(_ing_buf + n), got)


def ingest_body(long long log_time, bytes canonical, src):
    """:func:`_ingest_body` for the tests (held to ``records.encode_record``)."""
    return _ingest_body(log_time, canonical, src)


cdef inline bytes _entry(unsigned long long a, unsigned long long b, unsigned int c, unsigned int d):
    """``logindex._ENTRY.pack(a, b, c, d)`` (``>QQII``)."""
    cdef unsigned char e[24]
    cdef int i
    for i in range(8):
        e[i] = <unsigned char>(a >> (56 - 8 * i))
        e[8 + i] = <unsigned char>(b >> (56 - 8 * i))
    for i in range(4):
        e[16 + i] = <unsigned char>(c >> (24 - 8 * i))
        e[20 + i] = <unsigned char>(d >> (24 - 8 * i))
    return PyBytes_FromStringAndSize(<const char *>e, 24)


cdef inline list _pending_list(dict pend, nid):
    cdef PyObject *p = PyDict_GetItem(pend, nid)
    if p is not NULL:
        return <list>p
    lst = []
    PyDict_SetItem(pend, nid, lst)
    return lst


cdef int _index_add(index, long long offset, long long log_time, unsigned int kind, str repo, grant,
                    list keys) except -1:
    """``index.add_postings(offset, log_time, kind, repo, grant, keys)`` (``logindex``), the
    same entries and names; any value its ``>QQII`` entries cannot hold is left to it (it
    raises as it does)."""
    cdef dict ids = index.ids
    cdef dict pend = index._pending
    cdef PyObject *p
    cdef unsigned int kb = kind << 8
    if offset < <long long>index.covered:
        return 0
    if offset < 0 or log_time < 0 or type(grant) is not int or not (0 <= grant <= 0xffffffff) or kind > 0xff:
        index.add_postings(offset, log_time, kind, repo, grant, keys)
        return 0
    for kid, flags in keys:   # every value fits before anything is added
        if type(flags) is not int or not (0 <= flags <= 0xff):
            index.add_postings(offset, log_time, kind, repo, grant, keys)
            return 0
    name = "r:" + repo
    p = PyDict_GetItem(ids, name)
    rid = <object>p if p is not NULL else index._id(name)
    if not (0 <= rid <= 0xffffffff):
        index.add_postings(offset, log_time, kind, repo, grant, keys)   # (names beyond 2**32: not reached)
        return 0
    _pending_list(pend, rid).append(_entry(offset, log_time, grant, kind))
    for kid, flags in keys:
        name = "k:" + kid
        p = PyDict_GetItem(ids, name)
        nid = <object>p if p is not NULL else index._id(name)
        _pending_list(pend, nid).append(_entry(offset, log_time, rid, <unsigned int>flags | kb))
    index._pending_count += 1 + len(keys)
    index.covered = offset + 1
    return 0


cdef extern from "<openssl/sha.h>":
    unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md) nogil

cdef const char *_HEXDIGITS = b"0123456789abcdef"


cdef class IngestBatchFold(IngestFold):
    """:class:`IngestFold` with :meth:`ingest_image_signed`, the whole fast path of one
    accepted ``ImageSigned`` in one call, and :meth:`ingest_run`, that for each of a run
    of them with the bookkeeping ``TrustLog._ingest_decoded`` does around it."""

    cdef public Py_ssize_t refused_at   # the input ingest_run last stopped at because the fast path refused it
    cdef public long long refused_now   # ... and the wall clock it read for it (LogClock.next_at takes it)

    def ingest_image_signed(self, bytes canonical, src, long long log_time, long long offset, cks, cache_get,
                            Py_ssize_t max_bytes, index, unsigned int kind, str repo):
        return self._ingest_one(canonical, src, log_time, offset, cks, cache_get, max_bytes, index, kind, repo)

    def ingest_run(self, list decoded, Py_ssize_t start, long long base, list bodies, list sig_cks, cache_get,
                   Py_ssize_t max_bytes, index, unsigned int kind, set event_ids, dict in_batch, list fates,
                   dict last_positions, clock, fate_type, image_signed_type):
        """``TrustLog._ingest_decoded``'s loop body for ``decoded[start:]`` while each
        input is an ``ImageSigned`` on the fast path: a decoded MessagePack input
        (``err`` None) from a Kafka position (or none), its event id (SHA-256 of the
        canonical envelope) not in ``event_ids``, and :meth:`ingest_image_signed`
        answering its record body. For each such input, in order, exactly what that loop
        does: take a log time from ``clock`` (``LogClock.next``), append the body to
        ``bodies`` (its offset ``base + len(bodies)``), add the event id to ``event_ids``
        and ``in_batch``, append its accepted ``Fate`` to ``fates``, record its position
        in ``last_positions``. Returns the index of the first input it did not take
        (``len(decoded)`` if none): that input is left untouched, for the Python loop;
        ``refused_at`` is that index when :meth:`ingest_image_signed` refused it (the
        caller does not ask again, and takes its log time with
        ``clock.next_at(refused_now)``: the clock is read once per input), else -1."""
        cdef Py_ssize_t i = start, n = len(decoded), j
        cdef unsigned char md[32]
        cdef char hexd[64]
        cdef long long log_time, last, offset, now
        cdef tuple item
        cdef bytes canonical, eid
        prev_key = None   # (topic, partition) of the last position recorded
        now_ns = clock._now_ns
        self.refused_at = -1
        while i < n:
            item = <tuple>decoded[i]
            src = item[1]
            env = item[2]
            event = item[3]
            if item[4] is not None or env is None or type(event) is not image_signed_type \
                    or type(item[5]) is not bytes or (src is not None and type(src) is not _KafkaPosition):
                break
            canonical = <bytes>item[5]
            SHA256(<const unsigned char *>PyBytes_AS_STRING(canonical), <size_t>PyBytes_GET_SIZE(canonical), md)
            eid = PyBytes_FromStringAndSize(<const char *>md, 32)
            if eid in event_ids:
                break
            # LogClock.next, taken only if the input is: max(now, last + 1)
            last = clock._last
            now = now_ns()
            log_time = now if now >= last + 1 else last + 1
            offset = base + len(bodies)
            body = self._ingest_one(canonical, src, log_time, offset, sig_cks[i], cache_get, max_bytes, index, kind,
                             event.repo)
            if body is None:
                self.refused_at = i
                self.refused_now = now
                break
            clock._last = log_time
            if src is not None:
                topic, partition = src.topic, src.partition
                if prev_key is None or topic != (<tuple>prev_key)[0] or partition != (<tuple>prev_key)[1]:
                    prev_key = (topic, partition)
                last_positions[prev_key] = src.offset
            bodies.append(body)
            event_ids.add(eid)
            in_batch[eid] = (offset, src)
            for j in range(32):
                hexd[2 * j] = _HEXDIGITS[md[j] >> 4]
                hexd[2 * j + 1] = _HEXDIGITS[md[j] & 15]
            fates.append(fate_type("accepted", src, PyUnicode_DecodeASCII(hexd, 64, NULL), offset, src))
            i += 1
        return i

    cdef object _ingest_one(self, bytes canonical, src, long long log_time, long long offset, cks, cache_get,
                     Py_ssize_t max_bytes, index, unsigned int kind, str repo):
        """For the ``ImageSigned`` whose canonical envelope is ``canonical``, to be
        appended at ``offset`` with ``log_time`` from ``src``, what the Python path of
        ``TrustLog._ingest_decoded`` computes when the event is on the fast path:

        * its record body, the bytes ``records.encode_record`` stores (here only when its
          C encoder answers, i.e. v2);
        * at most ``max_bytes`` long (else the Python path rejects it as TOO_LARGE);
        * ``TrustLog._fast_fold_ok``: every signature by a key of the role's grant has a
          pre-checked cache key (``cks``, one per signature) that ``cache_get`` answers
          True for;
        * applied by the fast path (``IngestFold.apply_record``);

        and then adds its index postings to ``index`` (``LogIndex.add_event`` with
        ``logindex.event_postings``: the role's grant id and ``(key id, SIGNED)`` per
        distinct key of the grant that signed, in signature order; ``kind`` is the
        ImageSigned kind code, ``repo`` the event's repository) and returns the body.
        None when any of that does not hold: then nothing was changed (but
        ``cache_get`` may have been asked, which counts a hit or miss) and the caller's
        Python path decides."""
        cdef tl_rec *r
        cdef _Repo c
        cdef _Grant g = None
        cdef Py_ssize_t i, j
        cdef list keys
        body = _ingest_body(log_time, canonical, src)
        if body is None or PyBytes_GET_SIZE(<bytes>body) > max_bytes:
            return None
        r = self.rec
        if tl_parse_record(<const unsigned char *>PyBytes_AS_STRING(body), <size_t>PyBytes_GET_SIZE(body), r) != 0:
            return None
        repos = self.state.repos
        c = self._repo(repos, r.repo)
        if c is None:
            return None
        for i in range(len(c.grants)):
            g = <_Grant>c.grants[i]
            if g.role_b_len == r.role.n and memcmp(<const char *>g.role_b, r.role.s, r.role.n) == 0:
                break
            g = None
        # a role of more keys than the C buffer holds: keyid_of would miss them
        if g is None or g._nkeys != len(g.keyids) or type(cks) is not list or len(cks) != r.nsigs:
            return None
        keys = []
        for i in range(r.nsigs):
            kid = g.keyid_of(r.keyid[i])
            if kid is None:
                continue
            ck = (<list>cks)[i]
            if ck is None or cache_get(ck) is not True:
                return None
            for j in range(len(keys)):
                if (<tuple>keys[j])[0] is kid:
                    break
            else:
                keys.append((kid, 1))   # logindex.SIGNED
        self.offset = offset
        if not self._fast(repos, offset, <PyObject *>c):
            return None
        self.fast += 1
        self.last_log_time = r.log_time
        self._flush()
        _index_add(index, offset, log_time, kind, repo, g.gid, keys)
        return body
