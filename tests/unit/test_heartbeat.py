"""Heartbeat: one sweep for every connection, driven by a fake loop (its timers run only
when the test moves its clock) over fake connections implementing ``Beating``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from nexus.gateway.heartbeat import Heartbeat

T0 = 1000.0  # loop time at the start (a real loop's monotonic time is never 0)


class Timer:
    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """``time()`` and ``call_later`` only: timers fire, in order, when ``advance`` passes
    them."""

    def __init__(self) -> None:
        self.now = T0
        self.timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        timer = Timer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    @property
    def pending(self) -> list[Timer]:
        return [t for t in self.timers if not t.cancelled]

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = [t for t in self.pending if t.when <= end]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.now = timer.when
            timer.callback(*timer.args)
        self.now = end


class Conn:
    """A connection as the heartbeat sees it; closing removes it from the open set."""

    def __init__(self, loop: FakeLoop, open_set: list[Conn], expires_at: float = 0.0) -> None:
        self.last_rx = loop.time()
        self.ping_sent = 0.0
        self.expires_at = expires_at
        self.pings: list[float] = []
        self.closed: str | None = None
        self._loop = loop
        self._open = open_set
        open_set.append(self)

    def receive(self) -> None:
        """A frame from the peer (a pong included), as the gateway records it."""
        self.last_rx = self._loop.time()
        self.ping_sent = 0.0

    def ping(self) -> None:
        self.pings.append(self._loop.time())

    def token_expired(self) -> None:
        self._close("token expired")

    def heartbeat_lost(self) -> None:
        self._close("heartbeat lost")

    def _close(self, why: str) -> None:
        assert self.closed is None, f"closed twice: {self.closed}, then {why}"
        self.closed = why
        self._open.remove(self)


class Setup:
    def __init__(self, interval: float = 8.0, timeout: float = 4.0) -> None:
        self.loop = FakeLoop()
        self.open: list[Conn] = []
        loop = cast(asyncio.AbstractEventLoop, self.loop)  # time() and call_later() only
        self.heartbeat = Heartbeat(loop, lambda: self.open, interval=interval, timeout=timeout)
        self.heartbeat.start()

    def conn(self, expires_at: float = 0.0) -> Conn:
        return Conn(self.loop, self.open, expires_at)


@pytest.mark.parametrize(
    "interval, timeout, period", [(8.0, 4.0, 1.0), (2.0, 10.0, 0.5), (3.0, 3.0, 0.75)]
)
def test_the_sweep_runs_every_quarter_of_the_shorter_period(
    interval: float, timeout: float, period: float
) -> None:
    s = Setup(interval, timeout)
    [first] = s.loop.pending
    assert first.when == T0 + period
    s.loop.advance(period * 10)
    [following] = s.loop.pending  # one timer at a time, however many sweeps ran
    assert following.when == pytest.approx(T0 + period * 11)


def test_an_idle_connection_is_pinged_after_the_interval() -> None:
    s = Setup(interval=8.0, timeout=4.0)  # sweeps every 1 s
    c = s.conn()
    s.loop.advance(8.0)
    assert c.pings == []  # idle for exactly the interval: not yet
    s.loop.advance(1.0)
    assert c.pings == [T0 + 9.0] and c.ping_sent == T0 + 9.0
    assert s.heartbeat.pings == 1


def test_a_silent_connection_is_closed_after_the_timeout() -> None:
    s = Setup(interval=8.0, timeout=4.0)
    c = s.conn()
    s.loop.advance(9.0)  # pinged at T0 + 9
    s.loop.advance(4.0)
    assert c.closed is None  # exactly the timeout since the ping: not yet
    s.loop.advance(1.0)
    assert c.closed == "heartbeat lost" and s.heartbeat.lost == 1
    assert c.pings == [T0 + 9.0]  # at most one ping outstanding, never a second
    s.loop.advance(60.0)
    assert s.heartbeat.lost == 1  # a closed connection is not swept again


def test_traffic_clears_the_ping() -> None:
    s = Setup(interval=8.0, timeout=4.0)
    c = s.conn()
    s.loop.advance(9.0)
    assert c.ping_sent
    s.loop.advance(2.0)
    c.receive()  # the pong
    s.loop.advance(8.0)
    assert c.closed is None and c.pings == [T0 + 9.0]  # idle again only since T0 + 11
    s.loop.advance(1.0)
    assert c.pings == [T0 + 9.0, T0 + 20.0]


def test_a_chatty_connection_is_never_pinged() -> None:
    s = Setup(interval=8.0, timeout=4.0)
    c = s.conn()
    for _ in range(30):
        s.loop.advance(3.0)
        c.receive()
    assert c.pings == [] and c.closed is None and s.heartbeat.pings == 0


def test_an_expired_token_closes_the_connection() -> None:
    s = Setup(interval=8.0, timeout=4.0)
    # The expiry is wall-clock (the token's exp), read from time.time() by the sweep; a
    # margin of an hour keeps these cases unambiguous.
    expired = s.conn(expires_at=time.time() - 3600)
    valid = s.conn(expires_at=time.time() + 3600)
    forever = s.conn()
    s.loop.advance(1.0)
    assert expired.closed == "token expired" and s.heartbeat.expired == 1
    assert valid.closed is None and forever.closed is None
    s.loop.advance(60.0)
    assert s.heartbeat.expired == 1


def test_expiry_wins_over_a_pending_ping() -> None:
    s = Setup(interval=8.0, timeout=4.0)
    c = s.conn()
    s.loop.advance(9.0)
    assert c.ping_sent
    c.expires_at = time.time() - 3600
    s.loop.advance(1.0)
    assert c.closed == "token expired" and s.heartbeat.lost == 0


def test_one_sweep_handles_many_connections_closing_under_it() -> None:
    s = Setup(interval=8.0, timeout=4.0)
    conns = [s.conn() for _ in range(100)]
    s.loop.advance(9.0)
    assert all(c.pings == [T0 + 9.0] for c in conns) and s.heartbeat.pings == 100
    s.loop.advance(5.0)  # each closes (and leaves the set) during the same sweep
    assert all(c.closed == "heartbeat lost" for c in conns) and s.open == []
    assert len(s.loop.pending) == 1


def test_stop_cancels_the_sweep() -> None:
    s = Setup(interval=8.0, timeout=4.0)
    c = s.conn()
    s.heartbeat.stop()
    assert s.loop.pending == []
    s.loop.advance(100.0)
    assert c.pings == [] and c.closed is None
