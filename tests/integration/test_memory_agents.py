"""The agents' memory tools through a real server and the fake OpenAI-compatible model:
``remember`` writes a memory event as the agent, ``recall`` and ``search_messages`` find
only what the agent may see, and the next turn's context carries the relevant memory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fakes.provider_server import ProviderServer, openai_frames, stream_script

from .harness import Client
from .test_agents import ADMIN, auth, reply_of, setup_room
from .test_agents_hosted import serve
from .test_memory import search, until


@pytest.fixture
async def fake() -> AsyncIterator[ProviderServer]:
    async with ProviderServer() as server:
        yield server


def tool_round(call_id: str, name: str, arguments: dict[str, object]) -> object:
    return stream_script(
        openai_frames(
            text=(),
            tool_calls=[(call_id, name, [json.dumps(arguments)])],
            finish="tool_calls",
            usage=(10, 2),
        )
    )


async def test_memory_tools_and_retrieval(tmp_path: Path, fake: ProviderServer) -> None:
    fake.push(
        tool_round("c1", "remember", {"text": "Ana owns billing", "scope": "tenant"}),
        tool_round("c2", "recall", {"query": "who owns billing"}),
        tool_round("c3", "search_messages", {"query": "pricing"}),
        stream_script(openai_frames(text=("Noted.",), usage=(10, 2))),
        stream_script(openai_frames(text=("Ana does.",), usage=(10, 2))),
    )
    server = serve(tmp_path, fake)
    try:
        tools = ["remember", "recall", "search_messages"]
        room = await setup_room(server, "keeper", provider="hosted", tools=tools)
        async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN)) as admin:
            # a private room the agent is not in: its messages stay out of the agent's reach
            r = await admin.post("/v1/rooms", json={"name": "board", "private": True})
            assert r.status_code == 201
            await admin.post("/v1/rooms/board/messages", json={"body": "pricing secret"})
            ann = await Client.connect(server.url, ADMIN)
            await ann.join(room)
            await ann.say(room, "Pricing is tracked by team 3")

            async def indexed() -> bool:
                return len(await search(admin, "pricing")) == 2

            await until(indexed, "both messages to be indexed")
            await ann.say(room, "@keeper remember that Ana owns billing")
            results = [await ann.next("tool.result", timeout=20) for _ in range(3)]
            await reply_of(ann)
            remembered, recalled, searched = results
            assert remembered["ok"] and "tenant memory" in remembered["result"]
            memories = (await admin.get("/v1/memory", params={"q": "billing"})).json()
            (record,) = memories["memories"]
            assert record["author"] == "keeper" and record["author_kind"] == "agent"
            assert record["source"]["room"] == room and record["event_room"] == room
            assert recalled["ok"] and "Ana owns billing" in recalled["result"]
            assert searched["ok"] and "team 3" in searched["result"]
            assert "secret" not in searched["result"]
            history = (await admin.get(f"/v1/rooms/{room}/messages")).json()["messages"]
            assert any(m["type"] == "memory.written" and m["sender"] == "keeper" for m in history)

            # the next turn: the memory is retrieved into the context before any tool call
            await ann.say(room, "@keeper who owns billing?")
            seen = await reply_of(ann)
            assert seen["end"]["text"] == "Ana does."
            last = fake.requests[-1].json
            prompt = json.dumps(last["messages"])
            assert f"[memory memory:{record['id']}" in prompt  # the retrieved block
            assert "[memory" not in json.dumps(fake.requests[0].json["messages"])  # none yet
            # the context endpoint shows the memories the agent would get for the last message
            await ann.say(room, "billing question for later")
            r = await admin.get(f"/v1/rooms/{room}/context", params={"agent": "keeper"})
            assert r.status_code == 200, r.text
            items = [i for i in r.json()["trace"]["items"] if i["section"] == "retrieved"]
            assert [(i["ref"], i["included"]) for i in items] == [(f"memory:{record['id']}", True)]
            await ann.close()
    finally:
        server.stop()
