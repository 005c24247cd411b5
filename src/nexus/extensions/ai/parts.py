"""What a provider streams, whatever its wire format: one small vocabulary of parts.

Adapters (OpenAI-compatible chat completions, Anthropic Messages, the offline provider)
turn their wire events into these; the agent runtime consumes only these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# Why a reply ended, normalised across providers.
FinishReason = Literal[
    "stop",  # the model finished
    "length",  # max output tokens reached
    "tool_calls",  # the model asks for tools to be run
    "content_filter",  # the provider refused or filtered
    "cancelled",  # a member or the agent's owner stopped it
    "interrupted",  # the server stopped mid-reply (crash, restart)
    "error",  # the provider failed after the reply had started
]

# Kinds of provider failure, for metrics and for the retry policy.
ErrorKind = Literal[
    "connect",  # could not reach the endpoint
    "timeout",  # connect, first token, idle or total timeout
    "auth",  # 401/403: bad or missing key
    "rate_limited",  # 429
    "overloaded",  # 503/529
    "bad_request",  # other 4xx: the request itself is wrong
    "server",  # other 5xx
    "protocol",  # the stream could not be parsed
    "stream",  # an error event inside the stream
]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """More reply text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call. Calls are told apart by ``index``; ``id`` and ``name`` come
    with the first piece of a call, ``arguments`` is a fragment of its JSON arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as the provider reports it (may come more than once: the last wins)."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Finish:
    """The reply ended normally; the last part of a stream."""

    reason: FinishReason


@dataclass(frozen=True, slots=True)
class StreamError:
    """The provider failed; the last part of a stream. ``retry_after`` in seconds when the
    provider said (Retry-After, or its own field)."""

    kind: ErrorKind
    message: str
    retry_after: float | None = None
    status: int | None = None


Part = TextDelta | ToolCallDelta | Usage | Finish | StreamError


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call requested by the model (assembled from ToolCallDeltas)."""

    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a prompt. ``role`` system/user/assistant/tool. An assistant message may
    carry ``tool_calls``; a tool message answers ``tool_call_id``."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: a name, what it does, its arguments as JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int = 1024
    tools: tuple[ToolSpec, ...] = ()
    temperature: float | None = None
    # "summary": a rolling summary of room entries is asked for, not a reply (hosted models
    # read it from the prompt; the offline provider summarizes instead of answering)
    purpose: Literal["reply", "summary"] = "reply"
