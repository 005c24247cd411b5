# cython: language_level=3
"""Room routing and fan-out with per-connection write coalescing.

``Router`` maps a room key to the outboxes of its local members; join and
leave are O(1) dict operations. ``Router.broadcast`` pushes one already framed
``bytes`` object into every member's ``Outbox`` without creating Python
objects per delivery. Each ``Outbox`` queues what it is given during a loop
iteration and the shared ``FlushQueue`` writes it out once per iteration, so a
connection receiving many frames in a tick costs one socket write, not one per
frame (picows and asyncio do a syscall per ``write``).
"""
from cpython.dict cimport PyDict_Next, PyDict_GetItem, PyDict_SetItem, PyDict_DelItem, PyDict_Size
from cpython.list cimport PyList_GET_SIZE
from cpython.bytes cimport PyBytes_GET_SIZE, PyBytes_AS_STRING
from cpython.object cimport PyObject

from nexus._speedups.framing cimport frame_bytes


cdef class FlushQueue:
    """Outboxes with pending bytes; flushed once per event-loop iteration."""

    def __init__(self, loop):
        self._call_soon = loop.call_soon
        self._dirty = []
        self._scheduled = False
        self._flush_cb = self.flush
        self.flushes = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.writes = 0

    cdef inline void mark(self, Outbox box):
        self._dirty.append(box)
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self._flush_cb)

    def flush(self):
        """Write out every outbox marked since the last flush."""
        cdef list dirty = self._dirty
        cdef Outbox box
        self._dirty = []
        self._scheduled = False
        self.flushes += 1
        for box in dirty:
            box._flush()

    @property
    def pending(self):
        return len(self._dirty)


cdef class Outbox:
    """Frames queued for one connection, written with one ``transport.write`` per flush.

    ``limit`` bounds the bytes held for this connection (queued here plus
    buffered in the transport). Past it the outbox drops what it holds, stops
    accepting frames and calls ``on_overflow()`` once from the next flush: the
    owner then closes the slow connection.
    """

    def __init__(self, transport, FlushQueue queue not None, Py_ssize_t limit, on_overflow):
        if limit <= 0:
            raise ValueError("limit must be positive")
        # The transport, not its two bound methods: 128 bytes less per idle connection.
        self._transport = transport
        self._queue = queue
        self._pending = []
        self.pending_bytes = 0
        self.dropped_bytes = 0
        self.limit = limit
        self.transport_buffered = 0
        self._marked = False
        self.closed = False
        self.overflowed = False
        self._on_overflow = on_overflow
        self.frames_out = 0
        self.bytes_out = 0
        self.writes = 0

    cdef inline bint _push(self, bytes frame):
        cdef Py_ssize_t size
        if self.closed:
            return False
        size = PyBytes_GET_SIZE(frame)
        if self.pending_bytes + self.transport_buffered + size > self.limit:
            # A large tick is not a slow reader: hand the queue to the socket now and
            # judge by what the transport could not send (the kernel may take it all).
            if self.pending_bytes:
                self._write_pending()
            else:
                self.transport_buffered = self._transport.get_write_buffer_size()
            if self.transport_buffered + size > self.limit:
                self._overflow()
                return False
        self._pending.append(frame)
        self.pending_bytes += size
        if not self._marked:
            self._marked = True
            self._queue.mark(self)
        return True

    cdef void _overflow(self):
        self.dropped_bytes = self.pending_bytes
        self.overflowed = True
        self.closed = True
        self._pending = []
        self.pending_bytes = 0
        if not self._marked:
            self._marked = True
            self._queue.mark(self)

    @property
    def transport(self):
        """The transport this outbox writes to."""
        return self._transport

    def push(self, bytes frame not None):
        """Queue one framed message. Returns False if the outbox is closed or just overflowed."""
        return self._push(frame)

    def push_text(self, bytes payload not None):
        """Frame ``payload`` as one TEXT frame and queue it (one call for the two)."""
        return self._push(frame_bytes(0x1, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload)))

    cdef _write_pending(self):
        cdef list pending = self._pending
        cdef Py_ssize_t n = PyList_GET_SIZE(pending)
        if n == 0:
            return
        self._pending = []
        self.frames_out += n
        self.bytes_out += self.pending_bytes
        self.writes += 1
        # node-wide totals for the metrics scrape
        self._queue.frames_out += n
        self._queue.bytes_out += self.pending_bytes
        self._queue.writes += 1
        self.pending_bytes = 0
        if n == 1:
            self._transport.write(pending[0])
        else:
            self._transport.write(b"".join(pending))
        self.transport_buffered = self._transport.get_write_buffer_size()

    cdef _flush(self):
        self._marked = False
        if self.overflowed:
            cb = self._on_overflow
            self._on_overflow = None
            if cb is not None:
                cb()
            return
        self._write_pending()
        if self.transport_buffered > self.limit:
            self._overflow()

    def flush(self):
        """Write what is queued now, without waiting for the loop iteration to end.

        Used before a control frame (close) that must follow the data already queued.
        """
        if self._marked and not self.overflowed:
            self._flush()

    def close(self):
        """Stop accepting frames and drop anything queued."""
        self.closed = True
        self._pending = []
        self.pending_bytes = 0


