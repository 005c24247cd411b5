# cython: language_level=3
"""Per-message record bytes: the ``message`` record and the ``ack`` answer, and entry ids.

Each message makes one record (stored, fanned out, replayed) and one ack; both used to be
a dict encoded by orjson (~1 µs together with the id). Here they are assembled with
``memcpy`` from parts: the fixed JSON skeleton, the strings validated at intake against
JSON-safe alphabets (room names, user ids, kinds, entry ids), and the client's strings
already encoded by orjson (body, reply_to, meta, request id, client_msg_id). The result
is byte for byte what orjson makes of the same dict (tests/unit/test_records.py checks it
against ``protocol.events``, the plain-Python model).
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcpy
import random


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    object PyUnicode_DecodeASCII(const char*, Py_ssize_t, const char*)


cdef struct Part:
    const char* ptr
    Py_ssize_t size


cdef inline int digits(unsigned long long v) noexcept:
    cdef int n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


cdef inline void decimal(char* out, unsigned long long v, int n) noexcept:
    """Write ``v`` in ``n`` decimal digits at ``out``."""
    cdef int i
    for i in range(n - 1, -1, -1):
        out[i] = <char>(48 + v % 10)
        v //= 10


cdef bytes assemble(Part* parts, int count, long long n1, int at1, long long n2, int at2):
    """Concatenate ``parts``, with the decimal number n1 (>= 0) after part ``at1`` and n2
    after part ``at2`` (-1: none), into one bytes object of exactly the right size."""
    if n1 < 0 or n2 < 0:
        raise ValueError("seq and ts must not be negative")
    cdef int d1 = digits(<unsigned long long>n1)
    cdef int d2 = digits(<unsigned long long>n2) if at2 >= 0 else 0
    cdef Py_ssize_t total = d1 + d2
    cdef int i
    for i in range(count):
        total += parts[i].size
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* buf = PyBytes_AS_STRING(out)
    cdef Py_ssize_t pos = 0
    for i in range(count):
        memcpy(buf + pos, parts[i].ptr, parts[i].size)
        pos += parts[i].size
        if i == at1:
            decimal(buf + pos, <unsigned long long>n1, d1)
            pos += d1
        elif i == at2:
            decimal(buf + pos, <unsigned long long>n2, d2)
            pos += d2
    return out


cdef inline Part text(object s):
    cdef Part p
    p.ptr = PyUnicode_AsUTF8AndSize(s, &p.size)
    return p


cdef inline Part raw(bytes b):
    cdef Part p
    p.ptr = PyBytes_AS_STRING(b)
    p.size = PyBytes_GET_SIZE(b)
    return p


cdef bytes NULL_JSON = b"null"
cdef bytes M0 = b'{"type":"message","room":"'
cdef bytes M1 = b'","seq":'
cdef bytes M2 = b',"id":"'
cdef bytes M3 = b'","sender":"'
cdef bytes M4 = b'","sender_kind":"'
cdef bytes M5 = b'","ts":'
cdef bytes M6 = b',"body":'
cdef bytes M7 = b',"reply_to":'
cdef bytes M8 = b',"meta":'
cdef bytes END = b"}"
cdef bytes A0 = b'{"type":"ack","id":'
cdef bytes A1 = b',"room":"'
cdef bytes A2 = b'","seq":'
cdef bytes A3 = b',"message_id":"'
cdef bytes A4 = b'","client_msg_id":'
cdef bytes A5_FALSE = b',"duplicate":false}'
cdef bytes A5_TRUE = b',"duplicate":true}'


def message_record(str room not None, long long seq, str msg_id not None,
                   str sender not None, str sender_kind not None, long long ts,
                   bytes body_json not None, bytes reply_to_json, bytes meta_json):
    """The ``message`` record. ``*_json`` are orjson-encoded (None: null)."""
    cdef Part parts[18]
    parts[0] = raw(M0)
    parts[1] = text(room)
    parts[2] = raw(M1)  # seq follows
    parts[3] = raw(M2)
    parts[4] = text(msg_id)
    parts[5] = raw(M3)
    parts[6] = text(sender)
    parts[7] = raw(M4)
    parts[8] = text(sender_kind)
    parts[9] = raw(M5)  # ts follows
    parts[10] = raw(M6)
    parts[11] = raw(body_json)
    parts[12] = raw(M7)
    parts[13] = raw(NULL_JSON if reply_to_json is None else reply_to_json)
    parts[14] = raw(M8)
    parts[15] = raw(NULL_JSON if meta_json is None else meta_json)
    parts[16] = raw(END)
    return assemble(parts, 17, seq, 2, ts, 9)


def ack_record(bytes rid_json, str room not None, long long seq, str msg_id not None,
               bytes client_msg_id_json, bint duplicate=False):
    """The ``ack`` answer. ``*_json`` are orjson-encoded (None: null)."""
    cdef Part parts[10]
    parts[0] = raw(A0)
    parts[1] = raw(NULL_JSON if rid_json is None else rid_json)
    parts[2] = raw(A1)
    parts[3] = text(room)
    parts[4] = raw(A2)  # seq follows
    parts[5] = raw(A3)
    parts[6] = text(msg_id)
    parts[7] = raw(A4)
    parts[8] = raw(NULL_JSON if client_msg_id_json is None else client_msg_id_json)
    parts[9] = raw(A5_TRUE if duplicate else A5_FALSE)
    return assemble(parts, 10, seq, 4, 0, -1)


cdef class EventIds:
    """Time-ordered entry ids: 48-bit ms timestamp, a random per-process tag, a counter, in
    32 hex digits. The tag keeps ids of different processes (restarts, cluster nodes)
    apart; the counter keeps them unique within one."""
    cdef char _head[22]
    cdef unsigned long long _tag
    cdef unsigned long long _counter

    def __init__(self):
        self._tag = random.getrandbits(40)
        self._counter = 0

    def head(self, long long now_ms):
        """Fix the timestamp part for the next ids (once per commit batch)."""
        cdef int i
        cdef unsigned long long t = <unsigned long long>now_ms & 0xFFFFFFFFFFFF
        for i in range(12):
            self._head[11 - i] = b"0123456789abcdef"[t & 15]
            t >>= 4
        t = self._tag
        for i in range(10):
            self._head[21 - i] = b"0123456789abcdef"[t & 15]
            t >>= 4

    def next(self):
        """The next id (a str of 32 hex digits)."""
        cdef char out[32]
        cdef int i
        cdef unsigned long long c
        self._counter = (self._counter + 1) & 0xFFFFFFFFFF
        c = self._counter
        memcpy(out, self._head, 22)
        for i in range(10):
            out[31 - i] = b"0123456789abcdef"[c & 15]
            c >>= 4
        return PyUnicode_DecodeASCII(out, 32, NULL)
