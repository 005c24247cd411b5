"""Nexus as an MCP server: the official SDK's client against ``/mcp`` on a real server, over
real HTTP on loopback, in both protocol revisions the SDK speaks (2026-07-28 stateless,
2025-11-25 with the initialize handshake and sessions)."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import signal
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .harness import Client as WsClient
from .harness import ServerProcess, module_server, start_server, token

mcp_server = module_server()

ADMIN = token("ada", roles=("admin", "member"))
MEMBER = token("mia", roles=("member",))
OUTSIDER = token("oz", roles=("member",))  # same tenant, not a member of private rooms
OTHER_TENANT = token("eve", tenant="globex", roles=("admin", "member"))
MODES = ("legacy", "2026-07-28")  # what the SDK speaks: handshake era and stateless era
_rooms = itertools.count()


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@asynccontextmanager
async def mcp_client(server: ServerProcess, tok: str, mode: str) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers=auth(tok), timeout=15)
    transport = streamable_http_client(server.api + "/mcp", http_client=http)
    async with Client(transport, mode=mode, cache=None) as client:
        yield client


async def new_room(
    server: ServerProcess, *, private: bool = False, members: tuple[str, ...] = ()
) -> str:
    name = f"mcp-{next(_rooms)}"
    async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN), timeout=10) as http:
        r = await http.post("/v1/rooms", json={"name": name, "private": private})
        assert r.status_code == 201, r.text
        for user in members:
            r = await http.put(f"/v1/rooms/{name}/members/{user}", json={"role": "member"})
            assert r.status_code == 200, r.text
    return name


def doc(result: Any) -> dict[str, Any]:
    return json.loads(result.contents[0].text)


@pytest.mark.parametrize("mode", MODES)
async def test_tools_resources_in_both_revisions(mcp_server: ServerProcess, mode: str) -> None:
    room = await new_room(mcp_server)
    async with mcp_client(mcp_server, ADMIN, mode) as client:
        expected = "2025-11-25" if mode == "legacy" else "2026-07-28"
        assert client.protocol_version == expected
        names = {t.name for t in (await client.list_tools()).tools}
        assert {
            "post_message",
            "read_history",
            "search_messages",
            "search_memory",
            "create_task",
            "update_task",
            "get_context_trace",
        } <= names
        acks = []
        for i in range(3):
            r = await client.call_tool("post_message", {"room": room, "body": f"m{i}"})
            assert not r.is_error, r.content
            acks.append(r.structured_content)
        assert [a["seq"] for a in acks] == [1, 2, 3]
        # idempotent resend
        again = await client.call_tool(
            "post_message", {"room": room, "body": "once", "client_msg_id": f"c-{room}"}
        )
        dup = await client.call_tool(
            "post_message", {"room": room, "body": "once", "client_msg_id": f"c-{room}"}
        )
        assert dup.structured_content["duplicate"] is True
        assert dup.structured_content["seq"] == again.structured_content["seq"] == 4
        hist = await client.call_tool("read_history", {"room": room, "after_seq": 1})
        assert [e["body"] for e in hist.structured_content["entries"]] == ["m1", "m2", "once"]
        # resources: the room is listed; messages after a seq, oldest first
        uris = {r.uri for r in (await client.list_resources()).resources}
        assert f"nexus://rooms/{room}/messages" in uris
        page = doc(await client.read_resource(f"nexus://rooms/{room}/messages?after_seq=2&limit=1"))
        assert [e["seq"] for e in page["entries"]] == [3]
        assert page["has_more"] is True and page["next_after_seq"] == 3
        info = doc(await client.read_resource(f"nexus://rooms/{room}"))
        assert info["head_seq"] == 4
        templates = (await client.list_resource_templates()).resource_templates
        assert any("after_seq" in t.uri_template for t in templates)
        # bad arguments are tool errors with the API's codes
        bad = await client.call_tool("read_history", {"room": room, "limit": 0})
        assert bad.is_error and bad.structured_content["error"]["code"] == "bad_request"
        extra = await client.call_tool("post_message", {"room": room, "body": "x", "nope": 1})
        assert extra.is_error and "nope" in extra.structured_content["error"]["message"]
        with pytest.raises(MCPError):
            await client.call_tool("no_such_tool", {})
        with pytest.raises(MCPError):
            await client.read_resource("nexus://rooms/no-such-room/messages")


@pytest.mark.parametrize("mode", MODES)
async def test_tasks_search_and_context_trace(mcp_server: ServerProcess, mode: str) -> None:
    room = await new_room(mcp_server)
    async with httpx.AsyncClient(base_url=mcp_server.api, headers=auth(ADMIN), timeout=10) as http:
        r = await http.post("/v1/agents", json={"name": "helper-bot"})
        assert r.status_code in (201, 409), r.text
        r = await http.put(f"/v1/rooms/{room}/members/helper-bot", json={"role": "member"})
        assert r.status_code == 200, r.text
    async with mcp_client(mcp_server, ADMIN, mode) as client:
        made = await client.call_tool("create_task", {"room": room, "title": "Ship MCP"})
        assert not made.is_error, made.content
        task = made.structured_content
        assert task["version"] == 1 and task["room"] == room
        moved = await client.call_tool(
            "update_task", {"task_id": task["id"], "expected_version": 1, "state": "todo"}
        )
        assert moved.structured_content["version"] == 2
        stale = await client.call_tool(
            "update_task", {"task_id": task["id"], "expected_version": 1, "state": "done"}
        )
        assert stale.is_error and stale.structured_content["error"]["code"] == "conflict"
        tasks = doc(await client.read_resource(f"nexus://rooms/{room}/tasks"))
        assert [t["id"] for t in tasks["tasks"]] == [task["id"]]
        one = doc(await client.read_resource(f"nexus://tasks/{task['id']}"))
        assert one["state"] == "todo"
        # search: the indexer is an observer, so poll until it has caught up
        await client.call_tool("post_message", {"room": room, "body": "the zebra protocol"})
        for _ in range(100):
            found = await client.call_tool("search_messages", {"query": "zebra", "room": room})
            if found.structured_content["hits"]:
                break
            await asyncio.sleep(0.05)
        assert "zebra" in found.structured_content["hits"][0]["snippet"]
        mem = await client.call_tool("search_memory", {"query": "anything"})
        assert not mem.is_error and mem.structured_content == {"memories": []}
        trace = await client.call_tool("get_context_trace", {"room": room, "agent": "helper-bot"})
        assert not trace.is_error, trace.content
        assert trace.structured_content["agent"] == "helper-bot"
        assert trace.structured_content["trace"]["items"]


async def test_listen_resumes_from_seq_without_gap(mcp_server: ServerProcess) -> None:
    """2026-07-28: subscriptions/listen on a room resource; every update names the room's
    head seq, and reading after the last seq seen gives each entry once, in order."""
    room = await new_room(mcp_server)
    ws = await WsClient.connect(mcp_server.url, ADMIN)
    await ws.join(room)
    await ws.say(room, "before-1")
    await ws.say(room, "before-2")
    seen: list[int] = []
    async with mcp_client(mcp_server, MEMBER, "2026-07-28") as client:
        uri = f"nexus://rooms/{room}/messages?after_seq=1"
        async with client.listen(resource_subscriptions=[uri]) as sub:
            assert sub.honored.resource_subscriptions == [uri]
            cursor = 1

            async def writer() -> None:
                for i in range(20):
                    await ws.say(room, f"live-{i}")

            task = asyncio.create_task(writer())
            events = aiter(sub)
            while cursor < 22:
                await asyncio.wait_for(anext(events), 10)  # the room moved: read on
                while True:
                    page = doc(
                        await client.read_resource(
                            f"nexus://rooms/{room}/messages?after_seq={cursor}&limit=7"
                        )
                    )
                    seen.extend(e["seq"] for e in page["entries"])
                    cursor = page["next_after_seq"]
                    if not page["has_more"]:
                        break
            await task
    await ws.close()
    assert seen == list(range(2, 23))  # no gap, no duplicate


# resources/subscribe is the 2025-11-25 way (deprecated by the SDK for new revisions)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_handshake_subscribe_notifies_with_head_seq(mcp_server: ServerProcess) -> None:
    room = await new_room(mcp_server)
    updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        if getattr(root, "method", "") == "notifications/resources/updated":
            updates.put_nowait(root.params.model_dump(by_alias=True))

    http = httpx2.AsyncClient(headers=auth(MEMBER), timeout=15)
    transport = streamable_http_client(mcp_server.api + "/mcp", http_client=http)
    async with Client(transport, mode="legacy", cache=None, message_handler=on_message) as client:
        uri = f"nexus://rooms/{room}/messages"
        await client.session.subscribe_resource(uri)
        await client.call_tool("post_message", {"room": room, "body": "one"})
        got = await asyncio.wait_for(updates.get(), 10)
        assert got["uri"] == uri and got["_meta"]["nexus/head_seq"] == 1
        await client.session.unsubscribe_resource(uri)
        await client.call_tool("post_message", {"room": room, "body": "two"})
        await asyncio.sleep(0.3)
        assert updates.empty()
        # a private room the caller may not see cannot be subscribed to
        private = await new_room(mcp_server, private=True)
        with pytest.raises(MCPError):
            await client.session.subscribe_resource(f"nexus://rooms/{private}/messages")


@pytest.mark.parametrize("mode", MODES)
async def test_permission_matrix(mcp_server: ServerProcess, mode: str) -> None:
    private = await new_room(mcp_server, private=True, members=("mia",))
    # the member may read and post
    async with mcp_client(mcp_server, MEMBER, mode) as client:
        ok = await client.call_tool("post_message", {"room": private, "body": "inside"})
        assert not ok.is_error, ok.content
    # a user of the tenant who is not a member: the private room does not exist for them
    for who in (OUTSIDER, OTHER_TENANT):
        async with mcp_client(mcp_server, who, mode) as client:
            r = await client.call_tool("post_message", {"room": private, "body": "let me in"})
            assert r.is_error and r.structured_content["error"]["code"] == "not_found"
            r = await client.call_tool("read_history", {"room": private})
            assert r.is_error and r.structured_content["error"]["code"] == "not_found"
            with pytest.raises(MCPError):
                await client.read_resource(f"nexus://rooms/{private}/messages")
            uris = {r.uri for r in (await client.list_resources()).resources}
            assert f"nexus://rooms/{private}/messages" not in uris
            if mode != "legacy":
                async with client.listen(
                    resource_subscriptions=[f"nexus://rooms/{private}/messages"]
                ) as sub:
                    assert not sub.honored.resource_subscriptions
    # the other tenant's principal sees none of acme's public rooms either
    public = await new_room(mcp_server)
    async with mcp_client(mcp_server, OTHER_TENANT, mode) as client:
        listed = await client.call_tool("list_rooms", {})
        assert public not in {r["name"] for r in listed.structured_content["rooms"]}
    # nothing the outsiders tried was written
    async with httpx.AsyncClient(base_url=mcp_server.api, headers=auth(ADMIN), timeout=10) as http:
        bodies = [
            m["body"] for m in (await http.get(f"/v1/rooms/{private}/messages")).json()["messages"]
        ]
        assert bodies == ["inside"]


async def test_no_token_bad_token_and_stolen_session(mcp_server: ServerProcess) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=mcp_server.api, timeout=10) as http:
        r = await http.post("/mcp", json=init, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "unauthorized"
        r = await http.post("/mcp", json=init, headers={**headers, **auth("not.a.jwt")})
        assert r.status_code == 401
        # a session opened by mia answers nobody else
        r = await http.post("/mcp", json=init, headers={**headers, **auth(MEMBER)})
        assert r.status_code == 200, r.text
        session = r.headers["mcp-session-id"]
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        stolen = {
            **headers,
            **auth(OUTSIDER),
            "mcp-session-id": session,
            "mcp-protocol-version": "2025-11-25",
        }
        r = await http.post("/mcp", json=call, headers=stolen)
        assert r.status_code == 404
        # a body over the HTTP cap is refused before it is read
        big = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "post_message", "arguments": {"room": "x", "body": "y" * 100_000}},
        }
        r = await http.post(
            "/mcp",
            json=big,
            headers={**headers, **auth(MEMBER), "mcp-protocol-version": "2026-07-28"},
        )
        assert r.status_code == 413


async def test_metrics_count_mcp_requests(mcp_server: ServerProcess) -> None:
    room = await new_room(mcp_server)
    async with mcp_client(mcp_server, MEMBER, "2026-07-28") as client:
        await client.call_tool("post_message", {"room": room, "body": "counted"})
        await client.call_tool("read_history", {"room": room, "limit": 0})  # a tool error
    async with httpx.AsyncClient(base_url=mcp_server.api, timeout=10) as http:
        text = (await http.get("/metrics")).text
    assert 'nexus_mcp_requests_total{method="tools/call",outcome="ok"}' in text
    assert 'nexus_mcp_requests_total{method="tools/call",outcome="tool_error"}' in text
    assert 'nexus_mcp_subscriptions{kind="listen"}' in text


async def test_shutdown_ends_open_streams_and_exits_cleanly(tmp_path: Path) -> None:
    """SIGTERM with a listen stream open: the stream ends and the server exits 0 (the
    MCP service stops before the HTTP listener, so no stream holds the shutdown)."""
    server = start_server(tmp_path)
    ended = False
    try:
        room = await new_room(server)
        async with (
            mcp_client(server, MEMBER, "2026-07-28") as client,
            client.listen(resource_subscriptions=[f"nexus://rooms/{room}"]) as sub,
        ):
            server.proc.send_signal(signal.SIGTERM)
            async for _ in sub:
                pass
            ended = True
    except Exception:  # an abrupt end of the stream or the connection is an end too
        ended = True
    assert ended
    assert server.proc.wait(20) == 0, "".join(server.output)


async def test_mcp_can_be_turned_off(tmp_path: Path) -> None:
    server = start_server(tmp_path, mcp_enabled="false")
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=auth(MEMBER), timeout=10) as http:
            r = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert r.status_code == 404
    finally:
        assert server.stop() == 0


def skill_zip(name: str, description: str, body: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("SKILL.md", f"---\nname: {name}\ndescription: {description}\n---\n{body}\n")
        zf.writestr("references/style.md", "Short sentences.")
    return buf.getvalue()


@pytest.mark.parametrize("mode", MODES)
async def test_skills_are_prompts(mcp_server: ServerProcess, mode: str) -> None:
    suffix = mode.replace("-", "")[-4:]
    name, room_skill = f"standup-{suffix}", f"triage-{suffix}"
    room = await new_room(mcp_server, private=True, members=("mia",))
    async with httpx.AsyncClient(base_url=mcp_server.api, headers=auth(ADMIN), timeout=10) as http:
        for skill, scope in ((name, "tenant"), (room_skill, f"room:{room}")):
            r = await http.put(
                f"/v1/skills/{skill}",
                content=skill_zip(skill, f"The {skill} skill", f"Steps of {skill}."),
                headers={"content-type": "application/zip"},
                params={"scope": scope},
            )
            assert r.status_code in (200, 201), r.text
    async with mcp_client(mcp_server, MEMBER, mode) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert name in prompts and room_skill not in prompts  # room scope: ask with room
        assert prompts[name].description == f"The {name} skill"
        got = await client.get_prompt(name, {"args": "the payments team"})
        text = got.messages[0].content.text  # type: ignore[union-attr]
        assert f"Steps of {name}." in text and "the payments team" in text
        assert "references/style.md" in text
        assert str(got.meta["nexus/digest"]).startswith("sha256:")  # type: ignore[index]
        scoped = await client.get_prompt(room_skill, {"room": room})
        assert f"Steps of {room_skill}." in scoped.messages[0].content.text  # type: ignore[union-attr]
        with pytest.raises(MCPError):
            await client.get_prompt("no-such-skill", {})
    async with mcp_client(mcp_server, OUTSIDER, mode) as client:
        with pytest.raises(MCPError):  # not a member of the private room: no room skills
            await client.get_prompt(room_skill, {"room": room})
    async with mcp_client(mcp_server, OTHER_TENANT, mode) as client:
        assert name not in {p.name for p in (await client.list_prompts()).prompts}
        with pytest.raises(MCPError):
            await client.get_prompt(name, {})
