"""The fake provider is faithful: the official ``openai`` and ``anthropic`` SDKs, pointed at
it, parse what it sends — text, tool calls, usage, stop reasons, error bodies. So the
adapter contract tests, which run on the same scripts, test against the real formats."""

from __future__ import annotations

import anthropic
import openai
import pytest

from fakes.provider_server import (
    ProviderServer,
    anthropic_error,
    anthropic_frames,
    openai_error,
    openai_frames,
    stream_script,
)

TOOL = ("call_1", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}'])


def openai_client(server: ProviderServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="sk-test", max_retries=0)


def anthropic_client(server: ProviderServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0)


async def test_openai_sdk_reads_text_and_usage(server: ProviderServer) -> None:
    server.push(stream_script(openai_frames(["Hé", "llo 🎉"], usage=(31, 7)), pings=True))
    async with openai_client(server) as client:
        stream = await client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, finish, usage = "", None, None
        async for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
            usage = chunk.usage or usage
    assert text == "Héllo 🎉"
    assert finish == "stop"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (31, 7)
    assert server.requests[0].path == "/v1/chat/completions"


async def test_openai_sdk_reads_tool_calls(server: ProviderServer) -> None:
    server.push(stream_script(openai_frames([], tool_calls=[TOOL], finish="tool_calls")))
    async with openai_client(server) as client:
        stream = await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        calls: dict[int, list[str]] = {}
        finish = None
        async for chunk in stream:
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for call in choice.delta.tool_calls or ():
                    entry = calls.setdefault(call.index, ["", "", ""])
                    entry[0] = call.id or entry[0]
                    assert call.function is not None
                    entry[1] = call.function.name or entry[1]
                    entry[2] += call.function.arguments or ""
    assert calls == {0: ["call_1", "get_weather", '{"city": "Paris"}']}
    assert finish == "tool_calls"


async def test_openai_sdk_reads_error_body(server: ProviderServer) -> None:
    server.push(openai_error(429, "Rate limit reached", [("retry-after", "3")]))
    async with openai_client(server) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
            )
    assert "Rate limit reached" in str(caught.value)


async def test_anthropic_sdk_reads_text_tools_and_usage(server: ProviderServer) -> None:
    frames = anthropic_frames(["Hé", "llo"], tool_calls=[TOOL], stop="tool_use", usage=(40, 9))
    server.push(stream_script(frames, line_end="\r\n"))
    async with (
        anthropic_client(server) as client,
        client.messages.stream(
            model="claude-test", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        message = await stream.get_final_message()
    assert [block.type for block in message.content] == ["text", "tool_use"]
    text, tool = message.content
    assert text.type == "text" and text.text == "Héllo"
    assert tool.type == "tool_use" and (tool.id, tool.name) == ("call_1", "get_weather")
    assert tool.input == {"city": "Paris"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (40, 9)
    assert server.requests[0].path == "/v1/messages"


async def test_anthropic_sdk_reads_error_body(server: ProviderServer) -> None:
    server.push(anthropic_error(529, "Overloaded"))
    async with anthropic_client(server) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await client.messages.create(
                model="claude-test",
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
    assert caught.value.status_code == 529
    assert "Overloaded" in str(caught.value)
