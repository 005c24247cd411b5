# cython: language_level=3
"""Token buckets for per-connection and per-user request rate limits."""
from libc.math cimport ceil


cdef class TokenBucket:
    """A bucket holding up to ``burst`` tokens, refilled at ``rate`` tokens per second.

    Time is passed in by the caller (monotonic seconds) so the bucket is
    deterministic and testable without a clock.
    """
    cdef readonly double rate
    cdef readonly double burst
    cdef double tokens
    cdef double updated

    def __cinit__(self, double rate, double burst, double now=0.0):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    cdef inline void refill(self, double now) noexcept:
        if now > self.updated:
            self.tokens += (now - self.updated) * self.rate
            if self.tokens > self.burst:
                self.tokens = self.burst
            self.updated = now

    cdef inline long wait_ms(self, double cost) noexcept:
        # Milliseconds until ``cost`` tokens are available, at least 1.
        cdef double ms = ceil((cost - self.tokens) / self.rate * 1000.0)
        return <long>ms if ms >= 1.0 else 1

    cpdef long take(self, double now, double cost=1.0):
        """Take ``cost`` tokens. Returns 0 on success, else the ms to wait (nothing taken)."""
        self.refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0
        return self.wait_ms(cost)

    cpdef double available(self, double now):
        """Tokens available at ``now``."""
        self.refill(now)
        return self.tokens


cpdef long take_both(TokenBucket first, TokenBucket second, double now, double cost=1.0):
    """Take ``cost`` from both buckets, or from neither.

    Returns 0 on success, else the ms until both could allow it. A refusal by
    the second bucket does not spend the first one's token.
    """
    first.refill(now)
    second.refill(now)
    cdef long a = 0
    cdef long b = 0
    if first.tokens < cost:
        a = first.wait_ms(cost)
    if second.tokens < cost:
        b = second.wait_ms(cost)
    if a or b:
        return a if a > b else b
    first.tokens -= cost
    second.tokens -= cost
    return 0
