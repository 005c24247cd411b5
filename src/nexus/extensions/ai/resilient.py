"""The failure policy around a hosted provider: retries, fallback, cooldown.

``ResilientProvider`` wraps an adapter and decides, per ``StreamError``, what happens next.
The rules (the settings are ``ProviderConfig``'s):

* Only before the reply starts. Once a ``TextDelta`` or ``ToolCallDelta`` has been passed
  on, an error is passed on unchanged: members have seen the text, and the runtime ends
  the reply as failed. Retrying would repeat or contradict it.
* Retried: ``connect``, ``timeout``, ``rate_limited``, ``overloaded``, ``server`` — what
  may go away by itself — up to ``retries`` times. The wait is ``backoff`` doubled per
  retry, at most ``backoff_max``; a longer ``Retry-After`` wins, but one beyond
  ``backoff_max`` ends the retries at once: holding a live reply that long is worse than
  the fallback.
* Then the ``fallback`` provider (itself wrapped, so chains work), asked with its own
  default model. Also for ``auth``, ``protocol`` and ``stream`` errors, which a retry
  would not cure but another provider may. Not for ``bad_request``: the request is wrong,
  and a fallback (the offline one answers anything) would hide that. No fallback: the
  error is the last part.
* Cooldown: each failed call but a ``bad_request`` counts, a finished one resets the
  count; at ``cooldown_after`` failures in a row (0: never) the provider is skipped for
  ``cooldown`` seconds — straight to the fallback, or an ``overloaded`` error with the
  seconds left as ``retry_after``. The first call after that tries again; if it fails the
  cooldown starts over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from .config import ProviderConfig
from .parts import ChatRequest, ErrorKind, Finish, Part, StreamError, TextDelta, ToolCallDelta
from .provider import Provider

RETRYABLE: frozenset[ErrorKind] = frozenset(
    ("connect", "timeout", "rate_limited", "overloaded", "server")
)
NOT_FAILED_OVER: frozenset[ErrorKind] = frozenset(("bad_request",))


@dataclass(frozen=True, slots=True)
class PolicyEvent:
    """What the policy did, for metrics and logs: ``retry`` (after ``delay`` seconds),
    ``fallback`` (to ``target``) or ``cooldown`` (for ``delay`` seconds)."""

    provider: str
    action: Literal["retry", "fallback", "cooldown"]
    error: StreamError
    delay: float = 0.0
    target: str = ""


class ResilientProvider:
    """``inner`` with the retry, fallback and cooldown policy of ``config``.

    Args:
        inner: the adapter (closed by ``close``).
        config: the provider's settings.
        resolve: the provider of a fallback name (not closed here: the registry owns it).
        clock: monotonic seconds; ``sleep``: awaits seconds (both injectable for tests).
        on_event: called with each ``PolicyEvent``.
    """

    def __init__(
        self,
        inner: Provider,
        config: ProviderConfig,
        resolve: Callable[[str], Provider] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_event: Callable[[PolicyEvent], None] | None = None,
    ) -> None:
        self.name = config.name
        self.model = config.model or getattr(inner, "model", "")
        self.counts: Counter[str] = Counter()  # PolicyEvent actions
        self._inner = inner
        self._config = config
        self._resolve = resolve
        self._clock = clock
        self._sleep = sleep
        self._on_event = on_event
        self._failures = 0  # failed calls in a row
        self._cool_until = 0.0

    async def stream(self, request: ChatRequest) -> AsyncIterator[Part]:
        wait = self._cooling()
        if wait > 0:
            refusal = StreamError(
                "overloaded",
                f"{self.name}: cooling down after {self._failures} failures ({wait:.0f}s left)",
                retry_after=wait,
            )
            async for part in self._fall_back(request, refusal):
                yield part
            return
        attempt = 0
        error: StreamError | None = None
        while True:
            error = None
            started = False
            parts = self._inner.stream(request)
            try:
                async for part in parts:
                    if isinstance(part, StreamError):
                        self._failed(part)
                        if not started:
                            error = part
                            break
                    elif isinstance(part, Finish):
                        self._failures = 0
                    elif isinstance(part, TextDelta | ToolCallDelta):
                        started = True
                    yield part
            finally:
                await parts.aclose()  # type: ignore[attr-defined]
            if error is None:
                return
            delay = self._retry_delay(attempt, error)
            if delay is None:
                break
            self._emit(PolicyEvent(self.name, "retry", error, delay))
            await self._sleep(delay)
            attempt += 1
        async for part in self._fall_back(request, error):
            yield part

    async def close(self) -> None:
        await self._inner.close()

    def _cooling(self) -> float:
        return max(0.0, self._cool_until - self._clock())

    def _failed(self, error: StreamError) -> None:
        if error.kind in NOT_FAILED_OVER:
            return
        self._failures += 1
        limit = self._config.cooldown_after
        if limit and self._failures >= limit:
            self._cool_until = self._clock() + self._config.cooldown
            self._emit(PolicyEvent(self.name, "cooldown", error, self._config.cooldown))

    def _retry_delay(self, attempt: int, error: StreamError) -> float | None:
        """Seconds before the next try, or None: no more tries."""
        config = self._config
        if error.kind not in RETRYABLE or attempt >= config.retries or self._cooling() > 0:
            return None
        delay = min(config.backoff * 2.0**attempt, config.backoff_max)
        if error.retry_after is not None:
            if error.retry_after > config.backoff_max:
                return None  # "come back in a minute": the fallback now beats waiting
            delay = max(delay, error.retry_after)
        return delay

    async def _fall_back(self, request: ChatRequest, error: StreamError) -> AsyncIterator[Part]:
        target = self._config.fallback
        if target is None or self._resolve is None or error.kind in NOT_FAILED_OVER:
            yield error
            return
        fallback = self._resolve(target)
        self._emit(PolicyEvent(self.name, "fallback", error, target=target))
        # the request's model is this provider's; the fallback answers with its own
        request = dataclasses.replace(request, model=getattr(fallback, "model", ""))
        parts = fallback.stream(request)
        try:
            async for part in parts:
                yield part
        finally:
            await parts.aclose()  # type: ignore[attr-defined]

    def _emit(self, event: PolicyEvent) -> None:
        self.counts[event.action] += 1
        if self._on_event is not None:
            self._on_event(event)
