"""One contract for every hosted adapter, run over the fake provider's real HTTP.

Each case is a script scenario written once and played in each adapter's wire format:
plain text, chunks split mid-line and mid-character, other line ends, pings, tool calls,
streams cut short, errors in the stream, resets, error statuses, the three read
timeouts, cancellation reaching the server, and the request the adapter sends.

A stream that ends after the model's stop reason but without its terminator (``[DONE]``,
``message_stop``) is complete: ``Finish``. One that ends before is a ``protocol`` error.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest

from fakes.provider_server import (
    ProviderServer,
    Received,
    Script,
    ToolScript,
    anthropic_error,
    anthropic_error_frame,
    anthropic_frames,
    json_script,
    openai_error,
    openai_error_frame,
    openai_frames,
    stream_script,
)
from nexus.extensions.ai.anthropic import AnthropicProvider
from nexus.extensions.ai.config import ProviderConfig
from nexus.extensions.ai.openai_compat import OpenAICompatProvider
from nexus.extensions.ai.parts import (
    ChatMessage,
    ChatRequest,
    Finish,
    Part,
    StreamError,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from nexus.extensions.ai.provider import Provider

KEY = "sk-secret-key-0123456789"
REQUEST = ChatRequest(model="m-1", messages=(ChatMessage("user", "hi"),), max_tokens=64)
WEATHER: ToolScript = ("call_1", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}'])
TIME: ToolScript = ("call_2", "get_time", ["{}"])


@dataclass(frozen=True)
class Flavor:
    """One adapter and how its wire format writes each scenario."""

    type: str
    make: Callable[[ProviderConfig], Provider]
    base: Callable[[str], str]  # the base_url for a server url
    path: str
    error_frame: bytes
    error_frame_kind: str
    error: Callable[[int, str, Sequence[tuple[str, str]]], Script]
    write: Callable[..., list[bytes]]

    def frames(
        self,
        text: Sequence[str] = ("Hello", " world"),
        *,
        tool_calls: Sequence[ToolScript] = (),
        finished: bool = True,
        terminated: bool = True,
    ) -> list[bytes]:
        return self.write(text, tool_calls, finished, terminated)


def _openai(
    text: Sequence[str], tools: Sequence[ToolScript], finished: bool, terminated: bool
) -> list[bytes]:
    finish = ("tool_calls" if tools else "stop") if finished else None
    usage = (12, 5) if finished else None
    return openai_frames(text, tool_calls=tools, finish=finish, usage=usage, done=terminated)


def _anthropic(
    text: Sequence[str], tools: Sequence[ToolScript], finished: bool, terminated: bool
) -> list[bytes]:
    stop = ("tool_use" if tools else "end_turn") if finished else None
    return anthropic_frames(text, tool_calls=tools, stop=stop, message_stop=terminated)


FLAVORS = {
    "openai": Flavor(
        "openai",
        OpenAICompatProvider,
        lambda url: f"{url}/v1",
        "/v1/chat/completions",
        openai_error_frame("The server had an error"),
        "stream",
        openai_error,
        _openai,
    ),
    "anthropic": Flavor(
        "anthropic",
        AnthropicProvider,
        lambda url: url,
        "/v1/messages",
        anthropic_error_frame("overloaded_error", "Overloaded"),
        "overloaded",
        anthropic_error,
        _anthropic,
    ),
}


@pytest.fixture(params=sorted(FLAVORS))
def flavor(request: pytest.FixtureRequest) -> Flavor:
    return FLAVORS[request.param]


Make = Callable[..., Provider]


@pytest.fixture
async def make(flavor: Flavor, server: ProviderServer) -> AsyncIterator[Make]:
    """Builds the flavor's adapter against the fake (settings overridable); closes it."""
    made: list[Provider] = []

    def build(**settings: Any) -> Provider:
        defaults: dict[str, Any] = {
            "base_url": flavor.base(server.url),
            "api_key": KEY,
            "model": "m-default",
            "first_token_timeout": 5.0,
            "idle_timeout": 5.0,
        }
        config = ProviderConfig("fake", flavor.type, **{**defaults, **settings})  # type: ignore[arg-type]
        made.append(flavor.make(config))
        return made[-1]

    yield build
    for provider in made:
        await provider.close()


