"""The OpenAI-compatible chat completions adapter (OpenAI, vLLM, Ollama, llama.cpp, LM Studio).

``chat_body`` maps a ``ChatRequest`` to the JSON of ``POST {base_url}/chat/completions``
with ``stream: true``; ``ChatCompletionsDecoder`` turns the streamed chunks into parts.
The HTTP side (errors, timeouts, closing) is ``transport.stream_parts``.

Usage is asked for with ``stream_options.include_usage``; an older server that rejects
the field (400 naming it) is asked again without it, once, and not asked again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from .config import ProviderConfig
from .http_errors import message_of, scrub
from .parts import (
    ChatMessage,
    ChatRequest,
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

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",  # the legacy single-function form
    "content_filter": "content_filter",
}


def message_json(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name and message.role != "system":
        out["name"] = message.name
    if message.tool_calls:
        out["content"] = message.content or None  # OpenAI's form for a calls-only turn
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    return out


def chat_body(request: ChatRequest, include_usage: bool = True) -> dict[str, Any]:
    """The JSON body of a streamed chat completion for ``request``."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [message_json(m) for m in request.messages],
        "max_tokens": request.max_tokens,
        "stream": True,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in request.tools
        ]
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


class ChatCompletionsDecoder:
    """``chat.completion.chunk`` events to parts. The reply ends at ``[DONE]``; usage
    arrives in a chunk after the one with ``finish_reason``, so both are held until then.
    A stream that ends without ``[DONE]`` but after a ``finish_reason`` is complete."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self._tool_calls = False

    def feed(self, event: SseEvent) -> list[Part]:
        if event.data.strip() == "[DONE]":
            return self._close()
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return [StreamError("protocol", f"{self._provider}: unparseable chunk")]
        if not isinstance(chunk, dict):
            return [StreamError("protocol", f"{self._provider}: a chunk is not an object")]
        if chunk.get("error"):
            text = scrub(message_of(chunk) or "error event", "")
            return [StreamError("stream", f"{self._provider}: {text}")]
        parts: list[Part] = []
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                parts += self._choice(choice)
        usage = chunk.get("usage")
        if isinstance(usage, dict):  # last wins (vLLM may send it on every chunk)
            self._usage = Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        return parts

    def end(self, truncated: bool) -> list[Part]:
        if self._finish is not None:
            return self._close()
        return [ended_early(self._provider, truncated)]

    def _choice(self, choice: dict[str, Any]) -> list[Part]:
        parts: list[Part] = []
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if isinstance(content, str) and content:
            parts.append(TextDelta(content))
        for position, call in enumerate(delta.get("tool_calls") or ()):
            function = call.get("function") or {}
            parts.append(
                ToolCallDelta(
                    int(call.get("index", position)),
                    call.get("id") or None,
                    function.get("name") or None,
                    function.get("arguments") or "",
                )
            )
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            parts.append(ToolCallDelta(0, None, legacy.get("name"), legacy.get("arguments") or ""))
        self._tool_calls = self._tool_calls or any(isinstance(p, ToolCallDelta) for p in parts)
        reason = choice.get("finish_reason")
        if reason:
            self._finish = FINISH_REASONS.get(reason, "stop")
        return parts

    def _close(self) -> list[Part]:
        reason = self._finish or "stop"
        if self._tool_calls and reason == "stop":
            reason = "tool_calls"  # some local servers say "stop" after calling tools
        usage: list[Part] = [self._usage] if self._usage is not None else []
        return [*usage, Finish(reason)]


class OpenAICompatProvider:
    """A provider speaking OpenAI's streamed chat completions."""

    def __init__(self, config: ProviderConfig, client: httpx.AsyncClient | None = None) -> None:
        self.name = config.name
        self.model = config.model
        self._config = config
        self._client = client or new_client(config)
        self._include_usage = True  # until the server rejects stream_options

    def exchange(self, request: ChatRequest) -> Exchange:
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if self._config.api_key:
            headers["authorization"] = f"Bearer {self._config.api_key}"
        headers.update(self._config.headers)
        body = chat_body(request, self._include_usage)
        return Exchange(f"{self._config.base_url}/chat/completions", headers, body)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Part]:
        if not request.model:
            request = dataclasses.replace(request, model=self.model)
        for _ in range(2):  # the second time only without stream_options
            parts = stream_parts(
                self._client,
                self._config,
                self.exchange(request),
                ChatCompletionsDecoder(self.name),
            )
            try:
                async for part in parts:
                    if self._rejects_stream_options(part):
                        self._include_usage = False
                        break
                    yield part
                else:
                    return
            finally:
                await parts.aclose()

    def _rejects_stream_options(self, part: Part) -> bool:
        return (
            self._include_usage
            and isinstance(part, StreamError)
            and part.status == 400
            and "stream_options" in part.message
        )

    async def close(self) -> None:
        await self._client.aclose()
