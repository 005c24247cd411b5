"""A token bucket in plain floats."""

from __future__ import annotations

import math


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("bad bucket")
        self.rate, self.burst, self.tokens, self.updated = rate, burst, burst, now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def _wait_ms(self, cost: float) -> int:
        return max(1, math.ceil((cost - self.tokens) / self.rate * 1000.0))

    def take(self, now: float, cost: float = 1.0) -> int:
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0
        return self._wait_ms(cost)

    def available(self, now: float) -> float:
        self._refill(now)
        return self.tokens


def take_both(a: TokenBucket, b: TokenBucket, now: float, cost: float = 1.0) -> int:
    a._refill(now)
    b._refill(now)
    waits = [x._wait_ms(cost) for x in (a, b) if x.tokens < cost]
    if waits:
        return max(waits)
    a.tokens -= cost
    b.tokens -= cost
    return 0
