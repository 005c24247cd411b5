"""Per-user request buckets, shared by a user's WebSocket sessions and HTTP writes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .._speedups.ratelimit import TokenBucket
from ..errors import RateLimited

UserKey = tuple[str, str]  # (tenant, user id)


class _Entry:
    __slots__ = ("bucket", "holders", "release")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.holders = 0  # open sessions using the bucket
        self.release: asyncio.TimerHandle | None = None  # pending _release


class UserRateLimits:
    """One token bucket per (tenant, user) on this node.

    A bucket lives while a session holds it and, after that, until it has refilled:
    dropping it at the last disconnect would hand a fresh burst to anyone who
    reconnects (or who posts over HTTP between connections). The map is therefore
    bounded by the users active within one refill period, and at most one release
    check is pending per user however often they reconnect.
    """

    def __init__(
        self, rate: float, burst: int, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._monotonic = monotonic
        self._entries: dict[UserKey, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, key: UserKey) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(TokenBucket(self._rate, self._burst, self._monotonic()))
            self._entries[key] = entry
        return entry

    def hold(self, key: UserKey) -> TokenBucket:
        """The user's bucket, kept while the caller holds it (until ``unhold``)."""
        entry = self._entry(key)
        entry.holders += 1
        return entry.bucket

    def unhold(self, key: UserKey) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.holders -= 1
            self._schedule_release(key, entry)

    def take(self, key: UserKey, request_id: object = None) -> None:
        """Charge one request to the user's bucket, or raise RateLimited."""
        entry = self._entry(key)
        wait_ms = entry.bucket.take(self._monotonic())
        self._schedule_release(key, entry)
        if wait_ms:
            raise RateLimited(
                "request rate limit exceeded", retry_after_ms=wait_ms, request_id=request_id
            )

    def _schedule_release(self, key: UserKey, entry: _Entry) -> None:
        if entry.holders <= 0 and entry.release is None:
            self._release(key)

    def _release(self, key: UserKey) -> None:
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.release = None
        if entry.holders > 0:
            return
        bucket = entry.bucket
        missing = bucket.burst - bucket.available(self._monotonic())
        if missing <= 0:
            del self._entries[key]
        else:  # rates are validated positive
            entry.release = asyncio.get_running_loop().call_later(
                missing / bucket.rate, self._release, key
            )
