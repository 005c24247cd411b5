"""Agents end to end on real servers with the built-in offline provider: definitions over
HTTP, a mention streamed identically to every member, a member joining mid-stream, cancel,
budgets, bounded queues, a kill -9 mid-reply, usage and context."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import Client, ServerProcess, module_server, start_server, token

ADMIN = token("ada", roles=("admin", "member"))
MEMBER = token("mia", roles=("member",))
_rooms = itertools.count()

agent_server = module_server()
# Offline replies in parts 0.15 s apart: slow enough to join, cancel or crash mid-stream.
slow_server = module_server(
    ai_providers=json.dumps({"offline": {"type": "offline", "part_delay": 0.15}})
)


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture
async def admin_http(agent_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=agent_server.api, headers=auth(ADMIN), timeout=10
    ) as http:
        yield http


async def setup_room(server: ServerProcess, agent: str, **agent_fields: Any) -> str:
    """A fresh room with ``agent`` (created if absent) as a member."""
    room = f"agents-{next(_rooms)}"
    async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN), timeout=10) as http:
        r = await http.post("/v1/agents", json={"name": agent, **agent_fields})
        assert r.status_code in (201, 409), r.text
        assert (await http.post("/v1/rooms", json={"name": room})).status_code == 201
        r = await http.put(f"/v1/rooms/{room}/members/{agent}", json={"role": "member"})
        assert r.status_code == 200, r.text
    return room


async def reply_of(client: Client, timeout: float = 20.0) -> dict[str, Any]:
    """Everything one client sees of the next agent reply: started, deltas (or snapshot
    first), and the completion."""
    seen: dict[str, Any] = {"deltas": [], "snapshot": None}
    while True:
        event = await client.next(
            "message.started",
            "message.delta",
            "message.snapshot",
            "message.completed",
            "message.failed",
            timeout=timeout,
        )
        kind = event["type"]
        if kind == "message.started":
            seen["started"] = event
        elif kind == "message.snapshot":
            seen["snapshot"] = event
        elif kind == "message.delta":
            seen["deltas"].append(event)
        else:
            seen["end"] = event
            return seen


def streamed_text(seen: dict[str, Any]) -> str:
    """Snapshot text plus the deltas after it, checking offsets leave no gap or overlap."""
    text = seen["snapshot"]["text"] if seen["snapshot"] else ""
    for delta in seen["deltas"]:
        if delta["offset"] + len(delta["text"]) <= len(text):
            continue  # already in the snapshot
        assert delta["offset"] == len(text), (delta, text)
        text += delta["text"]
    return text


# -- definitions ----------------------------------------------------------------------------


async def test_agent_definitions_and_permissions(admin_http: httpx.AsyncClient) -> None:
    r = await admin_http.post(
        "/v1/agents",
        json={
            "name": "scribe",
            "system_prompt": "Summarize.",
            "tools": ["read_history"],
            "triggers": {"mention": True, "direct": False, "rooms": ["standup"]},
            "daily_token_budget": 5000,
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["triggers"]["rooms"] == ["standup"] and r.json()["created_by"] == "ada"
    for _ in range(100):  # the directory is written with the next commit
        users = (await admin_http.get("/v1/users")).json()["users"]
        if any(u["user_id"] == "scribe" for u in users):
            break
        await asyncio.sleep(0.02)
    assert next(u for u in users if u["user_id"] == "scribe")["kind"] == "agent"
    listed = (await admin_http.get("/v1/agents")).json()
    assert "scribe" in [a["name"] for a in listed["agents"]]
    assert "offline" in listed["providers"]
    assert {"read_history", "search_room", "post_message"} <= {t["name"] for t in listed["tools"]}
    cases = [
        ({"name": "scribe"}, 409),
        ({"name": "x", "provider": "nowhere"}, 400),
        ({"name": "y", "tools": ["rm_rf"]}, 400),
        ({"name": "bad name"}, 400),
        ({"name": "z", "max_output_tokens": 20000, "context_window": 16000}, 400),
    ]
    for body, status in cases:
        r = await admin_http.post("/v1/agents", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["code"] in ("conflict", "bad_request")
    member = {"Authorization": f"Bearer {MEMBER}"}
    assert (
        await admin_http.post("/v1/agents", json={"name": "m"}, headers=member)
    ).status_code == 403
    assert (await admin_http.get("/v1/agents/scribe", headers=member)).status_code == 200
    r = await admin_http.patch(
        "/v1/agents/scribe", json={"model": "m2", "triggers": {"rooms": ["a", "b"]}}
    )
    assert r.status_code == 200 and r.json()["model"] == "m2"
    assert r.json()["triggers"] == {"mention": True, "direct": False, "rooms": ["a", "b"]}
    other = {"Authorization": f"Bearer {token('oz', tenant='globex', roles=('admin',))}"}
    assert (await admin_http.get("/v1/agents/scribe", headers=other)).status_code == 404
    assert (await admin_http.delete("/v1/agents/scribe")).status_code == 204
    assert (await admin_http.get("/v1/agents/scribe")).status_code == 404


# -- streaming ------------------------------------------------------------------------------


async def test_a_mention_streams_the_same_reply_to_every_member(
    agent_server: ServerProcess,
) -> None:
    room = await setup_room(agent_server, "helper")
    ann = await Client.connect(agent_server.url, ADMIN)
    bob = await Client.connect(agent_server.url, token("bob"))
    for c in (ann, bob):
        await c.join(room)
    await ann.say(room, "Billing is owned by Bob since March")
    await ann.say(room, "The release is planned for Friday")
    trigger = await ann.say(room, "@helper who owns billing?")
    seen = [await reply_of(c) for c in (ann, bob)]
    for s in seen:
        assert s["started"]["reply_to"] == trigger["message_id"]
        assert s["started"]["sender"] == "helper" and s["started"]["sender_kind"] == "agent"
        assert s["end"]["type"] == "message.completed"
        assert s["end"]["finish_reason"] == "stop"
        assert streamed_text(s) == s["end"]["text"]
    assert seen[0]["end"]["text"] == seen[1]["end"]["text"]
    assert "Billing is owned by Bob" in seen[0]["end"]["text"]
    assert f"#{trigger['seq'] - 2}" in seen[0]["end"]["text"]  # a link to the entry it quotes
    assert seen[0]["end"]["usage"]["output_tokens"] > 0
    # history: the started entry now holds the final text
    page = await ann.request({"type": "history", "room": room})
    started = next(m for m in page["messages"] if m["type"] == "message.started")
    assert started["state"] == "completed" and started["text"] == seen[0]["end"]["text"]
    # the HTTP listing shows the same entries, agent kinds included
    async with httpx.AsyncClient(base_url=agent_server.api, headers=auth(ADMIN)) as http:
        r = await http.get(f"/v1/rooms/{room}/messages")
        assert r.status_code == 200, r.text
        kinds = [m["type"] for m in r.json()["messages"]]
        assert "message.started" in kinds and "message.completed" in kinds
        listed = next(m for m in r.json()["messages"] if m["type"] == "message.started")
        assert listed["text"] == seen[0]["end"]["text"]
    for c in (ann, bob):
        await c.close()


async def test_a_member_joining_mid_stream_gets_the_text_so_far(slow_server: ServerProcess) -> None:
    room = await setup_room(slow_server, "slowpoke")
    ann = await Client.connect(slow_server.url, ADMIN)
    await ann.join(room)
    for i in range(6):
        await ann.say(room, f"note {i}: the deploy key rotates weekly on monday {i}")
    await ann.say(room, "@slowpoke when does the deploy key rotate?")
    first = await ann.next("message.delta", timeout=20)
    late = await Client.connect(slow_server.url, token("late"))
    joined = await late.join(room)
    resumed = await Client.connect(slow_server.url, token("resumer"))
    await resumed.join(room, since=joined["seq"] - 1)  # replays the started entry
    ann.backlog.insert(0, first)
    seen = {
        name: await reply_of(c) for name, c in (("ann", ann), ("late", late), ("resumed", resumed))
    }
    final = seen["ann"]["end"]["text"]
    assert seen["late"]["snapshot"] is not None, "the late joiner got no snapshot"
    assert seen["late"]["snapshot"]["offset"] == len(seen["late"]["snapshot"]["text"])
    for name, s in seen.items():
        assert streamed_text(s) == final, name
    for c in (ann, late, resumed):
        await c.close()


async def test_cancel_over_websocket_and_http(slow_server: ServerProcess) -> None:
    room = await setup_room(slow_server, "chatty")
    ann = await Client.connect(slow_server.url, ADMIN)
    await ann.join(room)
    for i in range(8):
        await ann.say(room, f"fact {i}: cats sleep sixteen hours a day {i}")
    await ann.say(room, "@chatty how long do cats sleep?")
    started = await ann.next("message.started", timeout=20)
    await ann.next("message.delta", timeout=20)
    reply = await ann.request({"type": "message.cancel", "room": room, "message_id": started["id"]})
    assert reply["type"] == "cancel.ok", reply
    end = await ann.next("message.completed", "message.failed", timeout=20)
    assert end["finish_reason"] == "cancelled" and end["cancelled_by"] == "ada"
    assert len(end["text"]) > 0
    missing = await ann.request(
        {"type": "message.cancel", "room": room, "message_id": started["id"]}
    )
    assert missing["code"] == "not_found"
    # over HTTP, by a member
    await ann.say(room, "@chatty and dogs?")
    started = await ann.next("message.started", timeout=20)
    await ann.next("message.delta", timeout=20)
    async with httpx.AsyncClient(base_url=slow_server.api, headers=auth(ADMIN)) as http:
        r = await http.post(f"/v1/rooms/{room}/messages/{started['id']}/cancel")
        assert r.status_code == 202, r.text
        outsider = auth(token("nemo"))
        r = await http.post(f"/v1/rooms/{room}/messages/{started['id']}/cancel", headers=outsider)
        assert r.status_code in (403, 404)
    end = await ann.next("message.completed", "message.failed", timeout=20)
    assert end["finish_reason"] == "cancelled"
    await ann.close()


# -- limits -----------------------------------------------------------------------------------


async def test_an_exhausted_budget_is_a_clear_event_and_no_call(
    agent_server: ServerProcess,
) -> None:
    room = await setup_room(agent_server, "frugal", daily_token_budget=1)
    ann = await Client.connect(agent_server.url, ADMIN)
    await ann.join(room)
    await ann.say(room, "@frugal hello")
    first = await reply_of(ann)
    assert first["end"]["type"] == "message.completed"
    await ann.say(room, "@frugal again")
    notice = await ann.next("agent.notice", timeout=20)
    assert notice["reason"] == "budget" and "budget" in notice["message"]
    assert not [e for e in await ann.barrier() if e["type"] == "message.started"]
    await ann.close()


queue_server = module_server(
    agent_queue_max=1, ai_providers=json.dumps({"offline": {"type": "offline", "part_delay": 0.1}})
)


async def test_triggers_queue_then_are_refused(queue_server: ServerProcess) -> None:
    room = await setup_room(queue_server, "solo")
    ann = await Client.connect(queue_server.url, ADMIN)
    await ann.join(room)
    for i in range(3):
        await ann.say(room, f"@solo question {i} about queues")
    notice = await ann.next("agent.notice", timeout=20)
    assert notice["reason"] == "busy"
    ends = [await ann.next("message.completed", timeout=30) for _ in range(2)]
    assert all(e["finish_reason"] == "stop" for e in ends)
    await ann.close()


async def test_agents_do_not_trigger_agents_and_triggers_are_configurable(
    agent_server: ServerProcess,
) -> None:
    room = await setup_room(agent_server, "echoer", triggers={"mention": False, "direct": False})
    ann = await Client.connect(agent_server.url, ADMIN)
    await ann.join(room)
    await ann.say(room, "@echoer are you there?")  # mentions are off for this one
    assert not [e for e in await ann.barrier() if e["type"].startswith("message.started")]
    async with httpx.AsyncClient(base_url=agent_server.api, headers=auth(ADMIN)) as http:
        r = await http.patch("/v1/agents/echoer", json={"triggers": {"rooms": [room]}})
        assert r.status_code == 200
    await ann.say(room, "anything at all")  # every message of this room now
    first = await reply_of(ann)
    assert first["end"]["type"] == "message.completed"
    # its own reply is an agent's message: no reply to the reply
    assert not [e for e in await ann.barrier() if e["type"] == "message.started"]
    await ann.close()


async def test_direct_room_answers_without_a_mention(agent_server: ServerProcess) -> None:
    room = await setup_room(agent_server, "dm-bot")
    async with httpx.AsyncClient(base_url=agent_server.api, headers=auth(ADMIN)) as http:
        r = await http.put(f"/v1/rooms/{room}/members/ada", json={"role": "admin"})
        assert r.status_code == 200
    ann = await Client.connect(agent_server.url, ADMIN)
    await ann.join(room)
    await ann.say(room, "what is this room about?")
    assert (await reply_of(ann))["end"]["type"] == "message.completed"
    await ann.close()


# -- crash --------------------------------------------------------------------------------------


async def test_kill_9_mid_reply_is_interrupted_once_and_not_answered_twice(tmp_path: Path) -> None:
    slow = json.dumps({"offline": {"type": "offline", "part_delay": 0.3}})
    srv = start_server(tmp_path, ai_providers=slow)
    room = await setup_room(srv, "fragile")
    ann = await Client.connect(srv.url, ADMIN)
    await ann.join(room)
    for i in range(8):
        await ann.say(room, f"line {i}: the vault code changes every quarter {i}")
    trigger = await ann.say(room, "@fragile when does the vault code change?")
    await ann.next("message.delta", timeout=20)
    await asyncio.sleep(1.2)  # let a checkpoint of the text so far be committed
    srv.stop(signal.SIGKILL)
    srv = start_server(tmp_path, ai_providers=slow)
    try:
        ann = await Client.connect(srv.url, ADMIN)
        await ann.join(room, since=trigger["seq"])
        failed = await ann.next("message.failed", timeout=20)
        assert failed["finish_reason"] == "interrupted"
        assert failed["text"], "the checkpointed text was lost"
        await asyncio.sleep(1.0)  # a second answer would start within this time
        page = await ann.request({"type": "history", "room": room, "after": trigger["seq"]})
        kinds = [m["type"] for m in page["messages"]]
        assert kinds.count("message.started") == 1, kinds
        started = next(m for m in page["messages"] if m["type"] == "message.started")
        assert started["state"] == "interrupted"
        await ann.close()
    finally:
        assert srv.stop() == 0


async def test_triggers_waiting_at_a_kill_9_are_answered_after_restart_once(
    tmp_path: Path,
) -> None:
    slow = json.dumps({"offline": {"type": "offline", "part_delay": 0.3}})
    srv = start_server(tmp_path, ai_providers=slow)
    room = await setup_room(srv, "queued")
    ann = await Client.connect(srv.url, ADMIN)
    await ann.join(room)
    await ann.say(room, "the vault code changes every quarter")
    first = await ann.say(room, "@queued when does the vault code change?")
    await ann.next("message.delta", timeout=20)
    waiting = [await ann.say(room, f"@queued question {i} about the vault?") for i in (1, 2)]
    await ann.barrier()  # the triggers are committed; their queue records go with them
    await asyncio.sleep(0.5)  # and the observer has taken them
    srv.stop(signal.SIGKILL)
    srv = start_server(tmp_path, ai_providers=slow)
    try:
        ann = await Client.connect(srv.url, ADMIN)
        await ann.join(room, since=first["seq"])
        ends = [await ann.next("message.completed", "message.failed", timeout=30) for _ in range(3)]
        assert [e["finish_reason"] for e in ends] == ["interrupted", "stop", "stop"], ends
        await asyncio.sleep(1.0)  # a second answer would start within this time
        page = await ann.request({"type": "history", "room": room, "after": first["seq"]})
        started = [m for m in page["messages"] if m["type"] == "message.started"]
        assert sorted(m["reply_to"] for m in started) == sorted(
            [first["message_id"]] + [w["message_id"] for w in waiting]
        )
        await ann.close()
    finally:
        assert srv.stop() == 0


# -- usage, context, metrics ------------------------------------------------------------------


async def test_usage_context_and_metrics(agent_server: ServerProcess) -> None:
    room = await setup_room(agent_server, "counter")
    ann = await Client.connect(agent_server.url, ADMIN)
    await ann.join(room)
    await ann.say(room, "the budget meeting is on tuesday")
    await ann.say(room, "@counter when is the budget meeting?")
    end = (await reply_of(ann))["end"]
    async with httpx.AsyncClient(base_url=agent_server.api, headers=auth(ADMIN)) as http:

        async def recorded() -> list[dict[str, Any]]:
            rows = (await http.get("/v1/usage", params={"agent": "counter"})).json()["usage"]
            return [r for r in rows if r["agent"] == "counter"]

        for _ in range(100):
            rows = await recorded()
            if rows:
                break
            await asyncio.sleep(0.05)  # usage is written with the next commit after the end
        assert rows and rows[0]["turns"] >= 1
        assert rows[0]["output_tokens"] >= end["usage"]["output_tokens"]
        ctx = (await http.get(f"/v1/rooms/{room}/context", params={"agent": "counter"})).json()
        assert ctx["messages"][0]["role"] == "system"
        assert any("budget meeting is on tuesday" in m["content"] for m in ctx["messages"])
        trace = ctx["trace"]
        assert trace["used"] <= trace["input_limit"] and not trace["over_budget"]
        logged = [i for i in trace["items"] if i["section"] == "log" and i["included"]]
        assert logged and all(i["ref"].startswith("#") and i["tokens"] > 0 for i in logged)
        assert {s["section"] for s in trace["sections"]} >= {"system", "current", "log"}
        member = auth(MEMBER)
        assert (await http.get("/v1/usage", headers=member)).status_code == 403
        metrics = (await http.get("/metrics")).text
    assert 'nexus_agent_turns_total{agent="counter",outcome="completed"}' in metrics
    assert 'nexus_observer_lag_events{observer="agents"}' in metrics
    await ann.close()


@pytest.fixture(autouse=True)
def _no_leak() -> Iterator[None]:
    yield


# -- rolling summaries ----------------------------------------------------------------------


async def test_rolling_summaries_are_written_stored_and_rebuilt(
    agent_server: ServerProcess,
) -> None:
    """A small window: after a turn the older entries are summarized (offline: extractive,
    cited by seq), the context uses the summary in place of the entries it covers, and a
    rebuild from the log gives the same ranges and texts."""
    room = await setup_room(agent_server, "archivist", context_window=1024, max_output_tokens=256)
    topics = ["invoices", "kubernetes", "onboarding", "pricing", "latency", "hiring"]
    async with httpx.AsyncClient(
        base_url=agent_server.api, headers=auth(ADMIN), timeout=20
    ) as http:
        for i in range(60):
            body = f"note {i}: the {topics[i % 6]} work item {i} is tracked by team {i % 4}"
            r = await http.post(f"/v1/rooms/{room}/messages", json={"body": body})
            assert r.status_code == 201, r.text
        ann = await Client.connect(agent_server.url, ADMIN)
        await ann.join(room)
        await ann.say(room, "@archivist who tracks pricing?")
        assert (await reply_of(ann))["end"]["type"] == "message.completed"
        summaries: list[dict[str, Any]] = []
        for _ in range(100):  # written after the turn, stored with the next commit
            r = await http.get(f"/v1/rooms/{room}/summaries", params={"agent": "archivist"})
            assert r.status_code == 200, r.text
            summaries = r.json()["summaries"]
            if summaries:
                break
            await asyncio.sleep(0.05)
        assert summaries, "no summary written"
        first = summaries[0]
        assert first["first_seq"] <= first["last_seq"] and first["entries"] > 0
        assert "(#" in first["text"] and first["model"] == "offline-extractive"
        for a, b in itertools.pairwise(summaries):
            assert b["first_seq"] == a["last_seq"] + 1  # the ranges tile the log
        ctx = (await http.get(f"/v1/rooms/{room}/context", params={"agent": "archivist"})).json()
        items = ctx["trace"]["items"]
        assert any(i["section"] == "summaries" and i["included"] for i in items)
        assert any(i["reason"].startswith("covered by summary") for i in items)
        assert ctx["trace"]["used"] <= ctx["trace"]["input_limit"]
        r = await http.post(
            f"/v1/rooms/{room}/summaries/rebuild",
            params={"agent": "archivist"},
            headers=auth(MEMBER),
        )
        assert r.status_code == 403, r.text
        r = await http.post(f"/v1/rooms/{room}/summaries/rebuild", params={"agent": "archivist"})
        assert r.status_code == 200, r.text
        rebuilt = r.json()["summaries"]
        assert [(s["first_seq"], s["last_seq"], s["text"]) for s in rebuilt[: len(summaries)]] == [
            (s["first_seq"], s["last_seq"], s["text"]) for s in summaries
        ]
        r = await http.get(f"/v1/rooms/{room}/summaries", params={"agent": "nobody"})
        assert r.status_code == 404, r.text
        await ann.close()
