"""From room records to a provider request, through ``core.context``.

Stored records become ``LogEntry`` values (a finished agent reply, stored as its
``message.started`` record with the final text, reads as a message of the agent), the
agent's settings a ``Budget``, and ``assemble`` picks what fits; its prompt messages become
the provider's ``ChatMessage`` values. Entries read ``[#seq] sender: text`` so that a
model (and the offline provider) can cite them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ...core.agents import AgentConfig
from ...core.context import (
    Assembly,
    Budget,
    ContextRequest,
    LogEntry,
    PromptMessage,
    RetrievedItem,
    Summary,
    TokenCounter,
    ToolResult,
    assemble,
)
from .parts import ChatMessage, ToolCall

ENTRY_CACHE_SIZE = 8192  # parsed entries kept, across rooms

INSTRUCTIONS = (
    "You take part in a shared chat room. Each entry of the conversation is given as "
    "'[#seq] sender: text'. Answer the last message addressed to you; be concise; cite "
    "entries as #seq when you rely on them."
)


def log_entry(record: dict[str, Any]) -> LogEntry:
    """A stored room record as context assembly reads it."""
    kind = str(record.get("type", ""))
    text = ""
    if kind == "message":
        text = str(record.get("body") or "")
    elif kind == "message.started" and record.get("text"):
        kind, text = "message", str(record["text"])  # a reply, finished or broken off
    target = record.get("target_id")
    return LogEntry(
        seq=int(record.get("seq", 0)),
        sender=str(record.get("sender", "?")),
        sender_kind="agent" if record.get("sender_kind") == "agent" else "human",
        kind=kind,
        text=text,
        ts=int(record.get("ts", 0)),
        id=str(record.get("id", "")),
        edited=bool(record.get("edited")),
        deleted=bool(record.get("deleted")),
        target=str(target) if target is not None else None,
    )


@functools.lru_cache(maxsize=ENTRY_CACHE_SIZE)
def stored_entry(raw: bytes) -> LogEntry:
    """``log_entry`` of a stored record, remembered by its bytes: an agent reads the same
    tail every turn, and an edited record is different bytes."""
    return log_entry(orjson.loads(raw))


def budget_of(agent: AgentConfig) -> Budget:
    return Budget(agent.context_window, agent.max_output_tokens)


def system_of(agent: AgentConfig) -> str:
    return f"{agent.system_prompt}\n\n{INSTRUCTIONS}"


def prepare(
    agent: AgentConfig,
    counter: TokenCounter,
    log: Iterable[LogEntry],
    current: dict[str, Any],
    *,
    summaries: Sequence[Summary] = (),
    tool_results: Sequence[ToolResult] = (),
    room: str = "",
    retrieved: Sequence[RetrievedItem] = (),
    pinned: Sequence[str] = (),
) -> Assembly:
    """The assembled prompt for ``agent`` answering ``current``, given the room's recent
    ``log`` (oldest first), its rolling summaries and this turn's tool results."""
    return assemble(
        ContextRequest(
            agent_id=agent.name,
            system=system_of(agent),
            current=log_entry(current),
            budget=budget_of(agent),
            log=tuple(log),
            summaries=tuple(summaries),
            tool_results=tuple(tool_results),
            room=room,
            retrieved=tuple(retrieved),
            pinned=tuple(pinned),
        ),
        counter,
    )


def chat_messages(messages: Iterable[PromptMessage]) -> tuple[ChatMessage, ...]:
    return tuple(
        ChatMessage(
            m.role,
            m.content,
            name=m.name,
            tool_calls=tuple(ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls),
            tool_call_id=m.tool_call_id,
        )
        for m in messages
    )