cdef class Router:
    """Room key -> local member outboxes, with fan-out of pre-framed bytes.

    Besides sockets, a room may have in-process members (an agent runtime, a bot): a
    callable given each frame. They live in a separate map that ``broadcast`` consults
    only while at least one exists, so socket fan-out pays one integer test for them.
    """

    def __init__(self):
        self._rooms = {}
        self._local = {}
        self._local_count = 0
        self.deliveries = 0
        self.local_errors = 0

    cpdef bint join(self, object room, Outbox box):
        """Add ``box`` to ``room``. Returns False if it was already a member."""
        cdef dict members
        cdef PyObject* found = PyDict_GetItem(self._rooms, room)
        if found is NULL:
            members = {}
            PyDict_SetItem(self._rooms, room, members)
        else:
            members = <dict>found
        if PyDict_GetItem(members, box) is not NULL:
            return False
        PyDict_SetItem(members, box, None)
        return True

    cpdef bint leave(self, object room, Outbox box):
        """Remove ``box`` from ``room``. Returns False if it was not a member."""
        cdef PyObject* found = PyDict_GetItem(self._rooms, room)
        if found is NULL:
            return False
        cdef dict members = <dict>found
        if PyDict_GetItem(members, box) is NULL:
            return False
        PyDict_DelItem(members, box)
        if PyDict_Size(members) == 0:
            PyDict_DelItem(self._rooms, room)
        return True

    cpdef Py_ssize_t broadcast(self, object room, bytes frame, Outbox exclude=None):
        """Push ``frame`` to every member of ``room`` except ``exclude``. Returns deliveries."""
        cdef PyObject* found = PyDict_GetItem(self._rooms, room)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t sent = 0
        cdef PyObject* key
        cdef PyObject* value
        cdef Outbox box
        if found is not NULL:
            while PyDict_Next(<dict>found, &pos, &key, &value):
                box = <Outbox>key
                if box is exclude:
                    continue
                if box._push(frame):
                    sent += 1
            self.deliveries += sent
        if self._local_count:
            sent += self._deliver_local(room, frame)
        return sent

    cdef Py_ssize_t _deliver_local(self, object room, bytes frame):
        cdef PyObject* found = PyDict_GetItem(self._local, room)
        cdef Py_ssize_t sent = 0
        if found is NULL:
            return 0
        for member in list(<dict>found):  # a member may leave while it is called
            try:
                member(frame)
                sent += 1
            except Exception:  # one member's bug must not stop the others' delivery
                self.local_errors += 1
        return sent

    def join_local(self, room, member):
        """Add an in-process member: ``member(frame)`` is called with every frame broadcast
        to ``room`` (the same bytes sockets get; ``framing.unframe`` gives the payload).
        Returns False if it was a member already."""
        members = self._local.setdefault(room, {})
        if member in members:
            return False
        members[member] = None
        self._local_count += 1
        return True

    def leave_local(self, room, member):
        """Remove an in-process member. Returns False if it was not one."""
        members = self._local.get(room)
        if members is None or member not in members:
            return False
        del members[member]
        self._local_count -= 1
        if not members:
            del self._local[room]
        return True

    def local_members(self, room):
        return list(self._local.get(room, ()))

    cpdef bint is_member(self, object room, Outbox box):
        cdef PyObject* found = PyDict_GetItem(self._rooms, room)
        return found is not NULL and PyDict_GetItem(<dict>found, box) is not NULL

    cpdef Py_ssize_t count(self, object room):
        """Socket members of ``room`` (in-process members not included)."""
        cdef PyObject* found = PyDict_GetItem(self._rooms, room)
        return 0 if found is NULL else PyDict_Size(<dict>found)

    def members(self, room):
        """The outboxes in ``room``, in join order."""
        return list(self._rooms.get(room, ()))

    def rooms(self):
        """Room keys that have at least one local member."""
        return list(self._rooms)
