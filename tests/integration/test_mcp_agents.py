"""Agents using MCP tools end to end: a real ``nexus serve`` whose operator settings name
the SDK-built fixture server (stdio and Streamable HTTP), a model scripted by the fake
provider to call its tools — ``tool.call`` / ``tool.result`` in the room with no secret in
any entry, and the approval of a destructive tool by a room member over WebSocket or
HTTP (approved, denied, expired; strangers, other tenants and late deciders refused)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.mcp_fixture import HttpFixture, stdio_table
from fakes.provider_server import ProviderServer, openai_frames, stream_script

from .harness import Client, ServerProcess, start_server, token
from .test_agents import ADMIN, MEMBER, auth, reply_of, setup_room

SECRET = "tok-5a4b3c2d1e0f-never-in-a-room"
STRANGER = token("sam", roles=("member",))  # same tenant, not a member of the room
OUTSIDER = token("olga", tenant="globex", roles=("admin", "member"))


@pytest.fixture
async def fake() -> AsyncIterator[ProviderServer]:
    async with ProviderServer() as server:
        yield server


@pytest.fixture
def http_fixture() -> Iterator[HttpFixture]:
    with HttpFixture(header=f"Authorization=Bearer {SECRET}") as http:
        yield http


def serve(
    tmp_path: Path, fake: ProviderServer, http: HttpFixture, approval_timeout: float = 20
) -> ServerProcess:
    secret_file = tmp_path / "mcp-auth"
    secret_file.write_text(f"Bearer {SECRET}")
    servers = {
        "fx": stdio_table(destructive=["delete_item"], timeout=5),
        "web": {
            "transport": "http",
            "url": http.url,
            "headers_files": {"Authorization": str(secret_file)},
        },
    }
    provider = {"type": "openai", "base_url": f"{fake.url}/v1", "api_key": "k", "model": "m"}
    return start_server(
        tmp_path / "data",
        ai_providers=json.dumps({"hosted": provider}),
        mcp_servers=json.dumps(servers),
        mcp_approval_timeout=approval_timeout,
        agent_delta_interval=0,
    )


def script_tool_call(fake: ProviderServer, name: str, arguments: dict[str, Any]) -> None:
    """The model calls ``name`` once, then answers "done"."""
    fake.push(
        stream_script(
            openai_frames(
                text=(),
                tool_calls=[("call_1", name, [json.dumps(arguments)])],
                finish="tool_calls",
                usage=(10, 5),
            )
        ),
        stream_script(openai_frames(text=("done",), usage=(20, 2))),
    )


async def ask(server: ServerProcess, agent: str, mcp: dict[str, list[str]]) -> tuple[str, Client]:
    """A room with the agent and mia as members, joined by ada (admin), who asks."""
    room = await setup_room(server, agent, provider="hosted", mcp=mcp)
    async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN)) as api:
        r = await api.put(f"/v1/rooms/{room}/members/mia", json={"role": "member"})
        assert r.status_code == 200, r.text
    ann = await Client.connect(server.url, ADMIN)
    await ann.join(room)
    mia = await Client.connect(server.url, MEMBER)
    await mia.join(room)
    await mia.close()
    await ann.say(room, f"@{agent} please do it")
    return room, ann


async def test_mcp_tool_calls_are_room_entries_without_secrets(
    tmp_path: Path, fake: ProviderServer, http_fixture: HttpFixture
) -> None:
    script_tool_call(fake, "web__echo", {"text": "over http"})
    server = serve(tmp_path, fake, http_fixture)
    try:
        room, ann = await ask(server, "webbot", {"web": ["echo"]})
        call = await ann.next("tool.call", timeout=20)
        result = await ann.next("tool.result", timeout=20)
        end = (await reply_of(ann))["end"]
        assert call["name"] == "web__echo" and json.loads(call["arguments"]) == {
            "text": "over http"
        }
        assert result["ok"] is True and result["result"] == "over http"
        assert end["text"] == "done"
        offered = fake.requests[0].json["tools"]
        assert [t["function"]["name"] for t in offered] == ["web__echo"]
        answered = next(m for m in fake.requests[1].json["messages"] if m["role"] == "tool")
        assert answered["content"] == "over http"
        history = await ann.request({"type": "history", "room": room, "limit": 100})
        entries = json.dumps(history)
        assert "tool.call" in entries and "tool.result" in entries
        assert SECRET not in entries
        async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN)) as api:
            agent = (await api.get("/v1/agents/webbot")).json()
            assert agent["mcp"] == {"web": ["echo"]}
            metrics = (await api.get("/metrics")).text
        await ann.close()
    finally:
        server.stop()
    assert SECRET not in "".join(server.output)
    assert 'nexus_mcp_tool_calls_total{outcome="ok",server="web",tool="echo"} 1.0' in metrics


async def test_a_destructive_tool_runs_once_a_member_approves_over_websocket(
    tmp_path: Path, fake: ProviderServer, http_fixture: HttpFixture
) -> None:
    script_tool_call(fake, "fx__delete_item", {"name": "report"})
    server = serve(tmp_path, fake, http_fixture)
    try:
        room, ann = await ask(server, "janitor", {"fx": ["delete_item", "echo"]})
        call = await ann.next("tool.call", timeout=20)
        asked = await ann.next("tool.approval", timeout=20)
        assert asked["message_id"] == call["message_id"] and asked["call_id"] == "call_1"
        assert asked["server"] == "fx" and asked["tool"] == "delete_item"
        assert json.loads(asked["arguments"]) == {"name": "report"}
        assert asked["sender"] == "janitor" and asked["expires_at"] > 0
        approval = asked["approval_id"]
        path = f"/v1/rooms/{room}/approvals/{approval}"
        async with httpx.AsyncClient(base_url=server.api, timeout=10) as api:
            # Not a member of the room; another tenant (the room does not exist there).
            r = await api.post(path, json={"approve": True}, headers=auth(STRANGER))
            assert r.status_code == 403, r.text
            r = await api.post(path, json={"approve": True}, headers=auth(OUTSIDER))
            assert r.status_code == 404, r.text
            r = await api.post(
                f"/v1/rooms/{room}/approvals/ap_nope", json={"approve": True}, headers=auth(ADMIN)
            )
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
            r = await api.post(path, json={"approve": "yes"}, headers=auth(ADMIN))
            assert r.status_code == 400, r.text
        bad = await ann.request({"type": "tool.approve", "room": room, "approval_id": approval})
        assert bad["type"] == "error" and bad["code"] == "bad_request"
        ok = await ann.request(
            {"type": "tool.approve", "room": room, "approval_id": approval, "approve": True}
        )
        assert ok["type"] == "tool.approve.ok", ok
        assert ok["approved"] is True and ok["by"] == "ada" and ok["seq"] > asked["seq"]
        decided = await ann.next("tool.approval.decided", timeout=20)
        assert decided["approval_id"] == approval and decided["sender"] == "ada"
        result = await ann.next("tool.result", timeout=20)
        assert result["ok"] is True and result["result"].startswith("deleted report")
        assert result["seq"] > decided["seq"]
        again = await ann.request(
            {"type": "tool.approve", "room": room, "approval_id": approval, "approve": False}
        )
        assert again["type"] == "error" and again["code"] == "conflict", again
        assert (await reply_of(ann))["end"]["text"] == "done"
        await ann.close()
    finally:
        server.stop()


async def test_a_denied_destructive_tool_does_not_run(
    tmp_path: Path, fake: ProviderServer, http_fixture: HttpFixture
) -> None:
    script_tool_call(fake, "fx__delete_item", {"name": "everything"})
    server = serve(tmp_path, fake, http_fixture)
    try:
        room, ann = await ask(server, "janitor", {"fx": ["delete_item"]})
        asked = await ann.next("tool.approval", timeout=20)
        async with httpx.AsyncClient(base_url=server.api, headers=auth(MEMBER)) as api:
            r = await api.post(
                f"/v1/rooms/{room}/approvals/{asked['approval_id']}", json={"approve": False}
            )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "room": room,
            "approval_id": asked["approval_id"],
            "approved": False,
            "by": "mia",
            "reason": "denied",
            "seq": r.json()["seq"],
        }
        result = await ann.next("tool.result", timeout=20)
        assert result["ok"] is False and "mia denied delete_item" in result["result"]
        assert (await reply_of(ann))["end"]["text"] == "done"
        answered = next(m for m in fake.requests[1].json["messages"] if m["role"] == "tool")
        assert "did not run" in answered["content"]
        await ann.close()
    finally:
        server.stop()


async def test_an_approval_nobody_gives_expires_as_a_tool_error(
    tmp_path: Path, fake: ProviderServer, http_fixture: HttpFixture
) -> None:
    script_tool_call(fake, "fx__delete_item", {"name": "x"})
    server = serve(tmp_path, fake, http_fixture, approval_timeout=1)
    try:
        room, ann = await ask(server, "janitor", {"fx": ["delete_item"]})
        asked = await ann.next("tool.approval", timeout=20)
        decided = await ann.next("tool.approval.decided", timeout=20)
        assert decided["approval_id"] == asked["approval_id"]
        assert decided["approved"] is False and decided["reason"] == "expired"
        assert decided["by"] is None
        result = await ann.next("tool.result", timeout=20)
        assert result["ok"] is False and "none came within 1 s" in result["result"]
        late = await ann.request(
            {
                "type": "tool.approve",
                "room": room,
                "approval_id": asked["approval_id"],
                "approve": True,
            }
        )
        assert late["code"] == "conflict" and "expired" in late["message"]
        await ann.close()
    finally:
        server.stop()


async def test_an_agent_names_only_configured_servers(
    tmp_path: Path, fake: ProviderServer, http_fixture: HttpFixture
) -> None:
    server = serve(tmp_path, fake, http_fixture)
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN)) as api:
            r = await api.post("/v1/agents", json={"name": "b1", "mcp": {"shell": ["run"]}})
            assert r.status_code == 400
            assert "mcp: no MCP server named 'shell' (configured: fx, web)" in r.text
            r = await api.post("/v1/agents", json={"name": "b2", "mcp": {"fx": ["*", "echo"]}})
            assert r.status_code == 400 and "stands alone" in r.text
            r = await api.post("/v1/agents", json={"name": "b3", "mcp": {"fx": []}})
            assert r.status_code == 400, r.text
            r = await api.post("/v1/agents", json={"name": "b4", "mcp": {"fx": ["*"]}})
            assert r.status_code == 201, r.text
            r = await api.patch("/v1/agents/b4", json={"mcp": {"nope": ["x"]}})
            assert r.status_code == 400 and "nope" in r.text
            r = await api.patch("/v1/agents/b4", json={"mcp": {"web": ["echo"]}})
            assert r.status_code == 200 and r.json()["mcp"] == {"web": ["echo"]}
    finally:
        server.stop()


async def test_cancelling_the_reply_withdraws_its_approval(
    tmp_path: Path, fake: ProviderServer, http_fixture: HttpFixture
) -> None:
    script_tool_call(fake, "fx__delete_item", {"name": "x"})
    server = serve(tmp_path, fake, http_fixture)
    try:
        room, ann = await ask(server, "janitor", {"fx": ["delete_item"]})
        asked = await ann.next("tool.approval", timeout=20)
        reply = await ann.request(
            {"type": "message.cancel", "room": room, "message_id": asked["message_id"]}
        )
        assert reply["type"] == "cancel.ok", reply
        decided = await ann.next("tool.approval.decided", timeout=20)
        assert decided["approval_id"] == asked["approval_id"]
        assert decided["reason"] == "cancelled" and decided["approved"] is False
        end = await ann.next("message.completed", "message.failed", timeout=20)
        assert end["finish_reason"] == "cancelled"
        late = await ann.request(
            {
                "type": "tool.approve",
                "room": room,
                "approval_id": asked["approval_id"],
                "approve": True,
            }
        )
        assert late["code"] == "conflict" and "cancelled" in late["message"]
        await ann.close()
    finally:
        server.stop()


async def test_cancelling_a_reply_during_a_slow_mcp_call_ends_it_at_once(
    tmp_path: Path, fake: ProviderServer, http_fixture: HttpFixture
) -> None:
    script_tool_call(fake, "web__slow", {"seconds": 30})
    server = serve(tmp_path, fake, http_fixture)
    try:
        room, ann = await ask(server, "sloth", {"web": ["slow"]})
        call = await ann.next("tool.call", timeout=20)
        reply = await ann.request(
            {"type": "message.cancel", "room": room, "message_id": call["message_id"]}
        )
        assert reply["type"] == "cancel.ok", reply
        end = await ann.next("message.completed", "message.failed", timeout=5)
        assert end["finish_reason"] == "cancelled" and end["cancelled_by"] == "ada"
        await ann.close()
    finally:
        server.stop()
