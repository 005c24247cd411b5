"""The Anthropic Messages adapter.

``messages_body`` maps a ``ChatRequest`` to the JSON of ``POST {base_url}/v1/messages``
with ``stream: true``: system messages go to the top-level ``system``, tool calls become
``tool_use`` blocks and tool results user ``tool_result`` blocks, and consecutive messages
of one role are merged (the API wants user and assistant turns to alternate).
``MessagesDecoder`` turns the streamed events into parts. The HTTP side (errors,
timeouts, closing) is ``transport.stream_parts``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from .config import ProviderConfig
from .http_errors import scrub
from .parts import (
    ChatMessage,
    ChatRequest,
    ErrorKind,
    Finish,
    FinishReason,
    Part,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from .sse import SseEvent
from .transport import Exchange, ended_early, new_client, stream_parts

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# the ``error.type`` of an in-stream error event, as an ErrorKind
ERROR_KINDS: dict[str, ErrorKind] = {
    "overloaded_error": "overloaded",
    "rate_limit_error": "rate_limited",
    "api_error": "server",
    "timeout_error": "timeout",
    "authentication_error": "auth",
    "permission_error": "auth",
    "invalid_request_error": "bad_request",
    "not_found_error": "bad_request",
    "request_too_large": "bad_request",
}


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
        ]
    blocks: list[dict[str, Any]] = []
    if message.content:  # the API rejects empty text blocks
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)}
        )
    return blocks


def _input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as the object ``tool_use.input`` must be; arguments
    the model wrote badly are sent as ``{}`` (the tool already answered with an error)."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def messages_body(request: ChatRequest) -> dict[str, Any]:
    """The JSON body of a streamed Messages call for ``request``."""
    system = "\n\n".join(m.content for m in request.messages if m.role == "system" and m.content)
    turns: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # tool results must open their user turn
        turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": turns,
        "stream": True,
    }
    if system:
        body["system"] = system
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


class MessagesDecoder:
    """Messages stream events to parts. Content blocks are numbered across text and tool
    use; tool calls get dense indexes of their own (0, 1, …) as ``ToolCallDelta`` wants.
    Usage is summed from ``message_start`` (input, incl. cache reads and writes) and
    ``message_delta`` (output, cumulative) and given once, before the ``Finish``. A
    stream that ends without ``message_stop`` but after a stop reason is complete."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._tool_args: set[int] = set()  # tool calls that received argument text
        self._input = 0
        self._output = 0
        self._usage_seen = False
        self._finish: FinishReason | None = None

    def feed(self, event: SseEvent) -> list[Part]:
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return [StreamError("protocol", f"{self._provider}: unparseable event")]
        if not isinstance(data, dict):
            return [StreamError("protocol", f"{self._provider}: an event is not an object")]
        kind = data.get("type", event.event)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "content_block_stop":
            return self._block_stop(data)
        if kind == "message_start":
            self._count((data.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                self._finish = STOP_REASONS.get(reason, "stop")
            self._count(data.get("usage"))
        elif kind == "message_stop":
            return self._close()
        elif kind == "error":
            error = data.get("error") or {}
            text = scrub(str(error.get("message") or error.get("type") or "error event"), "")
            kind_ = ERROR_KINDS.get(str(error.get("type")), "stream")
            return [StreamError(kind_, f"{self._provider}: {text}")]
        return []  # ping, and events this adapter has no use for

    def end(self, truncated: bool) -> list[Part]:
        if self._finish is not None:
            return self._close()
        return [ended_early(self._provider, truncated)]

    def _block_start(self, data: dict[str, Any]) -> list[Part]:
        block = data.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return [TextDelta(block["text"])]
        if block.get("type") == "tool_use":
            index = self._tools.setdefault(int(data.get("index", 0)), len(self._tools))
            return [ToolCallDelta(index, block.get("id"), block.get("name"))]
        return []  # thinking and server tool blocks are not part of the reply

    def _block_delta(self, data: dict[str, Any]) -> list[Part]:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [TextDelta(delta["text"])]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            index = self._tools.get(int(data.get("index", 0)))
            if index is not None:
                self._tool_args.add(index)
                return [ToolCallDelta(index, arguments=delta["partial_json"])]
        return []

    def _block_stop(self, data: dict[str, Any]) -> list[Part]:
        index = self._tools.get(int(data.get("index", 0)))
        if index is not None and index not in self._tool_args:
            return [ToolCallDelta(index, arguments="{}")]  # a call without arguments
        return []

    def _count(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self._usage_seen = True
        if "input_tokens" in usage:  # message_delta repeats it in newer API versions
            self._input = sum(
                int(usage.get(key) or 0)
                for key in (
                    "input_tokens",
                    "cache_read_input_tokens",
                    "cache_creation_input_tokens",
                )
            )
        if "output_tokens" in usage:
            self._output = int(usage["output_tokens"] or 0)

    def _close(self) -> list[Part]:
        usage: list[Part] = [Usage(self._input, self._output)] if self._usage_seen else []
        return [*usage, Finish(self._finish or "stop")]


class AnthropicProvider:
    """A provider speaking Anthropic's streamed Messages API."""

    def __init__(self, config: ProviderConfig, client: httpx.AsyncClient | None = None) -> None:
        self.name = config.name
        self.model = config.model
        self._config = config
        self._client = client or new_client(config)
        base = config.base_url.rstrip("/")
        self._url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"

    def exchange(self, request: ChatRequest) -> Exchange:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "anthropic-version": self._config.anthropic_version,
        }
        if self._config.api_key:
            headers["x-api-key"] = self._config.api_key
        headers.update(self._config.headers)
        return Exchange(self._url, headers, messages_body(request))

    def stream(self, request: ChatRequest) -> AsyncIterator[Part]:
        if not request.model:
            request = dataclasses.replace(request, model=self.model)
        return stream_parts(
            self._client, self._config, self.exchange(request), MessagesDecoder(self.name)
        )

    async def close(self) -> None:
        await self._client.aclose()
