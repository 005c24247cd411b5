"""The rate-limit rules exactly, on a fake clock: TokenBucket and take_both as the gateway
composes them (a connection bucket and the user's shared one), and UserRateLimits keeping
a user's bucket until it has refilled.

The integration tests in tests/integration/test_limits.py check the same behaviours on a
real server with bounds tolerant of wall-clock refill; the arithmetic is checked here.
Times are chosen exact in binary (1024 + multiples of 1/8) so no refill is off by an ulp.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from doubles import FakeClock
from nexus._speedups.ratelimit import TokenBucket, take_both
from nexus.core.rate_limits import UserRateLimits
from nexus.errors import RateLimited

T = TypeVar("T")
ANN = ("acme", "ann")
START = 1024.0


class FakeTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is the fake clock: a timer fires when the test has moved the
    clock past it and steps the loop, never on its own. Records every call_later delay."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self._fake_clock = clock
        self.delays: list[float] = []

    def time(self) -> float:
        return self._fake_clock()

    def call_later(  # type: ignore[override]
        self, delay: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        self.delays.append(delay)
        return super().call_later(delay, callback, *args, context=context)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the loop (it may need a running loop); due timers run too."""

        async def run() -> T:
            return fn(*args)

        return self.run_until_complete(run())

    def advance(self, seconds: float) -> None:
        """Move the clock, then run what fell due."""
        self._fake_clock.advance(seconds)
        self.call(lambda: None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def loop(clock: FakeClock) -> Iterator[FakeTimeLoop]:
    loop = FakeTimeLoop(clock)
    yield loop
    loop.close()


def retry_after(loop: FakeTimeLoop, limits: UserRateLimits, key: tuple[str, str]) -> int:
    """The retry_after_ms of a refused take (fails if the take is allowed)."""
    with pytest.raises(RateLimited) as refused:
        loop.call(limits.take, key)
    return refused.value.retry_after_ms


def allowed(loop: FakeTimeLoop, limits: UserRateLimits, key: tuple[str, str], n: int) -> int:
    """How many of ``n`` takes at the current time are allowed."""
    ok = 0
    for _ in range(n):
        try:
            loop.call(limits.take, key)
            ok += 1
        except RateLimited:
            pass
    return ok


# -- UserRateLimits: counts ---------------------------------------------------------------


def test_burst_then_refusals_with_the_exact_wait(loop: FakeTimeLoop, clock: FakeClock) -> None:
    limits = UserRateLimits(rate=4, burst=8, monotonic=clock)
    assert allowed(loop, limits, ANN, 8) == 8
    assert retry_after(loop, limits, ANN) == 250  # one token at 4/s
    loop.advance(0.125)
    assert retry_after(loop, limits, ANN) == 125  # half a token there already
    loop.advance(0.125)
    assert allowed(loop, limits, ANN, 1) == 1
    assert retry_after(loop, limits, ANN) == 250  # refusals spent nothing


@pytest.mark.parametrize("k", [1, 3, 8])
def test_k_over_rate_seconds_refill_exactly_k(loop: FakeTimeLoop, clock: FakeClock, k: int) -> None:
    limits = UserRateLimits(rate=4, burst=8, monotonic=clock)
    assert allowed(loop, limits, ANN, 8) == 8
    loop.advance(k / 4)
    assert allowed(loop, limits, ANN, 10) == k


def test_a_full_bucket_does_not_grow_past_the_burst(loop: FakeTimeLoop, clock: FakeClock) -> None:
    limits = UserRateLimits(rate=4, burst=8, monotonic=clock)
    bucket = limits.hold(ANN)
    clock.advance(3600)
    assert allowed(loop, limits, ANN, 20) == 8
    assert bucket.available(clock()) == 0


def test_users_and_tenants_have_their_own_buckets(loop: FakeTimeLoop, clock: FakeClock) -> None:
    limits = UserRateLimits(rate=4, burst=2, monotonic=clock)
    assert allowed(loop, limits, ANN, 3) == 2
    assert allowed(loop, limits, ("acme", "bob"), 3) == 2
    assert allowed(loop, limits, ("globex", "ann"), 3) == 2  # same user id, other tenant
    assert len(limits) == 3


# -- UserRateLimits: holding and releasing -------------------------------------------------


def test_hold_and_unhold_keep_the_bucket(loop: FakeTimeLoop, clock: FakeClock) -> None:
    limits = UserRateLimits(rate=4, burst=8, monotonic=clock)
    bucket = limits.hold(ANN)
    assert allowed(loop, limits, ANN, 5) == 5  # an HTTP write spends the held bucket
    assert bucket.available(clock()) == 3
    assert limits.hold(ANN) is bucket  # a second session shares it
    loop.call(limits.unhold, ANN)
    loop.call(limits.unhold, ANN)
    assert limits.hold(ANN) is bucket and bucket.available(clock()) == 3


def test_reconnecting_does_not_refill(loop: FakeTimeLoop, clock: FakeClock) -> None:
    limits = UserRateLimits(rate=4, burst=8, monotonic=clock)
    bucket = limits.hold(ANN)
    assert allowed(loop, limits, ANN, 8) == 8
    for _ in range(5):  # reconnect, again and again, within the same instant
        loop.call(limits.unhold, ANN)
        assert limits.hold(ANN) is bucket
    assert retry_after(loop, limits, ANN) == 250


def test_a_released_bucket_is_dropped_only_once_refilled(
    loop: FakeTimeLoop, clock: FakeClock
) -> None:
    limits = UserRateLimits(rate=4, burst=4, monotonic=clock)
    bucket = limits.hold(ANN)
    assert allowed(loop, limits, ANN, 4) == 4
    loop.call(limits.unhold, ANN)
    assert loop.delays == [1.0]  # 4 missing tokens at 4/s
    loop.advance(0.875)
    # Not yet full: dropping it would hand a reconnecting user a fresh burst.
    assert len(limits) == 1 and bucket.available(clock()) == 3.5
    loop.advance(0.125)
    assert len(limits) == 0
    assert loop.delays == [1.0]  # no second check was needed


def test_a_partly_spent_bucket_is_checked_when_it_will_be_full(
    loop: FakeTimeLoop, clock: FakeClock
) -> None:
    limits = UserRateLimits(rate=4, burst=4, monotonic=clock)
    limits.hold(ANN)
    assert allowed(loop, limits, ANN, 2) == 2
    clock.advance(0.25)  # one token back
    loop.call(limits.unhold, ANN)
    assert loop.delays == [0.25]
    loop.advance(0.25)
    assert len(limits) == 0


def test_an_unspent_bucket_is_dropped_at_once(loop: FakeTimeLoop, clock: FakeClock) -> None:
    limits = UserRateLimits(rate=4, burst=4, monotonic=clock)
    limits.hold(ANN)
    loop.call(limits.unhold, ANN)
    assert len(limits) == 0 and loop.delays == []


def test_one_release_check_per_user_however_often_they_reconnect(
    loop: FakeTimeLoop, clock: FakeClock
) -> None:
    limits = UserRateLimits(rate=4, burst=4, monotonic=clock)
    limits.hold(ANN)
    assert allowed(loop, limits, ANN, 4) == 4
    for _ in range(100):
        loop.call(limits.unhold, ANN)
        limits.hold(ANN)
    loop.call(limits.unhold, ANN)
    assert loop.delays == [1.0]


def test_a_bucket_held_again_when_its_check_fires_stays(
    loop: FakeTimeLoop, clock: FakeClock
) -> None:
    limits = UserRateLimits(rate=4, burst=4, monotonic=clock)
    bucket = limits.hold(ANN)
    assert allowed(loop, limits, ANN, 4) == 4
    loop.call(limits.unhold, ANN)
    loop.advance(0.5)
    assert limits.hold(ANN) is bucket  # reconnected before the check
    assert allowed(loop, limits, ANN, 1) == 1  # 2 refilled, 1 spent: 1 left
    loop.advance(0.5)  # the check fires while held: nothing happens
    assert len(limits) == 1 and loop.delays == [1.0]
    loop.call(limits.unhold, ANN)  # 3 tokens now: one more check, for the last one
    assert loop.delays == [1.0, 0.25]
    loop.advance(0.25)
    assert len(limits) == 0


def test_an_http_write_without_a_session_is_remembered_until_refilled(
    loop: FakeTimeLoop, clock: FakeClock
) -> None:
    limits = UserRateLimits(rate=4, burst=4, monotonic=clock)
    assert allowed(loop, limits, ANN, 4) == 4  # no session holds the bucket
    # The first take scheduled the check (1 missing then); the others found it pending.
    assert len(limits) == 1 and loop.delays == [0.25]
    loop.advance(0.25)  # 1 token back, 3 missing: checked again when they will be
    assert len(limits) == 1 and loop.delays == [0.25, 0.75]
    loop.advance(0.5)
    assert allowed(loop, limits, ANN, 4) == 3  # the same bucket, partly refilled
    loop.advance(0.25)  # 1 token of 4: checks again
    assert len(limits) == 1 and loop.delays == [0.25, 0.75, 0.75]
    loop.advance(0.75)
    assert len(limits) == 0


# -- the gateway's composition: a connection bucket and the user's, take_both -------------


def test_a_burst_gets_exactly_what_is_left(loop: FakeTimeLoop, clock: FakeClock) -> None:
    """test_limits.py::test_burst_past_bucket_is_refused_without_loss, exactly: connection
    20/s burst 10, user 40/s burst 15; auth (connection only) and join took 2."""
    limits = UserRateLimits(rate=40, burst=15, monotonic=clock)
    conn = TokenBucket(20, 10, clock())
    assert conn.take(clock()) == 0  # auth: before it only the connection bucket applies
    user = limits.hold(ANN)
    assert take_both(conn, user, clock()) == 0  # join
    results = [take_both(conn, user, clock()) for _ in range(30)]
    assert results[:8] == [0] * 8
    assert results[8:] == [50] * 22  # the connection's next token, at 20/s
    assert user.available(clock()) == 15 - 9  # the connection's refusals cost the user none
    clock.advance(0.25)  # 5 connection tokens, 10 user tokens
    assert [take_both(conn, user, clock()) for _ in range(7)] == [0] * 5 + [50] * 2


def test_two_connections_share_the_user_bucket(loop: FakeTimeLoop, clock: FakeClock) -> None:
    """test_limits.py::test_user_bucket_is_shared_across_connections, exactly: 24 pings
    from two connections (9 tokens each after auth) against a user burst of 15."""
    limits = UserRateLimits(rate=40, burst=15, monotonic=clock)
    conns = [TokenBucket(20, 10, clock()), TokenBucket(20, 10, clock())]
    for conn in conns:
        assert conn.take(clock()) == 0  # auth
    user = limits.hold(ANN)
    assert limits.hold(ANN) is user
    results: list[list[int]] = [[], []]
    for _ in range(12):
        for i, conn in enumerate(conns):
            results[i].append(take_both(conn, user, clock()))
    assert results[0] == [0] * 8 + [25] * 4  # the user's next token, at 40/s
    assert results[1] == [0] * 7 + [25] * 5
    assert [c.available(clock()) for c in conns] == [1, 2]  # refusals spent nothing


def test_reconnecting_keeps_the_user_bucket_spent(loop: FakeTimeLoop, clock: FakeClock) -> None:
    """test_limits.py::test_reconnecting_does_not_refill_the_user_bucket, exactly:
    connection and user at 1/s, bursts 10 and 15."""
    limits = UserRateLimits(rate=1, burst=15, monotonic=clock)
    first = TokenBucket(1, 10, clock())
    assert first.take(clock()) == 0
    user = limits.hold(ANN)
    assert [take_both(first, user, clock()) for _ in range(9)] == [0] * 9
    loop.call(limits.unhold, ANN)
    second = TokenBucket(1, 10, clock())  # a fresh connection bucket...
    assert second.take(clock()) == 0
    assert limits.hold(ANN) is user  # ...but the same user bucket, 6 left
    assert [take_both(second, user, clock()) for _ in range(8)] == [0] * 6 + [1000] * 2
    clock.advance(2)
    assert [take_both(second, user, clock()) for _ in range(3)] == [0, 0, 1000]
