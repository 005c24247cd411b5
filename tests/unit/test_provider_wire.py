"""The sans-I/O halves of the hosted adapters: HTTP error answers as StreamErrors, and the
event decoders' corners the fake server's scripts do not reach."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nexus.extensions.ai.anthropic import MessagesDecoder, messages_body
from nexus.extensions.ai.http_errors import provider_message, retry_after, status_error
from nexus.extensions.ai.openai_compat import ChatCompletionsDecoder
from nexus.extensions.ai.parts import (
    ChatMessage,
    ChatRequest,
    Finish,
    Part,
    StreamError,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from nexus.extensions.ai.sse import SseEvent


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after": "12"}) == 12.0
    assert retry_after({"retry-after": "1.5"}) == 1.5
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = "Wed, 21 Oct 2015 07:28:30 GMT"  # 1445412510
    assert retry_after({"retry-after": date}, now=lambda: 1445412500.0) == 10.0
    assert retry_after({"retry-after": date}, now=lambda: 1445412600.0) == 0.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "bad key", "type": "x"}}', "bad key"),  # OpenAI
        (b'{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}', "busy"),
        (b'{"error": "model not found"}', "model not found"),  # Ollama
        (b'{"object": "error", "message": "too long"}', "too long"),  # vLLM
        (b'{"detail": "Not Found"}', "Not Found"),  # FastAPI
        (b"<html>gateway</html>", "<html>gateway</html>"),
    ],
)
def test_provider_message_shapes(body: bytes, message: str) -> None:
    assert provider_message(body) == message


def test_status_error_is_short_and_keyless() -> None:
    body = json.dumps({"error": {"message": "key sk-123 " + "x" * 1000}}).encode()
    error = status_error(401, {"retry-after": "3"}, body, "sk-123", "gpt")
    assert error.kind == "auth" and error.status == 401 and error.retry_after == 3.0
    assert "sk-123" not in error.message and "[redacted]" in error.message
    assert error.message.startswith("gpt: HTTP 401: key") and len(error.message) < 400


def feed(decoder: Any, payloads: list[Any]) -> list[Part]:
    parts: list[Part] = []
    for payload in payloads:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        parts += decoder.feed(SseEvent("message", data))
    return parts


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_openai_stop_after_tool_calls_means_tool_calls() -> None:
    call = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
    parts = feed(
        ChatCompletionsDecoder("p"), [chunk({"tool_calls": [call]}), chunk({}, "stop"), "[DONE]"]
    )
    assert parts == [ToolCallDelta(0, "c1", "f", "{}"), Finish("tool_calls")]


def test_openai_legacy_function_call_and_unknown_finish() -> None:
    legacy = chunk({"function_call": {"name": "f", "arguments": "{}"}}, "function_call")
    assert feed(ChatCompletionsDecoder("p"), [legacy, "[DONE]"])[-1] == Finish("tool_calls")
    assert feed(ChatCompletionsDecoder("p"), [chunk({}, "eos"), "[DONE]"]) == [Finish("stop")]


def test_openai_other_choices_and_garbage() -> None:
    other = {"choices": [{"index": 1, "delta": {"content": "no"}, "finish_reason": None}]}
    assert feed(ChatCompletionsDecoder("p"), [other]) == []
    (error,) = feed(ChatCompletionsDecoder("p"), ["{not json"])
    assert isinstance(error, StreamError) and error.kind == "protocol"


def test_anthropic_tool_without_arguments_gets_an_empty_object() -> None:
    events = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t1", "name": "now", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}},
        {"type": "message_stop"},
    ]
    parts = feed(MessagesDecoder("p"), events)
    assert parts == [
        ToolCallDelta(0, "t1", "now"),
        ToolCallDelta(0, arguments="{}"),
        Usage(0, 0),
        Finish("tool_calls"),
    ]


def test_anthropic_usage_counts_cache_tokens_and_the_last_output() -> None:
    usage = {"input_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 7}
    events = [
        {"type": "message_start", "message": {"usage": {**usage, "output_tokens": 1}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    assert feed(MessagesDecoder("p"), events) == [TextDelta("x"), Usage(112, 9), Finish("length")]


@pytest.mark.parametrize(
    ("error_type", "kind"),
    [("overloaded_error", "overloaded"), ("rate_limit_error", "rate_limited"), ("odd", "stream")],
)
def test_anthropic_error_events_by_type(error_type: str, kind: str) -> None:
    event = {"type": "error", "error": {"type": error_type, "message": "m"}}
    (error,) = feed(MessagesDecoder("p"), [event])
    assert isinstance(error, StreamError) and error.kind == kind


def test_anthropic_body_edge_cases() -> None:
    request = ChatRequest(
        "m",
        (
            ChatMessage("system", "one"),
            ChatMessage("system", "two"),
            ChatMessage("user", "a"),
            ChatMessage("user", "b"),
            ChatMessage("assistant", "", tool_calls=(ToolCall("t", "f", "not json"),)),
        ),
    )
    body = messages_body(request)
    assert body["system"] == "one\n\ntwo"
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        },
    ]
    assert "tools" not in body and "temperature" not in body
