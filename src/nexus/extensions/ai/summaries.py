"""Rolling summaries per agent and room: written after turns, stored, rebuilt on request.

``core.context.summaries`` decides the ranges and the prompt; this module gives it the
room's log (read forward from the last summary), the agent's provider as the model call
(``purpose="summary"``: the offline provider then summarizes instead of answering) and a
place to keep the results: the store's ``summary`` records, keyed
``tenant␟agent␟room␟first_seq`` so one prefix read returns a room's summaries in order.

Only the last ``horizon`` entries of a room are ever summarized: an agent added to a room
with a long past does not pay for summarizing all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ...core.agents import AgentConfig
from ...core.context import (
    LogEntry,
    PromptMessage,
    Summarizer,
    Summary,
    SummaryPolicy,
    TokenCounter,
)
from ...core.extension_host import ExtensionHost
from ...core.rooms import Room
from .parts import ChatRequest, StreamError, TextDelta, Usage
from .prompt import budget_of, chat_messages, stored_entry
from .provider import Provider

log = logging.getLogger("nexus.agents")

DB = "summary"
PAGE = 500


class SummaryFailed(Exception):
    """The provider could not write a summary (it is tried again after the next turn)."""


class RoomSummaries:
    """The summaries of every agent+room, cached after the first read."""

    def __init__(self, host: ExtensionHost, horizon: int) -> None:
        self.host = host
        self.horizon = horizon
        self._cache: dict[bytes, list[Summary]] = {}

    @staticmethod
    def prefix(agent: AgentConfig, room: Room) -> bytes:
        return f"{agent.tenant}\x1f{agent.name}\x1f{room.name}\x1f".encode()

    def of(self, agent: AgentConfig, room: Room) -> list[Summary]:
        """The stored summaries, oldest range first."""
        prefix = self.prefix(agent, room)
        cached = self._cache.get(prefix)
        if cached is None:
            cached = self._cache[prefix] = [
                Summary.from_json(raw) for _, raw in self.host.store.records(DB, prefix)
            ]
        return list(cached)

    async def catch_up(
        self,
        agent: AgentConfig,
        room: Room,
        provider: Provider,
        model: str,
        counter: TokenCounter,
        on_usage: Callable[[int, int], None] | None = None,
    ) -> list[Summary]:
        """Write the summaries due now; returns the new ones (stored with the next commit)."""
        done = self.of(agent, room)
        start = done[-1].last_seq if done else 0
        entries = self._entries(room, max(start, room.delivered - self.horizon))
        summarizer = self._summarizer(agent, provider, model, counter, on_usage)
        new = await summarizer.catch_up(done, entries)
        if new:
            prefix = self.prefix(agent, room)
            self._cache[prefix] = done + new
            await self.host.pipeline.submit_meta(
                [(DB, prefix + b"%020d" % s.first_seq, s.to_json()) for s in new]
            )
        return new

    async def rebuild(
        self,
        agent: AgentConfig,
        room: Room,
        provider: Provider,
        model: str,
        counter: TokenCounter,
        on_usage: Callable[[int, int], None] | None = None,
    ) -> list[Summary]:
        """Forget the stored summaries and write them again from the log as it is now
        (edits and deletions included)."""
        prefix = self.prefix(agent, room)
        entries = self._entries(room, max(0, room.delivered - self.horizon))
        summarizer = self._summarizer(agent, provider, model, counter, on_usage)
        fresh = await summarizer.rebuild(entries)
        ops: list[tuple[str, bytes, bytes | None]] = [
            (DB, key, None) for key, _ in self.host.store.records(DB, prefix)
        ]
        ops += [(DB, prefix + b"%020d" % s.first_seq, s.to_json()) for s in fresh]
        self._cache[prefix] = fresh
        await self.host.pipeline.submit_meta(ops)
        return fresh

    def forget(self, agent: AgentConfig) -> None:
        """Drop the cache of a deleted or changed agent (stored records stay readable)."""
        head = f"{agent.tenant}\x1f{agent.name}\x1f".encode()
        for key in [k for k in self._cache if k.startswith(head)]:
            del self._cache[key]

    def _entries(self, room: Room, after: int) -> list[LogEntry]:
        out: list[LogEntry] = []
        more = True
        while more:
            page, more = self.host.writes.history(room, after=after, limit=PAGE)
            if not page:
                break
            entries = [stored_entry(r) for r in page]
            out += entries
            after = entries[-1].seq
        return out

    @staticmethod
    def _summarizer(
        agent: AgentConfig,
        provider: Provider,
        model: str,
        counter: TokenCounter,
        on_usage: Callable[[int, int], None] | None,
    ) -> Summarizer:
        policy = SummaryPolicy.for_budget(budget_of(agent))

        async def summarize(messages: tuple[PromptMessage, ...]) -> str:
            request = ChatRequest(
                model=model,
                messages=chat_messages(messages),
                max_tokens=policy.max_summary_tokens,
                purpose="summary",
            )
            text: list[str] = []
            usage = Usage()
            stream = provider.stream(request)
            try:
                async for part in stream:
                    if isinstance(part, TextDelta):
                        text.append(part.text)
                    elif isinstance(part, Usage):
                        usage = part
                    elif isinstance(part, StreamError):
                        raise SummaryFailed(f"{part.kind}: {part.message}")
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            if on_usage is not None:
                on_usage(usage.input_tokens, usage.output_tokens)
            return "".join(text)

        return Summarizer(summarize, counter, policy, model)
