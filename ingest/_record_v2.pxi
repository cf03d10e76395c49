# The compiled fold's dispatch over the record formats (included by _fastfold.pyx after
# its declarations of _fastfold.h): v1 (tl_parse_image_signed, _fastfold.h) or v2
# (_record_v2.h; its layout and Python twin in record_v2.py), and the tests' view of it.

from cpython.mem cimport PyMem_Free, PyMem_Malloc

cdef extern from "_record_v2.h":
    int tl_parse_record(const unsigned char *body, size_t length, tl_rec *r) nogil


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
