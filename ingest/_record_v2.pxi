# The compiled fold's dispatch over the record formats (included by _fastfold.pyx after
# its declarations of _fastfold.h): v1 (tl_parse_image_signed, _fastfold.h) or v2
# (_record_v2.h; its layout and Python twin in record_v2.py), the tests' view of it, and
# the writer's C encoder of v2 (encode_v2, record_v2.encode_v2's choice for ImageSigned).

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc

cdef extern from "_record_v2.h":
    int tl_parse_record(const unsigned char *body, size_t length, tl_rec *r) nogil
    long tl_encode_v2(const unsigned char *v1, size_t length, tl_rec *a, tl_rec *b, unsigned char *out,
                      size_t cap, unsigned char *tmp, size_t tmp_cap) nogil


cdef inline bytes _sv_bytes(tl_sv v):
    return PyBytes_FromStringAndSize(v.s, v.n)


def parse_record(body):
    """What the C reader reads from a record body of either format, for the tests
    (``tests/test_record_v2.py`` compares it with the Python decoder): None when it
    answers "not the fast layout", else ``(log_time, source, signatures, payload)`` with
    ``source`` None or ``(topic, partition, offset)`` and ``signatures`` a list of
    ``(keyid, sig)``; text fields are the raw bytes it points at."""
    cdef const unsigned char[::1] mv = body
    cdef tl_rec *r = <tl_rec *>PyMem_Malloc(sizeof(tl_rec))
    cdef uint32_t i
    if r == NULL:
        raise MemoryError()
    try:
        if tl_parse_record(&mv[0] if mv.shape[0] else _EMPTY, mv.shape[0], r) != 0:
            return None
        source = (_sv_bytes(r.topic), r.partition, r.src_offset) if r.has_source else None
        sigs = [(_sv_bytes(r.keyid[i]), PyBytes_FromStringAndSize(<const char *>r.sig[i], r.sig_len[i]))
                for i in range(r.nsigs)]
        return (r.log_time, source, sigs, PyBytes_FromStringAndSize(<const char *>r.payload, r.payload_len))
    finally:
        PyMem_Free(r)


# encode_v2's scratch: two readings and a buffer (output, then the re-derived v1 bytes),
# allocated once and grown; used only while the GIL is held (it is never released here).
cdef tl_rec *_enc_recs = NULL
cdef unsigned char *_enc_buf = NULL
cdef size_t _enc_cap = 0


def encode_v2(bytes v1_body):
    """The v2 bytes that ``record_v2.encode_v2`` writes for the canonical v1 record
    ``v1_body`` of an ``ImageSigned`` (its event stored as fields), or None: not such a
    record, or anything the C reader is unsure of (then the Python encoder decides; see
    ``tl_encode_v2`` in ``_record_v2.h`` for what it checks before answering bytes).
    ``tests/test_record_v2.py`` holds it equal to the Python encoder."""
    global _enc_recs, _enc_buf, _enc_cap
    cdef size_t n = <size_t>PyBytes_GET_SIZE(v1_body)
    cdef size_t need = 3 * n + 64  # the output (shorter than the v1 bytes), then the v1 bytes re-derived
    cdef unsigned char *grown
    cdef long got
    if _enc_recs == NULL:
        _enc_recs = <tl_rec *>PyMem_Malloc(2 * sizeof(tl_rec))
        if _enc_recs == NULL:
            raise MemoryError()
    if need > _enc_cap:
        grown = <unsigned char *>PyMem_Realloc(_enc_buf, need)
        if grown == NULL:
            raise MemoryError()
        _enc_buf, _enc_cap = grown, need
    got = tl_encode_v2(<const unsigned char *>PyBytes_AS_STRING(v1_body), n, &_enc_recs[0], &_enc_recs[1],
                       _enc_buf, n + 32, _enc_buf + n + 32, _enc_cap - n - 32)
    if got < 0:
        return None
    return PyBytes_FromStringAndSize(<const char *>_enc_buf, got)