async def collect(provider: Provider, request: ChatRequest = REQUEST) -> list[Part]:
    stream = provider.stream(request)
    parts = [part async for part in stream]
    await stream.aclose()  # type: ignore[attr-defined]
    return parts


def text_of(parts: list[Part]) -> str:
    return "".join(p.text for p in parts if isinstance(p, TextDelta))


def last_error(parts: list[Part]) -> StreamError:
    assert parts, "no parts"
    last = parts[-1]
    assert isinstance(last, StreamError), f"expected an error last, got {parts}"
    return last


async def test_plain_text(flavor: Flavor, server: ProviderServer, make: Make) -> None:
    server.push(stream_script(flavor.frames()))
    parts = await collect(make())
    assert parts == [TextDelta("Hello"), TextDelta(" world"), Usage(12, 5), Finish("stop")]


async def test_split_mid_line_and_mid_character(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    text = ["Héllo ", "wörld 🎉", " ünïcödé"]
    server.push(stream_script(flavor.frames(text), split=5, delay=0.001))
    parts = await collect(make())
    assert text_of(parts) == "".join(text)
    assert parts[-2:] == [Usage(12, 5), Finish("stop")]


@pytest.mark.parametrize("line_end", ["\r\n", "\r"])
async def test_other_line_ends(
    flavor: Flavor, server: ProviderServer, make: Make, line_end: str
) -> None:
    server.push(stream_script(flavor.frames(), line_end=line_end))
    parts = await collect(make())
    assert parts == [TextDelta("Hello"), TextDelta(" world"), Usage(12, 5), Finish("stop")]


async def test_pings_are_ignored(flavor: Flavor, server: ProviderServer, make: Make) -> None:
    server.push(stream_script(flavor.frames(), pings=True))
    parts = await collect(make())
    assert parts == [TextDelta("Hello"), TextDelta(" world"), Usage(12, 5), Finish("stop")]


async def test_tool_calls(flavor: Flavor, server: ProviderServer, make: Make) -> None:
    server.push(stream_script(flavor.frames(["Checking."], tool_calls=[WEATHER, TIME])))
    parts = await collect(make())
    calls: dict[int, list[str]] = {}
    for part in parts:
        if isinstance(part, ToolCallDelta):
            entry = calls.setdefault(part.index, ["", "", ""])
            if part.id is not None:
                assert not entry[0], "id given twice"
                entry[0] = part.id
            entry[1] = part.name or entry[1]
            entry[2] += part.arguments
    assert calls == {
        0: ["call_1", "get_weather", '{"city": "Paris"}'],
        1: ["call_2", "get_time", "{}"],
    }
    assert text_of(parts) == "Checking."
    assert parts[-1] == Finish("tool_calls")


async def test_stream_ending_after_the_stop_reason_is_complete(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    server.push(stream_script(flavor.frames(terminated=False)))
    parts = await collect(make())
    assert parts == [TextDelta("Hello"), TextDelta(" world"), Usage(12, 5), Finish("stop")]


async def test_stream_ending_before_the_stop_reason_is_a_protocol_error(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    server.push(stream_script(flavor.frames(finished=False, terminated=False)))
    parts = await collect(make())
    assert text_of(parts) == "Hello world"
    error = last_error(parts)
    assert error.kind == "protocol" and "ended early" in error.message


async def test_unterminated_last_event_is_reported(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    frames = flavor.frames(finished=False, terminated=False)
    frames[-1] = frames[-1].rstrip(b"\n") + b"\n"  # the blank line never comes
    server.push(stream_script(frames))
    error = last_error(await collect(make()))
    assert error.kind == "protocol" and "mid-event" in error.message


async def test_a_json_answer_is_not_a_stream(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    server.push(json_script(200, {"error": {"message": "streaming is off"}}))
    error = last_error(await collect(make()))
    assert error.kind == "protocol" and "streaming is off" in error.message


async def test_error_event_mid_stream(flavor: Flavor, server: ProviderServer, make: Make) -> None:
    frames = flavor.frames(finished=False, terminated=False)
    server.push(stream_script([*frames, flavor.error_frame, *flavor.frames()]))
    parts = await collect(make())
    error = last_error(parts)
    assert error.kind == flavor.error_frame_kind
    assert "The server had an error" in error.message or "Overloaded" in error.message
    assert text_of(parts) == "Hello world"  # nothing after the error is read


async def test_connection_reset(flavor: Flavor, server: ProviderServer, make: Make) -> None:
    frames = flavor.frames()
    server.push(stream_script(frames, reset_after=len(frames) - 4))
    error = last_error(await collect(make()))
    assert error.kind == "connect" and "connection lost" in error.message


async def test_cannot_connect(flavor: Flavor, make: Make) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = make(base_url=flavor.base(f"http://127.0.0.1:{port}"))
    error = last_error(await collect(provider))
    assert error.kind == "connect"


async def test_rate_limited_with_retry_after(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    server.push(flavor.error(429, "Slow down, please", [("retry-after", "7")]))
    parts = await collect(make())
    assert len(parts) == 1
    error = last_error(parts)
    assert (error.kind, error.status, error.retry_after) == ("rate_limited", 429, 7.0)
    assert "Slow down, please" in error.message


@pytest.mark.parametrize("status", [503, 529])
async def test_overloaded(flavor: Flavor, server: ProviderServer, make: Make, status: int) -> None:
    server.push(flavor.error(status, "Overloaded", [("retry-after-ms", "1500")]))
    error = last_error(await collect(make()))
    assert (error.kind, error.status, error.retry_after) == ("overloaded", status, 1.5)


async def test_server_error(flavor: Flavor, server: ProviderServer, make: Make) -> None:
    server.push(flavor.error(500, "Internal error", []))
    error = last_error(await collect(make()))
    assert (error.kind, error.status, error.retry_after) == ("server", 500, None)


async def test_auth_error_never_shows_the_key(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    server.push(flavor.error(401, f"Incorrect API key provided: {KEY}", []))
    error = last_error(await collect(make()))
    assert (error.kind, error.status) == ("auth", 401)
    assert KEY not in error.message and KEY not in repr(error)
    assert "Incorrect API key provided" in error.message


async def test_bad_request(flavor: Flavor, server: ProviderServer, make: Make) -> None:
    server.push(flavor.error(400, "max_tokens: too large", []))
    error = last_error(await collect(make()))
    assert (error.kind, error.status) == ("bad_request", 400)
    assert "max_tokens: too large" in error.message


async def test_slow_first_token(flavor: Flavor, server: ProviderServer, make: Make) -> None:
    server.push(stream_script(flavor.frames(), first_delay=30.0))
    parts = await asyncio.wait_for(collect(make(first_token_timeout=0.3)), 10)
    error = last_error(parts)
    assert error.kind == "timeout" and "first token" in error.message
    await asyncio.wait_for(server.requests[0].client_closed.wait(), 5)


async def test_preamble_and_pings_do_not_count_as_a_first_token(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    preamble = flavor.frames()[:1]  # OpenAI's role chunk, Anthropic's message_start
    server.push(stream_script(preamble * 3, pings=True, delay=0.1, stall=True))
    parts = await asyncio.wait_for(collect(make(first_token_timeout=0.5, idle_timeout=0.2)), 10)
    assert len(parts) == 1
    error = last_error(parts)
    assert error.kind == "timeout" and "first token" in error.message


async def test_stall_after_text_is_an_idle_timeout(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    frames = flavor.frames(finished=False, terminated=False)
    server.push(stream_script(frames, stall=True))
    parts = await asyncio.wait_for(collect(make(idle_timeout=0.3)), 10)
    assert text_of(parts) == "Hello world"
    error = last_error(parts)
    assert error.kind == "timeout" and "idle" in error.message
    await asyncio.wait_for(server.requests[0].client_closed.wait(), 5)


async def test_total_timeout(flavor: Flavor, server: ProviderServer, make: Make) -> None:
    server.push(stream_script(flavor.frames(), delay=0.15))
    parts = await asyncio.wait_for(collect(make(idle_timeout=5.0, total_timeout=0.5)), 10)
    error = last_error(parts)
    assert error.kind == "timeout" and "total" in error.message


async def test_aclose_mid_stream_closes_the_upstream_connection(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    server.push(stream_script(flavor.frames(finished=False, terminated=False), stall=True))
    stream = make().stream(REQUEST)
    first = await asyncio.wait_for(anext(stream), 5)
    assert first == TextDelta("Hello")
    await stream.aclose()  # type: ignore[attr-defined]
    received = server.requests[0]
    await asyncio.wait_for(received.client_closed.wait(), 1.5)


async def test_cancelling_the_consumer_closes_the_upstream_connection(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    server.push(stream_script(flavor.frames(finished=False, terminated=False), stall=True))
    provider = make()
    seen = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(REQUEST):
            seen.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(seen.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.requests[0].client_closed.wait(), 1.5)


FULL = ChatRequest(
    model="m-1",
    messages=(
        ChatMessage("system", "You are terse."),
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage(
            "assistant",
            "Checking.",
            tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),),
        ),
        ChatMessage("tool", "18C, sunny", name="get_weather", tool_call_id="call_1"),
        ChatMessage("user", "Thanks!"),
    ),
    max_tokens=99,
    tools=(
        ToolSpec(
            "get_weather",
            "The weather in a city",
            {"type": "object", "properties": {"city": {"type": "string"}}},
        ),
    ),
    temperature=0.2,
)
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def expected_openai(received: Received) -> None:
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.json == {
        "model": "m-1",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
            {"role": "user", "content": "Thanks!"},
        ],
        "max_tokens": 99,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "parameters": WEATHER_SCHEMA,
                },
            }
        ],
        "temperature": 0.2,
    }


def expected_anthropic(received: Received) -> None:
    assert received.headers["x-api-key"] == KEY
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in received.headers
    assert received.json == {
        "model": "m-1",
        "max_tokens": 99,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",  # the tool result and the next user message, merged
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
                    {"type": "text", "text": "Thanks!"},
                ],
            },
        ],
        "stream": True,
        "tools": [
            {
                "name": "get_weather",
                "description": "The weather in a city",
                "input_schema": WEATHER_SCHEMA,
            }
        ],
        "temperature": 0.2,
    }


async def test_the_request_sent(flavor: Flavor, server: ProviderServer, make: Make) -> None:
    server.push(stream_script(flavor.frames()))
    parts = await collect(make(headers={"x-team": "nexus"}), FULL)
    assert parts[-1] == Finish("stop")
    (received,) = server.requests
    assert (received.method, received.path) == ("POST", flavor.path)
    assert received.headers["content-type"] == "application/json"
    assert received.headers["accept"] == "text/event-stream"
    assert received.headers["x-team"] == "nexus"
    {"openai": expected_openai, "anthropic": expected_anthropic}[flavor.type](received)


async def test_the_default_model_fills_an_empty_one(
    flavor: Flavor, server: ProviderServer, make: Make
) -> None:
    server.push(stream_script(flavor.frames()))
    await collect(make(), replace(REQUEST, model=""))
    assert server.requests[0].json["model"] == "m-default"


async def test_openai_retries_once_without_stream_options(server: ProviderServer) -> None:
    provider = OpenAICompatProvider(
        ProviderConfig("old", "openai", base_url=f"{server.url}/v1", model="m")
    )
    rejection = "Unrecognized request argument supplied: stream_options"
    server.push(
        openai_error(400, rejection),
        stream_script(openai_frames(usage=None)),
        stream_script(openai_frames(usage=None)),
    )
    try:
        first = await collect(provider)
        second = await collect(provider)
    finally:
        await provider.close()
    assert first == second == [TextDelta("Hello"), TextDelta(" world"), Finish("stop")]
    assert [("stream_options" in r.json) for r in server.requests] == [True, False, False]
    assert "authorization" not in server.requests[0].headers  # no key, no header
