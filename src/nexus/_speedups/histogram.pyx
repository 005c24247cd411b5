# cython: language_level=3
"""Fixed-bucket histogram for per-message latencies, read by the metrics scrape.

Observing costs a short C loop and no allocation, so the pipeline can record the
send -> ack latency of every message without a Python-level metrics call per message.
"""
from cpython.mem cimport PyMem_Malloc, PyMem_Free


cdef class Histogram:
    cdef double* _bounds
    cdef unsigned long long* _counts  # one per bound, plus +Inf
    cdef Py_ssize_t _n
    cdef readonly double sum
    cdef readonly unsigned long long count

    def __cinit__(self, bounds):
        cdef list values = sorted(float(b) for b in bounds)
        cdef Py_ssize_t i
        if not values:
            raise ValueError("at least one bucket bound is required")
        self._n = len(values)
        self._bounds = <double*>PyMem_Malloc(self._n * sizeof(double))
        self._counts = <unsigned long long*>PyMem_Malloc((self._n + 1) * sizeof(unsigned long long))
        if self._bounds is NULL or self._counts is NULL:
            raise MemoryError()
        for i in range(self._n):
            self._bounds[i] = values[i]
            self._counts[i] = 0
        self._counts[self._n] = 0
        self.sum = 0.0
        self.count = 0

    def __dealloc__(self):
        PyMem_Free(self._bounds)
        PyMem_Free(self._counts)

    cpdef void observe(self, double value):
        """Count ``value`` in the first bucket whose upper bound is >= value."""
        cdef Py_ssize_t i = 0
        while i < self._n and value > self._bounds[i]:
            i += 1
        self._counts[i] += 1
        self.sum += value
        self.count += 1

    def bounds(self):
        return [self._bounds[i] for i in range(self._n)]

    def cumulative(self):
        """Counts of values <= each bound, then the total (the +Inf bucket), Prometheus style."""
        cdef list out = []
        cdef unsigned long long acc = 0
        cdef Py_ssize_t i
        for i in range(self._n + 1):
            acc += self._counts[i]
            out.append(acc)
        return out
