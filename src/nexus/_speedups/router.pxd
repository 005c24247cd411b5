cdef class FlushQueue:
    cdef object _call_soon
    cdef list _dirty
    cdef bint _scheduled
    cdef object _flush_cb
    cdef public unsigned long long flushes
    cdef public unsigned long long frames_out
    cdef public unsigned long long bytes_out
    cdef public unsigned long long writes
    cdef inline void mark(self, Outbox box)


cdef class Outbox:
    cdef object _transport
    cdef FlushQueue _queue
    cdef list _pending
    cdef readonly Py_ssize_t pending_bytes
    cdef readonly Py_ssize_t dropped_bytes
    cdef readonly Py_ssize_t limit
    cdef readonly Py_ssize_t transport_buffered
    cdef bint _marked
    cdef readonly bint closed
    cdef readonly bint overflowed
    cdef object _on_overflow
    cdef readonly unsigned long long frames_out
    cdef readonly unsigned long long bytes_out
    cdef readonly unsigned long long writes
    cdef inline bint _push(self, bytes frame)
    cdef void _overflow(self)
    cdef _write_pending(self)
    cdef _flush(self)


cdef class Router:
    cdef dict _rooms
    cdef dict _local
    cdef Py_ssize_t _local_count
    cdef public unsigned long long deliveries
    cdef public unsigned long long local_errors
    cdef Py_ssize_t _deliver_local(self, object room, bytes frame)
    cpdef bint join(self, object room, Outbox box)
    cpdef bint leave(self, object room, Outbox box)
    cpdef Py_ssize_t broadcast(self, object room, bytes frame, Outbox exclude=*)
    cpdef bint is_member(self, object room, Outbox box)
    cpdef Py_ssize_t count(self, object room)
