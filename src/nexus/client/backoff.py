"""Reconnect delays: exponential backoff with full jitter (AWS architecture blog, "Exponential
Backoff And Jitter"): each delay is uniform in [0, min(cap, base * 2**attempt)], so a crowd
of clients cut off together does not come back together."""

from __future__ import annotations

import math
import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._rand = rand
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt (seconds); each call counts an attempt."""
        ceiling = min(self.cap, math.ldexp(self.base, min(self.attempt, 62)))
        self.attempt += 1
        return float(self._rand()) * ceiling

    def reset(self) -> None:
        """After a connection that worked: the next failure starts small again."""
        self.attempt = 0
