"""The failure policy: retries and their waits, no retry once the reply started, the
fallback chain, which kinds go where, and the cooldown — over scripted providers, with a
clock and a sleep that only move when the policy waits."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from nexus.extensions.ai.config import ProviderConfig
from nexus.extensions.ai.offline import OfflineProvider
from nexus.extensions.ai.parts import (
    ChatMessage,
    ChatRequest,
    ErrorKind,
    Finish,
    Part,
    StreamError,
    TextDelta,
    Usage,
)
from nexus.extensions.ai.provider import Provider
from nexus.extensions.ai.resilient import PolicyEvent, ResilientProvider

REQUEST = ChatRequest("m-a", (ChatMessage("user", "what about lunch?"),))
OK: list[Part] = [TextDelta("fine"), Usage(3, 1), Finish("stop")]


def err(kind: ErrorKind, retry_after: float | None = None) -> list[Part]:
    return [StreamError(kind, f"{kind} happened", retry_after)]


class Scripted:
    """Answers each call with the next list of parts; records requests and closes."""

    def __init__(self, name: str, *answers: Sequence[Part]) -> None:
        self.name = name
        self.model = f"model-{name}"
        self.answers = deque(answers)
        self.requests: list[ChatRequest] = []
        self.streams_closed = 0
        self.closed = False

    async def stream(self, request: ChatRequest) -> AsyncIterator[Part]:
        self.requests.append(request)
        parts = self.answers.popleft() if self.answers else OK
        try:
            for part in parts:
                yield part
        finally:
            self.streams_closed += 1

    async def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Policy:
    """Providers by name, each wrapped with its settings, resolving each other."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.providers: dict[str, Provider] = {}
        self.events: list[PolicyEvent] = []

    def wrap(self, inner: Scripted, **settings: Any) -> ResilientProvider:
        config = ProviderConfig(
            inner.name, "openai", model=inner.model, **{"backoff": 0.5, **settings}
        )
        wrapped = ResilientProvider(
            inner,
            config,
            self.providers.__getitem__,
            clock=self.clock,
            sleep=self.clock.sleep,
            on_event=self.events.append,
        )
        self.providers[inner.name] = wrapped
        return wrapped


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def policy(clock: Clock) -> Policy:
    return Policy(clock)


async def run(provider: Provider, request: ChatRequest = REQUEST) -> list[Part]:
    return [part async for part in provider.stream(request)]


async def test_transient_failures_are_retried_with_doubling_backoff(
    policy: Policy, clock: Clock
) -> None:
    inner = Scripted("a", err("server"), err("overloaded"))
    assert await run(policy.wrap(inner, retries=2)) == OK
    assert len(inner.requests) == 3
    assert clock.sleeps == [0.5, 1.0]
    assert [(e.action, e.delay) for e in policy.events] == [("retry", 0.5), ("retry", 1.0)]


async def test_backoff_is_capped(policy: Policy, clock: Clock) -> None:
    inner = Scripted("a", *[err("connect")] * 5)
    await run(policy.wrap(inner, retries=5, backoff=1.0, backoff_max=3.0, cooldown_after=0))
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0, 3.0]


async def test_a_longer_retry_after_wins(policy: Policy, clock: Clock) -> None:
    inner = Scripted("a", err("rate_limited", 2.5), err("rate_limited", 0.1))
    assert await run(policy.wrap(inner, retries=2)) == OK
    assert clock.sleeps == [2.5, 1.0]


async def test_a_retry_after_beyond_backoff_max_goes_to_the_fallback_at_once(
    policy: Policy, clock: Clock
) -> None:
    policy.wrap(Scripted("b"))
    inner = Scripted("a", err("rate_limited", 60.0))
    assert await run(policy.wrap(inner, retries=3, backoff_max=20.0, fallback="b")) == OK
    assert clock.sleeps == []
    assert len(inner.requests) == 1
    assert [e.action for e in policy.events] == ["fallback"]


async def test_exhausted_retries_go_to_the_fallback_with_its_own_model(policy: Policy) -> None:
    b = Scripted("b")
    policy.wrap(b)
    a = Scripted("a", *[err("timeout")] * 3)
    assert await run(policy.wrap(a, retries=2, fallback="b")) == OK
    assert len(a.requests) == 3
    assert [r.model for r in b.requests] == ["model-b"]
    assert b.requests[0].messages == REQUEST.messages
    assert [e.action for e in policy.events] == ["retry", "retry", "fallback"]
    assert policy.events[-1].target == "b"


async def test_without_a_fallback_the_last_error_is_the_last_part(policy: Policy) -> None:
    a = Scripted("a", err("server"), err("server"), err("overloaded"))
    parts = await run(policy.wrap(a, retries=2))
    assert parts == err("overloaded")
    assert len(a.requests) == 3


