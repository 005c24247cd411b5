# cython: language_level=3
"""Server-side WebSocket framing (RFC 6455 section 5.2).

Frames sent by a server are never masked, so one framed broadcast is valid
bytes for every receiver: the caller frames once and writes the same object to
each socket.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcpy
from libc.stdint cimport uint8_t, uint64_t

cdef enum:
    OP_TEXT = 0x1
    OP_BINARY = 0x2
    OP_CLOSE = 0x8
    OP_PING = 0x9
    OP_PONG = 0xA
    MAX_CONTROL_PAYLOAD = 125


cdef inline Py_ssize_t header_size(Py_ssize_t n) noexcept:
    if n < 126:
        return 2
    if n < 65536:
        return 4
    return 10


cdef bytes frame_bytes(uint8_t opcode, const char* payload, Py_ssize_t n):
    cdef Py_ssize_t h = header_size(n)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, h + n)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    cdef uint64_t length = <uint64_t>n
    cdef int i
    p[0] = 0x80 | opcode  # FIN + opcode
    if h == 2:
        p[1] = <uint8_t>n
    elif h == 4:
        p[1] = 126
        p[2] = <uint8_t>(length >> 8)
        p[3] = <uint8_t>length
    else:
        p[1] = 127
        for i in range(8):
            p[2 + i] = <uint8_t>(length >> (56 - 8 * i))
    if n:
        memcpy(p + h, payload, n)
    return out


def frame_text(bytes payload not None) -> bytes:
    """Return one unmasked, final TEXT frame carrying ``payload`` (UTF-8 bytes)."""
    return frame_bytes(OP_TEXT, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


def frame_binary(bytes payload not None) -> bytes:
    """Return one unmasked, final BINARY frame carrying ``payload``."""
    return frame_bytes(OP_BINARY, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))


cdef bytes control_frame(uint8_t opcode, payload):
    cdef const unsigned char[:] view = payload
    cdef Py_ssize_t n = view.shape[0]
    if n > MAX_CONTROL_PAYLOAD:
        raise ValueError(f"control frame payload over 125 bytes: {n}")
    if n == 0:
        return frame_bytes(opcode, NULL, 0)
    return frame_bytes(opcode, <const char*>&view[0], n)


def frame_ping(payload=b"") -> bytes:
    """Return one PING frame; ``payload`` (any bytes-like object) is at most 125 bytes."""
    return control_frame(OP_PING, payload)


def frame_pong(payload=b"") -> bytes:
    """Return one PONG frame echoing ``payload`` (any bytes-like object, at most 125 bytes).

    Pongs are queued in the connection's outbox like any other frame, so they count
    against its outbound limit: a client flooding pings without reading is cut off.
    """
    return control_frame(OP_PONG, payload)


def frame_close(int code, str reason="") -> bytes:
    """Return one CLOSE frame with ``code`` and a UTF-8 ``reason`` cut to fit 125 bytes."""
    if not 1000 <= code <= 4999:
        raise ValueError(f"close code out of range: {code}")
    cdef bytes r = reason.encode("utf-8")[:123]
    cdef bytes body = bytes(((code >> 8) & 0xFF, code & 0xFF)) + r
    return frame_bytes(OP_CLOSE, PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))


def unframe(bytes frame not None) -> bytes:
    """The payload of one complete unmasked frame built by this module (a broadcast frame
    handed to an in-process room member)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(frame)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t h
    if n < 2 or p[1] & 0x80:
        raise ValueError("not an unmasked frame")
    h = header_size_of(p[1] & 0x7F)
    if n < h:
        raise ValueError("truncated frame")
    return frame[h:]


cdef inline Py_ssize_t header_size_of(uint8_t length_byte) noexcept:
    if length_byte < 126:
        return 2
    if length_byte == 126:
        return 4
    return 10


cdef Py_ssize_t scan(const uint8_t[:] data, Py_ssize_t start, const unsigned char* prefix,
                     Py_ssize_t plen, Py_ssize_t* count, Py_ssize_t* matching) except -1:
    """Walk complete unmasked frames from ``start``; count them, and those whose payload
    starts with ``prefix`` (when plen > 0). Returns the offset after the last complete one."""
    cdef Py_ssize_t n = data.shape[0]
    cdef Py_ssize_t pos = start
    if start < 0:  # compiled without bounds checks: a negative start would read before data
        raise ValueError(f"start must not be negative, got {start}")
    cdef Py_ssize_t h, i
    cdef uint64_t length
    cdef uint8_t b1
    cdef bint match
    while pos + 2 <= n:
        b1 = data[pos + 1] & 0x7F
        if data[pos + 1] & 0x80:
            raise ValueError("masked frame from a server")
        if b1 < 126:
            h = 2
            length = b1
        elif b1 == 126:
            h = 4
            if pos + h > n:
                break
            length = (<uint64_t>data[pos + 2] << 8) | data[pos + 3]
        else:
            h = 10
            if pos + h > n:
                break
            length = 0
            for i in range(8):
                length = (length << 8) | data[pos + 2 + i]
        if <uint64_t>(n - pos - h) < length:
            break
        if plen and <uint64_t>plen <= length:
            match = True
            for i in range(plen):
                if data[pos + h + i] != prefix[i]:
                    match = False
                    break
            if match:
                matching[0] += 1
        pos += h + <Py_ssize_t>length
        count[0] += 1
    return pos


def count_frames(const uint8_t[:] data not None, Py_ssize_t start=0):
    """Scan unmasked server frames in ``data`` from ``start``.

    Returns ``(complete_frames, offset_after_last_complete_frame)``. Used by the
    load generator to count deliveries from raw socket bytes without a full
    WebSocket client per frame.
    """
    cdef Py_ssize_t count = 0, matching = 0
    cdef Py_ssize_t pos = scan(data, start, NULL, 0, &count, &matching)
    return count, pos


def count_messages(const uint8_t[:] data not None, bytes prefix not None, Py_ssize_t start=0):
    """Like ``count_frames``, also counting frames whose payload starts with ``prefix``.

    Returns ``(complete_frames, matching_frames, offset_after_last_complete_frame)``.
    """
    cdef Py_ssize_t count = 0, matching = 0
    cdef Py_ssize_t pos = scan(data, start, prefix, len(prefix), &count, &matching)
    return count, (matching if prefix else count), pos
