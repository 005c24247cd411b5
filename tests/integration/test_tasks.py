"""Tasks end to end on a real server: WebSocket and HTTP requests, the /task command,
optimistic concurrency, reminders across kill -9, an agent run through input-required."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fakes.provider_server import ProviderServer, openai_error, openai_frames, stream_script

from .harness import Client, ServerProcess, module_server, start_server
from .test_agents import ADMIN, MEMBER, auth, setup_room

task_server = module_server()


@pytest.fixture
async def http(task_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=task_server.api, headers=auth(ADMIN), timeout=10) as c:
        yield c


async def room_with(http: httpx.AsyncClient, name: str) -> str:
    r = await http.post("/v1/rooms", json={"name": name})
    assert r.status_code == 201, r.text
    return name


async def test_ws_requests_command_and_history(
    task_server: ServerProcess, http: httpx.AsyncClient
) -> None:
    room = await room_with(http, "tasks-ws")
    ann = await Client.connect(task_server.url, ADMIN)
    await ann.join(room)
    made = await ann.request(
        {"type": "task.create", "room": room, "title": "Write the RFC", "labels": ["docs"]}
    )
    assert made["type"] == "task", made
    task = made["task"]
    assert task["version"] == 1 and task["state"] == "triage" and task["room"] == room
    created = await ann.next("task.created")
    assert created["task"] == task and created["version"] == 1
    # an update with a stale version is refused with conflict
    stale = await ann.request(
        {"type": "task.update", "task_id": task["id"], "expected_version": 7, "state": "todo"}
    )
    assert stale["type"] == "error" and stale["code"] == "conflict"
    moved = await ann.request(
        {"type": "task.update", "task_id": task["id"], "expected_version": 1, "state": "todo"}
    )
    assert moved["task"]["version"] == 2 and moved["task"]["state"] == "todo"
    updated = await ann.next("task.updated")
    assert updated["changes"] == {"state": "todo"} and updated["version"] == 2
    # no transition out of a terminal state
    done = await ann.request(
        {"type": "task.update", "task_id": task["id"], "expected_version": 2, "state": "done"}
    )
    assert done["task"]["state"] == "done"
    back = await ann.request(
        {"type": "task.update", "task_id": task["id"], "expected_version": 3, "state": "todo"}
    )
    assert back["type"] == "error" and back["code"] == "conflict"
    bad = await ann.request({"type": "task.create", "room": room, "title": ""})
    assert bad["type"] == "error" and bad["code"] == "bad_request"

    # /task at the start of a message: a task that keeps its source message
    said = await ann.say(room, "/task Book the venue\nfor March")
    created = await ann.next("task.created")
    assert created["task"]["title"] == "Book the venue"
    assert created["task"]["source"] == {
        "room": room,
        "seq": said["seq"],
        "message_id": said["message_id"],
    }
    got = await ann.request({"type": "task.get", "task_id": created["task"]["id"]})
    assert got["task"]["id"] == created["task"]["id"]
    listed = await ann.request({"type": "task.list", "room": room, "state": "triage"})
    assert [t["title"] for t in listed["tasks"]] == ["Book the venue"]

    r = await http.get(f"/v1/tasks/{task['id']}/history")
    kinds = [(e["type"], e["version"]) for e in r.json()["events"]]
    assert kinds == [("task.created", 1), ("task.updated", 2), ("task.updated", 3)]
    r = await http.get("/v1/tasks", params={"room": room, "state": "done"})
    assert [t["id"] for t in r.json()["tasks"]] == [task["id"]]
    await ann.close()


async def test_concurrent_updates_exactly_one_wins(
    task_server: ServerProcess, http: httpx.AsyncClient
) -> None:
    room = await room_with(http, "tasks-race")
    r = await http.post(f"/v1/rooms/{room}/tasks", json={"title": "Contested"})
    assert r.status_code == 201, r.text
    task = r.json()
    answers = await asyncio.gather(
        *(
            http.patch(
                f"/v1/tasks/{task['id']}",
                json={"expected_version": 1, "assignees": [f"user{i}"]},
            )
            for i in range(8)
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * 7, [a.text for a in answers]
    assert all(a.json()["error"]["code"] == "conflict" for a in answers if a.status_code == 409)
    winner = next(a.json() for a in answers if a.status_code == 200)
    now = (await http.get(f"/v1/tasks/{task['id']}")).json()
    assert now == winner and now["version"] == 2
    r = await http.patch(f"/v1/tasks/{task['id']}", json={"state": "todo"})
    assert r.status_code == 400  # expected_version is required


async def test_due_reminder_notifies_online_assignees(
    task_server: ServerProcess, http: httpx.AsyncClient
) -> None:
    room = await room_with(http, "tasks-remind")
    r = await http.put(f"/v1/rooms/{room}/members/mia", json={"role": "member"})
    assert r.status_code == 200, r.text
    mia = await Client.connect(task_server.url, MEMBER)
    await mia.join(room)
    past = int(time.time() * 1000) - 1000
    r = await http.post(
        f"/v1/rooms/{room}/tasks", json={"title": "Pay", "assignees": ["mia"], "due": past}
    )
    assert r.status_code == 201, r.text
    notice = await mia.next("task.notice")
    assert notice["reason"] == "due" and notice["task"]["id"] == r.json()["id"]
    fired = await mia.next("task.reminder")
    assert fired["key"] == f"due.{r.json()['id']}.{past}" and fired["kind"] == "due"
    await mia.close()


async def wait_until_ms(at: int) -> None:
    # Waiting for the clock to pass a fire time, not for an event: there is none to wait for.
    await asyncio.sleep(max(0.0, at / 1000 - time.time()) + 0.01)


async def test_a_reminder_missed_during_a_crash_fires_once(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN), timeout=10) as h:
            room = await room_with(h, "crash")
            at = int(time.time() * 1000) + 1500
            r = await h.post(f"/v1/rooms/{room}/tasks", json={"title": "Call", "reminders": [at]})
            assert r.status_code == 201, r.text
            task_id = r.json()["id"]
        server.stop(signal.SIGKILL)  # acknowledged, then killed before it was due
        await wait_until_ms(at)
        server = start_server(tmp_path)
        ann = await Client.connect(server.url, ADMIN)
        await ann.join(room, since=0)
        fired = await ann.next("task.reminder")
        assert fired["key"] == f"reminder.{task_id}.{at}"
        server.stop(signal.SIGKILL)  # right after firing: its fired mark may not be durable
        server = start_server(tmp_path)
        async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN), timeout=10) as h:
            # a second task due now: once its reminder is in the log, the first had its
            # chance to fire again at start (one timer, earliest first)
            now = int(time.time() * 1000) - 1
            r = await h.post(f"/v1/rooms/{room}/tasks", json={"title": "Probe", "reminders": [now]})
            probe = r.json()["id"]
            ann = await Client.connect(server.url, ADMIN)
            await ann.join(room, since=0)
            seen: list[str] = []
            while True:
                event = await ann.next("task.reminder")
                seen.append(event["task_id"])
                if event["task_id"] == probe:
                    break
            assert seen == [task_id, probe]
            r = await h.get(f"/v1/tasks/{task_id}/history")
            assert [e["type"] for e in r.json()["events"]] == ["task.created", "task.reminder"]
            await ann.close()
    finally:
        server.stop()


@pytest.fixture
async def fake() -> AsyncIterator[ProviderServer]:
    async with ProviderServer() as server:
        yield server


async def run_states(ann: Client, task_id: str, until: str) -> list[str]:
    states: list[str] = []
    while not states or states[-1] != until:
        event = await ann.next("task.updated", timeout=20)
        run = event["task"]["run"]
        if event["task_id"] == task_id and "run" in event["changes"]:
            states.append(run["state"])
    return states


async def test_an_agent_run_asks_a_question_and_completes(
    tmp_path: Path, fake: ProviderServer
) -> None:
    fake.push(
        stream_script(openai_frames(text=("Which region", " should I use?"))),
        stream_script(openai_frames(text=("Deployed to eu-west.",))),
    )
    provider = {
        "type": "openai",
        "base_url": f"{fake.url}/v1",
        "api_key": "sk-test",
        "model": "gpt-test",
        "retries": 0,
    }
    server = start_server(
        tmp_path, ai_providers=json.dumps({"hosted": provider}), agent_delta_interval=0
    )
    try:
        room = await setup_room(server, "deployer", provider="hosted", tools=["ask_user"])
        ann = await Client.connect(server.url, ADMIN)
        await ann.join(room)
        made = await ann.request(
            {
                "type": "task.create",
                "room": room,
                "title": "Deploy the service",
                "description": "Staging first.",
                "assignees": ["deployer"],
            }
        )
        task_id = made["task"]["id"]
        asked = await run_states(ann, task_id, "input-required")
        assert asked == ["submitted", "working", "input-required"]
        got = await ann.request({"type": "task.get", "task_id": task_id})
        assert got["task"]["run"]["question"] == "Which region should I use?"
        prompt = fake.requests[0].json["messages"][-1]["content"]
        assert "Deploy the service" in prompt and "Staging first." in prompt
        await ann.say(room, "Use eu-west please")
        done = await run_states(ann, task_id, "completed")
        assert done == ["working", "completed"]
        got = await ann.request({"type": "task.get", "task_id": task_id})
        run = got["task"]["run"]
        assert run["result"] == "Deployed to eu-west." and run["turns"] == 2
        assert "Use eu-west please" in fake.requests[1].json["messages"][-1]["content"]
        async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN), timeout=10) as h:
            events = (await h.get(f"/v1/tasks/{task_id}/history")).json()["events"]
        states = [
            e["task"]["run"]["state"]
            for e in events
            if e["type"] == "task.updated" and "run" in e["changes"]
        ]
        assert states == ["submitted", "working", "input-required", "working", "completed"]
        versions = [e["version"] for e in events]
        assert versions == sorted(set(versions))
        await ann.close()
    finally:
        server.stop()


async def test_an_agent_that_is_not_a_member_rejects_the_run(
    task_server: ServerProcess, http: httpx.AsyncClient
) -> None:
    r = await http.post("/v1/agents", json={"name": "outsider"})
    assert r.status_code in (201, 409), r.text
    room = await room_with(http, "tasks-reject")
    ann = await Client.connect(task_server.url, ADMIN)
    await ann.join(room)
    made = await ann.request(
        {"type": "task.create", "room": room, "title": "x", "assignees": ["outsider"]}
    )
    states = await run_states(ann, made["task"]["id"], "rejected")
    assert states == ["submitted", "rejected"]
    await ann.close()


def hosted_server(tmp_path: Path, fake: ProviderServer) -> ServerProcess:
    provider = {
        "type": "openai",
        "base_url": f"{fake.url}/v1",
        "api_key": "sk-test",
        "model": "gpt-test",
        "retries": 0,
    }
    return start_server(
        tmp_path, ai_providers=json.dumps({"hosted": provider}), agent_delta_interval=0
    )


async def test_ask_user_tool_and_create_task_tool_in_a_run(
    tmp_path: Path, fake: ProviderServer
) -> None:
    """The run's first turn calls ``create_task`` (a subtask) then ``ask_user``: the run
    waits for input even though the reply text asks nothing; the answer completes it."""
    fake.push(
        stream_script(
            openai_frames(
                text=(),
                tool_calls=[
                    ("c1", "create_task", ['{"title": "Write the runbook"}']),
                    ("c2", "ask_user", ['{"question": "Blue or green?"}']),
                ],
                finish="tool_calls",
            )
        ),
        stream_script(openai_frames(text=("I will wait for your answer.",))),
        stream_script(openai_frames(text=("Green it is: done.",))),
    )
    server = hosted_server(tmp_path, fake)
    try:
        room = await setup_room(
            server, "planner", provider="hosted", tools=["ask_user", "create_task"]
        )
        ann = await Client.connect(server.url, ADMIN)
        await ann.join(room)
        made = await ann.request(
            {
                "type": "task.create",
                "room": room,
                "title": "Plan the switch",
                "assignees": ["planner"],
            }
        )
        task_id = made["task"]["id"]
        assert await run_states(ann, task_id, "input-required") == [
            "submitted",
            "working",
            "input-required",
        ]
        got = await ann.request({"type": "task.get", "task_id": task_id})
        assert got["task"]["run"]["question"] == "Blue or green?"
        listed = await ann.request({"type": "task.list", "room": room})
        titles = {t["title"] for t in listed["tasks"]}
        assert {"Plan the switch", "Write the runbook"} <= titles
        await ann.say(room, "green")
        assert await run_states(ann, task_id, "completed") == ["working", "completed"]
        got = await ann.request({"type": "task.get", "task_id": task_id})
        assert got["task"]["run"]["result"] == "Green it is: done."
        await ann.close()
    finally:
        server.stop()


async def test_a_provider_failure_fails_the_run_and_a_cancel_cancels_it(
    tmp_path: Path, fake: ProviderServer
) -> None:
    fake.push(
        openai_error(400, "the model does not exist"),
        stream_script(
            openai_frames(text=("Working on it",), finish=None, usage=None, done=False), stall=True
        ),
    )
    server = hosted_server(tmp_path, fake)
    try:
        room = await setup_room(server, "worker", provider="hosted")
        ann = await Client.connect(server.url, ADMIN)
        await ann.join(room)
        first = await ann.request(
            {"type": "task.create", "room": room, "title": "Doomed", "assignees": ["worker"]}
        )
        failed = await run_states(ann, first["task"]["id"], "failed")
        assert failed == ["submitted", "working", "failed"]
        second = await ann.request(
            {"type": "task.create", "room": room, "title": "Stopped", "assignees": ["worker"]}
        )
        task = second["task"]
        assert await run_states(ann, task["id"], "working") == ["submitted", "working"]
        await ann.next("message.delta", timeout=20)  # the reply is streaming
        current = await ann.request({"type": "task.get", "task_id": task["id"]})
        cancel = await ann.request(
            {
                "type": "task.update",
                "task_id": task["id"],
                "expected_version": current["task"]["version"],
                "state": "cancelled",
            }
        )
        assert cancel["type"] != "error", cancel
        assert await run_states(ann, task["id"], "cancelled") == ["cancelled"]
        await asyncio.wait_for(fake.requests[1].client_closed.wait(), 10)  # upstream closed
        await ann.close()
    finally:
        server.stop()
