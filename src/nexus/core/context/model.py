"""The data of context assembly: what goes in (log entries, memories, tool results, the
budget) and what comes out (prompt messages and the trace). Plain frozen values; the
request that bundles them is ``assemble.ContextRequest``, summaries are
``summaries.Summary``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SenderKind = Literal["human", "agent", "plugin"]
Role = Literal["system", "user", "assistant", "tool"]
Section = Literal[
    "system", "pinned", "current", "tools", "summaries", "retrieved", "log", "framing"
]
SECTIONS: tuple[Section, ...] = (
    "system",
    "pinned",
    "current",
    "tools",
    "summaries",
    "retrieved",
    "log",
    "framing",
)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of a room's log in its current state (an edited message carries its new
    text and ``edited``; a deleted one ``deleted``). ``message.edited`` and
    ``message.deleted`` entries name the message they change in ``target``."""

    seq: int
    sender: str
    sender_kind: SenderKind
    kind: str  # "message", "message.edited", "message.deleted", "tool.call", ...
    text: str
    ts: int = 0  # ms since the epoch
    id: str = ""  # the entry id (a message's message_id)
    edited: bool = False
    deleted: bool = False
    target: str | None = None


@dataclass(frozen=True, slots=True)
class RetrievedItem:
    """A memory or search hit. ``room`` and ``first_seq``/``last_seq`` say where it comes
    from (empty/None when it comes from no room log)."""

    id: str
    text: str
    score: float
    room: str = ""
    first_seq: int | None = None
    last_seq: int | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool call of the current turn and its result. Calls of one model step share a
    ``step`` (steps go in increasing order, calls in the order given)."""

    id: str
    name: str
    text: str
    arguments: str = "{}"  # the call's JSON arguments, as the model wrote them
    step: int = 0


@dataclass(frozen=True, slots=True)
class Budget:
    """The model's window and how assembly may spend it.

    ``context_window`` tokens hold the prompt and the reply: ``max_output_tokens`` are
    kept for the reply and ``margin`` for the counting error; the rest is ``input_limit``.
    """

    context_window: int
    max_output_tokens: int
    margin: int = 64
    retrieved_share: float = 0.2  # of what is left after system..summaries
    tool_share: float = 0.5  # tool results' floor when the conversation competes
    min_current_tokens: int = 256  # the current turn keeps at least this much of its text

    @property
    def input_limit(self) -> int:
        return self.context_window - self.max_output_tokens - self.margin


@dataclass(frozen=True, slots=True)
class PromptToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class PromptMessage:
    """One chat message of the assembled prompt (the provider's ChatMessage, field for
    field). An assistant message may carry ``tool_calls``; a tool message answers
    ``tool_call_id`` and names the tool in ``name``."""

    role: Role
    content: str
    name: str | None = None
    tool_calls: tuple[PromptToolCall, ...] = ()
    tool_call_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(frozen=True, slots=True)
class TraceItem:
    """One candidate: where it would go, whether it went in, why, what it costs.

    ``tokens`` is what the item is charged (included) or would have been charged (left
    out; 0 for what is never shown, such as a deleted message). ``message`` is the index
    of the prompt message that holds it.
    """

    section: Section
    ref: str  # "system", "pinned[0]", "#12", "#1-#40", a memory or tool call id, "opener"
    included: bool
    reason: str
    tokens: int
    message: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "ref": self.ref,
            "included": self.included,
            "reason": self.reason,
            "tokens": self.tokens,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class SectionTotal:
    section: Section
    included: int  # items
    left_out: int  # items
    tokens: int  # charged for the included items
    left_out_tokens: int  # what the left-out items would have cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "included": self.included,
            "left_out": self.left_out,
            "tokens": self.tokens,
            "left_out_tokens": self.left_out_tokens,
        }


@dataclass(frozen=True, slots=True)
class Trace:
    """What assembly did. ``used`` is the sum of the charges (items plus the reply
    priming), an upper bound of ``prompt_tokens``, the count of the prompt as built.
    ``over_budget`` (``used`` > ``input_limit``) happens only when the minimum alone (system
    prompt, current turn cut to ``min_current_tokens``, tool call stubs) does not fit."""

    counter: str
    context_window: int
    max_output_tokens: int
    margin: int
    input_limit: int
    used: int
    prompt_tokens: int
    over_budget: bool
    items: tuple[TraceItem, ...]
    sections: tuple[SectionTotal, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "counter": self.counter,
            "context_window": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "margin": self.margin,
            "input_limit": self.input_limit,
            "used": self.used,
            "prompt_tokens": self.prompt_tokens,
            "over_budget": self.over_budget,
            "sections": [s.as_dict() for s in self.sections],
            "items": [i.as_dict() for i in self.items],
        }


@dataclass(frozen=True, slots=True)
class Assembly:
    messages: tuple[PromptMessage, ...]
    trace: Trace
