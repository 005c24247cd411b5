"""From room entries to a provider request: which entries, in which roles.

Entries are given to the model as ``[#seq] sender: text`` so that it (and the offline
provider) can cite them; the agent's own earlier replies are ``assistant`` messages.
"""

from __future__ import annotations

from typing import Any

from ...core.agents import AgentConfig
from .parts import ChatMessage

INSTRUCTIONS = (
    "You take part in a shared chat room. Each entry of the conversation is given as "
    "'[#seq] sender: text'. Answer the last message addressed to you; be concise; cite "
    "entries as #seq when you rely on them."
)
MARGIN_TOKENS = 64
CHARS_PER_TOKEN = 4


def text_of(record: dict[str, Any]) -> str | None:
    """What a model sees of a room record (None for what it should not see)."""
    kind = record.get("type")
    if kind == "message":
        return None if record.get("deleted") else str(record.get("body", ""))
    if kind == "message.started":
        return str(record.get("text", "")) or None  # the final text, once completed
    return None


def line(record: dict[str, Any]) -> str:
    return f"[#{record['seq']}] {record.get('sender', '?')}: {text_of(record)}"


def prepare(
    agent: AgentConfig, model: str, records: list[dict[str, Any]], current: dict[str, Any]
) -> tuple[tuple[ChatMessage, ...], dict[str, Any]]:
    """The prompt for ``agent`` answering ``current`` given the room's recent ``records``
    (oldest first), and a trace of what was included or left out."""
    budget = agent.context_window - agent.max_output_tokens - MARGIN_TOKENS
    system = f"{agent.system_prompt}\n\n{INSTRUCTIONS}"
    used = len(system) // CHARS_PER_TOKEN + 1
    current_line = line(current)
    used += len(current_line) // CHARS_PER_TOKEN + 1
    chosen: list[dict[str, Any]] = []
    trace: list[dict[str, Any]] = []
    for record in reversed(records):  # newest first: the oldest are dropped
        if record.get("seq") == current.get("seq") or text_of(record) is None:
            continue
        cost = len(line(record)) // CHARS_PER_TOKEN + 1
        if used + cost > budget:
            trace.append(
                {"seq": record["seq"], "included": False, "reason": "over budget", "tokens": cost}
            )
            continue
        used += cost
        chosen.append(record)
        trace.append({"seq": record["seq"], "included": True, "tokens": cost})
    messages = [ChatMessage("system", system)]
    for record in reversed(chosen):
        own = record.get("sender") == agent.name
        messages.append(
            ChatMessage(
                "assistant" if own else "user", (text_of(record) or "") if own else line(record)
            )
        )
    messages.append(ChatMessage("user", current_line))
    return tuple(messages), {"budget": budget, "tokens": used, "entries": trace[::-1]}
