"""Agents on hosted providers end to end: a real ``nexus serve`` streams from the fake
provider (a real HTTP server on loopback, tests/fakes) through the OpenAI-compatible and
Anthropic adapters — tool calls as room entries, cancel closing the upstream response,
retries and the fallback before the first delta, an error after it, a bad key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.provider_server import (
    ProviderServer,
    anthropic_frames,
    openai_error,
    openai_error_frame,
    openai_frames,
    stream_script,
)

from .harness import Client, ServerProcess, start_server, token
from .test_agents import ADMIN, auth, reply_of, setup_room, streamed_text

SECRET_KEY = "sk-test-do-not-log-0123456789"


@pytest.fixture
async def fake() -> AsyncIterator[ProviderServer]:
    async with ProviderServer() as server:
        yield server


def serve(
    tmp_path: Path,
    fake: ProviderServer,
    others: dict[str, Any] | None = None,
    **fields: Any,
) -> ServerProcess:
    """A server whose provider ``hosted`` is the fake (OpenAI wire format unless told),
    with small timeouts and backoff, falling back to nothing unless told."""
    provider = {
        "type": "openai",
        "base_url": f"{fake.url}/v1",
        "api_key": SECRET_KEY,
        "model": "gpt-test",
        "retries": 1,
        "backoff": 0.05,
        "first_token_timeout": 5,
        "idle_timeout": 5,
        **fields,
    }
    if provider["type"] == "anthropic":
        provider["base_url"] = fake.url
    providers = {"hosted": provider, **(others or {})}
    return start_server(tmp_path, ai_providers=json.dumps(providers), agent_delta_interval=0)


async def ask(server: ServerProcess, agent: str, question: str, **agent_fields: Any) -> Any:
    """A room with ``agent`` on provider ``hosted``; ann, joined, asks ``question``."""
    room = await setup_room(server, agent, provider="hosted", **agent_fields)
    ann = await Client.connect(server.url, ADMIN)
    await ann.join(room)
    await ann.say(room, "Pricing is tracked by team 3 since the spring")
    trigger = await ann.say(room, f"@{agent} {question}")
    return room, ann, trigger


async def test_tool_calls_become_room_entries_and_feed_the_next_round(
    tmp_path: Path, fake: ProviderServer
) -> None:
    fake.push(
        stream_script(
            openai_frames(
                text=(),
                tool_calls=[("call_1", "search_room", ['{"query": ', '"pricing"}'])],
                finish="tool_calls",
                usage=(40, 9),
            ),
            split=7,  # every chunk cut mid-line
        ),
        stream_script(openai_frames(text=("Team 3", " tracks pricing (#1)."), usage=(60, 8))),
    )
    server = serve(tmp_path, fake)
    try:
        _, ann, _ = await ask(server, "toolbot", "who tracks pricing?", tools=["search_room"])
        call = await ann.next("tool.call", timeout=20)
        result = await ann.next("tool.result", timeout=20)
        seen = await reply_of(ann)
        assert call["name"] == "search_room" and call["call_id"] == "call_1"
        assert json.loads(call["arguments"]) == {"query": "pricing"}
        assert result["ok"] is True and "team 3" in result["result"]
        end = seen["end"]
        assert end["type"] == "message.completed" and end["finish_reason"] == "stop"
        assert end["text"] == "Team 3 tracks pricing (#1)." == streamed_text(seen)
        assert end["usage"] == {"input_tokens": 100, "output_tokens": 17}  # both rounds
        assert end["model"] == "gpt-test" and end["provider"] == "hosted"
        first, second = (r.json for r in fake.requests)
        assert fake.requests[0].path == "/v1/chat/completions"
        assert fake.requests[0].headers["authorization"] == f"Bearer {SECRET_KEY}"
        assert first["stream"] is True and first["model"] == "gpt-test"
        assert [t["function"]["name"] for t in first["tools"]] == ["search_room"]
        assert first["messages"][0]["role"] == "system"
        assert "who tracks pricing?" in first["messages"][-1]["content"]
        asked = next(m for m in second["messages"] if m.get("tool_calls"))
        assert asked["tool_calls"][0]["id"] == "call_1"
        answered = next(m for m in second["messages"] if m["role"] == "tool")
        assert answered["tool_call_id"] == "call_1" and "team 3" in answered["content"]
        await ann.close()
    finally:
        server.stop()
    assert SECRET_KEY not in "".join(server.output)


async def test_cancel_closes_the_upstream_response(tmp_path: Path, fake: ProviderServer) -> None:
    fake.push(
        stream_script(
            openai_frames(text=("Thinking", " hard"), finish=None, usage=None, done=False),
            stall=True,  # the model never finishes: only a cancel ends this reply
        )
    )
    server = serve(tmp_path, fake)
    try:
        room, ann, _ = await ask(server, "staller", "think forever")
        started = await ann.next("message.started", timeout=20)
        delta = await ann.next("message.delta", timeout=20)
        assert delta["message_id"] == started["id"]
        reply = await ann.request(
            {"type": "message.cancel", "room": room, "message_id": started["id"]}
        )
        assert reply["type"] == "cancel.ok", reply
        end = await ann.next("message.completed", "message.failed", timeout=20)
        assert end["finish_reason"] == "cancelled" and end["cancelled_by"] == "ada"
        assert end["text"].startswith("Thinking")
        assert end["usage"]["input_tokens"] > 0  # the prompt's own count: none was reported
        await asyncio.wait_for(fake.requests[0].client_closed.wait(), 10)
        assert len(fake.requests) == 1
        await ann.close()
    finally:
        server.stop()


async def test_retry_after_then_the_fallback_before_the_first_delta(
    tmp_path: Path, fake: ProviderServer
) -> None:
    fake.push(
        openai_error(429, "slow down", headers=[("retry-after", "0.2")]),
        openai_error(503, "overloaded"),
    )
    # the fallback: a second offline provider, under its own name
    server = serve(tmp_path, fake, {"spare": {"type": "offline"}}, fallback="spare")
    try:
        _, ann, _ = await ask(server, "fallbacker", "who tracks pricing?")
        seen = await reply_of(ann)
        end = seen["end"]
        assert end["type"] == "message.completed", end
        assert "team 3" in end["text"] and "(#1)" in end["text"]  # the offline provider
        assert len(fake.requests) == 2  # one try and one retry, then the fallback
        await ann.close()
    finally:
        server.stop()


async def test_an_error_after_the_first_delta_interrupts_without_retry(
    tmp_path: Path, fake: ProviderServer
) -> None:
    frames = openai_frames(text=("Partial",), finish=None, usage=None, done=False)
    fake.push(stream_script([*frames, openai_error_frame("the model crashed")]))
    server = serve(tmp_path, fake, fallback="offline")
    try:
        _, ann, _ = await ask(server, "breaker", "go")
        end = (await reply_of(ann))["end"]
        assert end["type"] == "message.failed" and end["finish_reason"] == "interrupted"
        assert end["text"] == "Partial" and end["error"]["kind"] == "stream"
        assert "the model crashed" in end["error"]["message"]
        await asyncio.sleep(0.2)
        assert len(fake.requests) == 1  # no retry, no fallback once text went out
        await ann.close()
    finally:
        server.stop()


async def test_a_bad_key_fails_clearly_and_never_shows_the_key(
    tmp_path: Path, fake: ProviderServer
) -> None:
    fake.push(openai_error(401, f"Incorrect API key provided: {SECRET_KEY}"))
    server = serve(tmp_path, fake)
    try:
        _, ann, _ = await ask(server, "locked", "hello")
        end = (await reply_of(ann))["end"]
        assert end["type"] == "message.failed" and end["finish_reason"] == "error"
        assert end["error"]["kind"] == "auth"
        assert SECRET_KEY not in json.dumps(end)
        assert end["usage"] == {"input_tokens": 0, "output_tokens": 0}  # nothing was billed
        assert len(fake.requests) == 1  # a bad key is not retried
        async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN)) as http:
            info = (await http.get("/v1/server")).text
            metrics = (await http.get("/metrics")).text
        assert SECRET_KEY not in info
        assert 'nexus_provider_errors_total{kind="auth",provider="hosted"} 1.0' in metrics
        await ann.close()
    finally:
        server.stop()
    assert SECRET_KEY not in "".join(server.output)


async def test_anthropic_messages_stream_into_the_room(
    tmp_path: Path, fake: ProviderServer
) -> None:
    fake.push(
        stream_script(
            anthropic_frames(text=("Bonjour ", "à tous ✓"), usage=(33, 4)),
            line_end="\r\n",
            split=5,  # mid-line and mid-UTF-8
            pings=True,
        )
    )
    server = serve(tmp_path, fake, type="anthropic", model="claude-test")
    try:
        _, ann, _ = await ask(server, "claude", "greet us")
        seen = await reply_of(ann)
        end = seen["end"]
        assert end["type"] == "message.completed" and end["finish_reason"] == "stop"
        assert end["text"] == "Bonjour à tous ✓" == streamed_text(seen)
        assert end["usage"] == {"input_tokens": 33, "output_tokens": 4}
        request = fake.requests[0]
        assert request.path == "/v1/messages"
        assert request.headers["x-api-key"] == SECRET_KEY
        body = request.json
        assert body["model"] == "claude-test" and body["stream"] is True
        assert isinstance(body["system"], str) and body["messages"][0]["role"] == "user"
        await ann.close()
    finally:
        server.stop()


async def test_members_see_the_hosted_reply_identically(
    tmp_path: Path, fake: ProviderServer
) -> None:
    pieces = tuple(f"word{i} " for i in range(40))
    fake.push(stream_script(openai_frames(text=pieces), delay=0.02))
    server = serve(tmp_path, fake)
    try:
        room, ann, _ = await ask(server, "talker", "talk")
        bob = await Client.connect(server.url, token("bob"))
        await bob.join(room)
        seen = [await reply_of(c) for c in (ann, bob)]
        assert streamed_text(seen[0]) == "".join(pieces) == seen[0]["end"]["text"]
        assert seen[1]["end"]["text"] == "".join(pieces)
        # bob joined during the reply: what he saw (snapshot or not, then deltas) adds up
        assert streamed_text(seen[1]) == "".join(pieces)
        for c in (ann, bob):
            await c.close()
    finally:
        server.stop()


async def test_a_runaway_reply_is_cut_at_the_reply_limit(
    tmp_path: Path, fake: ProviderServer
) -> None:
    chunk = "abcdefgh" * 4096  # 32 KiB a part, forever (no finish, no usage)
    fake.push(
        stream_script(
            openai_frames(text=(chunk,) * 12, finish=None, usage=None, done=False), stall=True
        )
    )
    server = serve(tmp_path, fake)
    try:
        _, ann, _ = await ask(server, "runaway", "talk")
        end = (await reply_of(ann, timeout=30))["end"]
        assert end["type"] == "message.completed" and end["finish_reason"] == "length"
        assert end["text"] == (chunk * 12)[: 256 * 1024]
        await asyncio.wait_for(fake.requests[0].client_closed.wait(), 10)
        await ann.close()
    finally:
        server.stop()