@pytest.mark.parametrize("kind", ["auth", "protocol", "stream"])
async def test_incurable_kinds_skip_retries_but_fall_back(
    policy: Policy, clock: Clock, kind: ErrorKind
) -> None:
    policy.wrap(Scripted("b"))
    a = Scripted("a", err(kind))
    assert await run(policy.wrap(a, retries=3, fallback="b")) == OK
    assert len(a.requests) == 1 and clock.sleeps == []


async def test_a_bad_request_is_neither_retried_nor_failed_over(policy: Policy) -> None:
    b = Scripted("b")
    policy.wrap(b)
    a = Scripted("a", err("bad_request"))
    assert await run(policy.wrap(a, retries=3, fallback="b")) == err("bad_request")
    assert len(a.requests) == 1 and b.requests == []


async def test_no_retry_or_fallback_once_the_reply_started(policy: Policy) -> None:
    b = Scripted("b")
    policy.wrap(b)
    a = Scripted("a", [TextDelta("half a"), *err("server")])
    parts = await run(policy.wrap(a, retries=3, fallback="b"))
    assert parts == [TextDelta("half a"), *err("server")]
    assert len(a.requests) == 1 and b.requests == []
    assert policy.events == []


async def test_the_fallback_chain_reaches_offline(policy: Policy) -> None:
    offline = OfflineProvider()
    policy.providers["offline"] = offline
    policy.wrap(Scripted("b", err("connect")), retries=0, fallback="offline")
    a = Scripted("a", err("connect"))
    parts = await run(policy.wrap(a, retries=0, fallback="b"))
    assert isinstance(parts[0], TextDelta) and parts[-1] == Finish("stop")
    assert [(e.provider, e.target) for e in policy.events] == [("a", "b"), ("b", "offline")]


async def test_cooldown_opens_after_failures_in_a_row_and_closes_after_its_time(
    policy: Policy, clock: Clock
) -> None:
    a = Scripted("a", err("server"), err("server"), err("server"))
    provider = policy.wrap(a, retries=0, cooldown_after=2, cooldown=30.0)
    assert await run(provider) == err("server")
    assert await run(provider) == err("server")  # the second failure opens the cooldown
    skipped = await run(provider)
    assert len(a.requests) == 2
    (error,) = skipped
    assert isinstance(error, StreamError) and error.kind == "overloaded"
    assert "cooling down" in error.message and error.retry_after == pytest.approx(30.0)
    clock.now += 31.0
    assert await run(provider) == err("server")  # tried again, failed: cooling again
    assert len(a.requests) == 3
    assert "cooling down" in str(await run(provider))
    clock.now += 31.0
    assert await run(provider) == OK
    assert await run(provider) == OK
    assert [e.action for e in policy.events] == ["cooldown", "cooldown"]


async def test_cooldown_goes_straight_to_the_fallback(policy: Policy) -> None:
    b = Scripted("b")
    policy.wrap(b)
    a = Scripted("a", err("server"))
    provider = policy.wrap(a, retries=0, cooldown_after=1, fallback="b")
    assert await run(provider) == OK  # failed over after the failure
    assert await run(provider) == OK  # skipped: straight to b
    assert len(a.requests) == 1 and len(b.requests) == 2


async def test_a_cooldown_ends_the_retries(policy: Policy, clock: Clock) -> None:
    a = Scripted("a", err("server"), err("server"), err("server"))
    await run(policy.wrap(a, retries=5, cooldown_after=2))
    assert len(a.requests) == 2 and clock.sleeps == [0.5]


async def test_a_finished_reply_resets_the_failure_count(policy: Policy) -> None:
    a = Scripted("a", err("server"), OK, err("server"), OK)
    provider = policy.wrap(a, retries=0, cooldown_after=2)
    for _ in range(4):
        await run(provider)
    assert len(a.requests) == 4
    assert policy.events == []


async def test_bad_requests_do_not_count_towards_the_cooldown(policy: Policy) -> None:
    a = Scripted("a", *[err("bad_request")] * 3)
    provider = policy.wrap(a, retries=0, cooldown_after=2)
    for _ in range(4):
        await run(provider)
    assert len(a.requests) == 4


async def test_aclose_closes_the_inner_stream(policy: Policy) -> None:
    a = Scripted("a", [TextDelta("one"), TextDelta("two"), Finish("stop")])
    stream = policy.wrap(a).stream(REQUEST)
    assert await anext(stream) == TextDelta("one")
    await stream.aclose()  # type: ignore[attr-defined]
    assert a.streams_closed == 1


async def test_close_closes_the_adapter(policy: Policy) -> None:
    a = Scripted("a")
    provider = policy.wrap(a)
    await provider.close()
    assert a.closed
    assert provider.name == "a" and provider.model == "model-a"
