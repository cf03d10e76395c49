# cython: language_level=3, boundscheck=False, wraparound=False
"""The records of one Kafka v2 record batch, read in C.

kafka-python reads each record of a fetched batch in Python (a varint at a time, one
``DefaultRecord`` and then one ``ConsumerRecord`` per record): about 8 us a record on
this project's machines, the largest part of what consuming costs. :func:`batch_records`
reads the records of an uncompressed, non-control v2 batch in one C pass and returns
the same ``ConsumerRecord`` tuples kafka-python's loop would yield, with their sizes.

It reads only what it is sure of. Anything else (a record whose structure does not add
up, a varint longer than 9 bytes, an offset or timestamp outside int64, a header key
that is not UTF-8, bytes left over after the last record, a negative record count)
returns None, and the caller reads that batch with kafka-python's own loop, which then
yields the same records and raises the same error kafka-python would
(``trustlog.ingest.kafka_records``; ``tests/test_kafka_records.py`` holds the two together).
"""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint64_t

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void *op)

cdef object _tuple_new = tuple.__new__

# the v2 batch header (kafka's DefaultRecordBatch): the records start after its 61 bytes
HEADER_SIZE = 61


cdef inline Py_ssize_t _varint(const unsigned char *p, Py_ssize_t pos, Py_ssize_t end, int64_t *out) noexcept nogil:
    """A zigzag varint at ``pos``; the position after it, or -1 (past ``end``, or longer
    than 9 bytes, which kafka-python reads as a Python int that may leave int64)."""
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef unsigned char b
    while True:
        if pos >= end or shift > 56:
            return -1
        b = p[pos]
        pos += 1
        result |= (<uint64_t>(b & 0x7F)) << shift
        if not (b & 0x80):
            break
        shift += 7
    out[0] = <int64_t>(result >> 1) ^ -(<int64_t>(result & 1))
    return pos


cdef extern from *:
    """
    /* a + b into *r; nonzero when it leaves int64 (kafka-python's Python ints would not) */
    static int tl_add_overflows(int64_t a, int64_t b, int64_t *r) { return __builtin_add_overflow(a, b, r); }
    """
    bint _add_overflows "tl_add_overflows"(int64_t a, int64_t b, int64_t *r) noexcept nogil


cdef object _nullable_bytes(const unsigned char *p, Py_ssize_t *pos, Py_ssize_t end, int64_t *n):
    """Kafka's nullable bytes at ``pos[0]`` (a varint length, then that many bytes; a
    negative length is null): the bytes, or None, with ``pos[0]`` moved past them; -1 in
    ``pos[0]`` when they do not fit before ``end``."""
    cdef Py_ssize_t at = _varint(p, pos[0], end, n)
    if at < 0 or n[0] > end - at:
        pos[0] = -1
        return None
    if n[0] < 0:
        pos[0] = at
        return None
    pos[0] = at + <Py_ssize_t>n[0]
    return PyBytes_FromStringAndSize(<const char *>p + at, <Py_ssize_t>n[0])


def batch_records(bytearray buf, Py_ssize_t num_records, int64_t base_offset, int64_t first_timestamp,
                  int64_t max_timestamp, int timestamp_type, str topic, int partition, int leader_epoch,
                  object record_type):
    """The records of a v2 batch whose bytes (header included) are ``buf``, as
    ``record_type`` tuples (kafka-python's ``ConsumerRecord`` fields, no deserializers),
    and each record's size in bytes: ``(records, sizes)``; None when kafka-python's own
    loop must read it (see the module's docstring)."""
    cdef const unsigned char *p = <const unsigned char *>PyByteArray_AS_STRING(buf)
    cdef Py_ssize_t end = PyByteArray_GET_SIZE(buf)
    cdef Py_ssize_t pos = HEADER_SIZE, start, i, j
    cdef int64_t length, attrs, ts_delta, off_delta, key_len, value_len, n_headers, h_len, hv_len
    cdef int64_t timestamp, offset, header_size
    cdef object key, value, h_key, h_value, headers, record
    cdef list records = [], sizes = []
    if num_records < 0 or end < HEADER_SIZE:
        return None
    for i in range(num_records):
        pos = _varint(p, pos, end, &length)
        if pos < 0:
            return None
        start = pos
        pos = _varint(p, pos, end, &attrs)
        if pos < 0:
            return None
        pos = _varint(p, pos, end, &ts_delta)
        if pos < 0:
            return None
        if timestamp_type == 1:   # LOG_APPEND_TIME: the batch's max timestamp, as kafka-python reads it
            timestamp = max_timestamp
        elif _add_overflows(first_timestamp, ts_delta, &timestamp):
            return None
        pos = _varint(p, pos, end, &off_delta)
        if pos < 0 or _add_overflows(base_offset, off_delta, &offset):
            return None
        key = _nullable_bytes(p, &pos, end, &key_len)
        if pos < 0:
            return None
        value = _nullable_bytes(p, &pos, end, &value_len)
        if pos < 0:
            return None
        pos = _varint(p, pos, end, &n_headers)
        if pos < 0 or n_headers < 0:
            return None
        headers = []
        header_size = 0
        for j in range(n_headers):
            pos = _varint(p, pos, end, &h_len)
            if pos < 0 or h_len < 0 or h_len > end - pos:
                return None
            try:
                h_key = PyUnicode_DecodeUTF8(<const char *>p + pos, h_len, NULL)
            except UnicodeDecodeError:
                return None
            pos += h_len
            h_value = _nullable_bytes(p, &pos, end, &hv_len)
            if pos < 0:
                return None
            header_size += h_len + (hv_len if hv_len >= 0 else 0)
            headers.append((h_key, h_value))
        if pos - start != length:
            return None
        record = _tuple_new(record_type, (
            topic, partition, leader_epoch, offset, timestamp, timestamp_type, key, value, headers, None,
            key_len if key_len >= 0 else -1, value_len if value_len >= 0 else -1,
            header_size if n_headers else -1))
        # Neither the record nor its headers list can be part of a reference cycle (they
        # hold strings, bytes, ints and the header tuples), so the cyclic collector is
        # told not to scan them: a consumer holds tens of thousands of fetched records at
        # once, and every young collection rescanned each of them (see gcpolicy.py)
        PyObject_GC_UnTrack(<PyObject *>headers)
        PyObject_GC_UnTrack(<PyObject *>record)
        records.append(record)
        sizes.append(length)
    if pos != end:
        return None
    return records, sizes
