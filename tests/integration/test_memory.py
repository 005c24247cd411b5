"""Search and memory on a real server: who finds what (tenants, private rooms, a room the
user was removed from), edits and deletes reflected, memory records written, superseded
and forgotten with their events in the room log, the index rebuilt from the log equal to
the one built live, and an acknowledged memory write surviving kill -9."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from nexus.core.memory import FILE_NAME, SearchStore

from .harness import Client, ServerProcess, module_server, start_server, token

ADMIN = token("ada", roles=("admin", "member"))
ANA = token("ana")
BOB = token("bob")
OTHER = token("oz", tenant="globex", roles=("admin", "member"))
_n = itertools.count()

memory_server = module_server()


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture
async def http(memory_server: ServerProcess) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def as_(tok: str) -> httpx.AsyncClient:
        c = httpx.AsyncClient(base_url=memory_server.api, headers=auth(tok), timeout=10)
        clients.append(c)
        return c

    yield as_
    for c in clients:
        await c.aclose()


async def until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``check`` (a coroutine function) until it returns something truthy: the index
    follows the log asynchronously, and HTTP offers no event to wait for."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def search(c: httpx.AsyncClient, q: str, **params: Any) -> list[dict[str, Any]]:
    r = await c.get("/v1/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    hits: list[dict[str, Any]] = r.json()["hits"]
    return hits


async def test_search_permission_matrix(
    http: Callable[[str], httpx.AsyncClient],
) -> None:
    word = f"quokka{next(_n)}"
    admin, ana, bob, oz = http(ADMIN), http(ANA), http(BOB), http(OTHER)
    rooms = {name: f"{name}-{word}" for name in ("pub", "priv", "left")}
    for name, room in rooms.items():
        r = await admin.post("/v1/rooms", json={"name": room, "private": name != "pub"})
        assert r.status_code == 201, r.text
        await admin.post(f"/v1/rooms/{room}/messages", json={"body": f"the {word} in {name}"})
    assert (await admin.put(f"/v1/rooms/{rooms['priv']}/members/bob", json={})).status_code == 200
    assert (await admin.put(f"/v1/rooms/{rooms['left']}/members/ana", json={})).status_code == 200
    assert (await oz.post("/v1/rooms", json={"name": rooms["pub"]})).status_code == 201
    await oz.post(f"/v1/rooms/{rooms['pub']}/messages", json={"body": f"the {word} at globex"})

    async def all_indexed() -> bool:
        return len(await search(admin, word)) == 3 and len(await search(oz, word)) == 1

    await until(all_indexed, "the messages to be indexed")
    seen = {
        name: {h["room"] for h in await search(c, word)}
        for name, c in (("ana", ana), ("bob", bob), ("admin", admin), ("oz", oz))
    }
    assert seen["ana"] == {rooms["pub"], rooms["left"]}  # a member of left, for now
    assert seen["bob"] == {rooms["pub"], rooms["priv"]}
    assert seen["admin"] == set(rooms.values())
    assert seen["oz"] == {rooms["pub"]}
    (hit,) = await search(oz, word)
    assert "globex" in hit["snippet"] and hit["seq"] == 1
    # removed from the private room: its messages are no longer found
    r = await admin.delete(f"/v1/rooms/{rooms['left']}/members/ana")
    assert r.status_code == 204
    assert {h["room"] for h in await search(ana, word)} == {rooms["pub"]}
    r = await ana.get("/v1/search", params={"q": word, "room": rooms["priv"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await ana.get("/v1/search", params={"q": "   "})
    assert r.status_code == 400


async def test_edits_and_deletes_are_reflected(memory_server: ServerProcess) -> None:
    word = f"wombat{next(_n)}"
    room = f"edits-{word}"
    c = await Client.connect(memory_server.url, ANA)
    await c.join(room)
    kept = await c.say(room, f"the {word} is blue")
    gone = await c.say(room, f"another {word} entry")
    r = await c.request(
        {
            "type": "message.edit",
            "room": room,
            "message_id": kept["message_id"],
            "body": "the ocelot is green",
        }
    )
    assert r["type"] == "ack"
    r = await c.request({"type": "message.delete", "room": room, "message_id": gone["message_id"]})
    assert r["type"] == "ack"

    async def ws_search(q: str) -> dict[str, Any]:
        return await c.request({"type": "search", "q": q, "room": room})

    async def settled() -> bool:
        hits = (await ws_search("ocelot"))["hits"]
        return bool(hits) and not (await ws_search(word))["hits"]

    await until(settled, "the edit and the delete to be indexed")
    (hit,) = (await ws_search("ocelot green"))["hits"]
    assert hit["message_id"] == kept["message_id"] and hit["seq"] == kept["seq"]
    assert hit["sender"] == "ana" and "**ocelot**" in hit["snippet"]
    bad = await c.request({"type": "search", "q": 5})
    assert bad["type"] == "error" and bad["code"] == "bad_request"
    await c.close()


async def test_memory_write_supersede_forget_with_events(
    memory_server: ServerProcess, http: Callable[[str], httpx.AsyncClient]
) -> None:
    room = f"mem-{next(_n)}"
    ana = await Client.connect(memory_server.url, ANA)
    bob = await Client.connect(memory_server.url, BOB)
    await ana.join(room)
    await bob.join(room)
    said = await ana.say(room, "so: Ana owns billing from now on")
    r = await ana.request(
        {
            "type": "memory.write",
            "scope": "room",
            "room": room,
            "text": "Ana owns billing",
            "source": {"room": room, "first_seq": said["seq"], "last_seq": said["seq"]},
        }
    )
    assert r["type"] == "memory.record", r
    first = r["memory"]
    assert first["scope"] == "room" and first["scope_id"] == room and first["author"] == "ana"
    assert first["source"] == {"room": room, "first_seq": said["seq"], "last_seq": said["seq"]}
    written = await bob.next("memory.written")
    assert written["memory"]["id"] == first["id"] and written["sender"] == "ana"
    assert (
        (written["room"], written["seq"])
        == (first["event_room"], first["event_seq"])
        == (room, said["seq"] + 1)
    )

    # bob (not the author, not an admin) may not change it; ana supersedes it
    r = await bob.request({"type": "memory.update", "memory_id": first["id"], "text": "Bob"})
    assert r["type"] == "error" and r["code"] == "forbidden"
    r = await ana.request(
        {"type": "memory.update", "memory_id": first["id"], "text": "Bea owns billing"}
    )
    assert r["type"] == "memory.record", r
    second = r["memory"]
    assert second["supersedes"] == first["id"] and second["event_room"] == room
    superseded = await bob.next("memory.superseded")
    assert superseded["superseded"] == first["id"] and superseded["memory"]["id"] == second["id"]
    r = await ana.request({"type": "memory.update", "memory_id": first["id"], "text": "again"})
    assert r["type"] == "error" and r["code"] == "conflict"

    found = await bob.request({"type": "memory.search", "q": "who owns billing"})
    assert [m["id"] for m in found["memories"]] == [second["id"]]
    found = await bob.request({"type": "memory.search", "q": "billing", "history": True})
    assert {m["id"] for m in found["memories"]} == {first["id"], second["id"]}
    old = (await http(BOB).get(f"/v1/memory/{first['id']}")).json()
    assert old["superseded_by"] == second["id"] and old["valid_until"] == second["valid_from"]

    # forget: an event, the record gone, the creating event's text blanked in the log
    r = await ana.request({"type": "memory.forget", "memory_id": second["id"]})
    assert r["type"] == "memory.record" and r["memory"]["forgotten"]
    forgotten = await bob.next("memory.forgotten")
    assert forgotten["memory_id"] == second["id"]
    assert (await http(BOB).get(f"/v1/memory/{second['id']}")).status_code == 404
    page = await bob.request({"type": "history", "room": room, "limit": 10})
    by_seq = {e["seq"]: e for e in page["messages"]}
    assert by_seq[second["event_seq"]]["memory"] == {"id": second["id"]}
    assert by_seq[second["event_seq"]]["forgotten"]
    assert "Bea" not in str(page)
    await ana.close()
    await bob.close()


async def test_memory_scopes_over_http(http: Callable[[str], httpx.AsyncClient]) -> None:
    admin, ana, bob = http(ADMIN), http(ANA), http(BOB)
    tag = f"kiwi{next(_n)}"
    r = await ana.post("/v1/memory", json={"text": f"{tag}: tenant fact"})
    assert r.status_code == 201, r.text
    tenant_fact = r.json()
    assert tenant_fact["scope"] == "tenant" and tenant_fact["event_room"] == "memory-audit"
    r = await ana.post("/v1/memory", json={"text": f"{tag}: ana's own note", "scope": "user"})
    mine = r.json()
    assert mine["scope_id"] == "ana" and mine["event_room"] == "memory-audit"
    # the audit room is private and created by nobody: only admins see it
    assert (await ana.get("/v1/rooms/memory-audit")).status_code == 404
    assert (await admin.get("/v1/rooms/memory-audit")).status_code == 200
    bob_sees = (await bob.get("/v1/memory", params={"q": tag})).json()["memories"]
    assert [m["id"] for m in bob_sees] == [tenant_fact["id"]]
    assert (await bob.get(f"/v1/memory/{mine['id']}")).status_code == 404
    ana_sees = (await ana.get("/v1/memory", params={"q": tag})).json()["memories"]
    assert {m["id"] for m in ana_sees} == {tenant_fact["id"], mine["id"]}
    listed = (await ana.get("/v1/memory", params={"scope": "user"})).json()["memories"]
    assert mine["id"] in [m["id"] for m in listed]
    assert tenant_fact["id"] not in [m["id"] for m in listed]
    # validity: a record that has not started yet is not current
    r = await ana.post(
        "/v1/memory", json={"text": f"{tag} future", "valid_from": 4_000_000_000_000}
    )
    assert r.status_code == 201
    current = (await ana.get("/v1/memory", params={"q": f"{tag} future"})).json()["memories"]
    assert r.json()["id"] not in [m["id"] for m in current]
    r = await ana.patch(f"/v1/memory/{tenant_fact['id']}", json={"text": f"{tag}: corrected"})
    assert r.status_code == 200 and r.json()["supersedes"] == tenant_fact["id"]
    assert (await bob.delete(f"/v1/memory/{r.json()['id']}")).status_code == 403
    assert (await admin.delete(f"/v1/memory/{r.json()['id']}")).status_code == 200
    cases = [
        ({"text": ""}, 400),
        ({"text": "x", "scope": "room"}, 400),  # room scope needs a room
        ({"text": "x", "scope": "room", "room": "no-such-room"}, 404),
        ({"text": "x", "valid_from": 10, "valid_until": 5}, 400),
        ({"text": "x", "scope": "planet"}, 400),
        ({"text": "x", "agent": "scribe", "scope": "agent"}, 403),
    ]
    for body, status in cases:
        r = await ana.post("/v1/memory", json=body)
        assert r.status_code == status, (body, r.text)


def reindex(data_dir: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "nexus", "reindex", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_rebuilt_index_equals_the_live_one_and_memory_survives_kill(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path)
    try:
        c = await Client.connect(server.url, ADMIN)
        await c.join("r1")
        await c.join("r2")
        acks = [await c.say(f"r{i % 2 + 1}", f"entry {i} about topic{i % 5}") for i in range(40)]
        for i, ack in enumerate(acks[:10]):
            kind = "message.edit" if i % 2 else "message.delete"
            extra = {"body": f"edited {i} topic9"} if i % 2 else {}
            r = await c.request(
                {"type": kind, "room": ack["room"], "message_id": ack["message_id"], **extra}
            )
            assert r["type"] == "ack"
        r = await c.request({"type": "memory.write", "text": "survives a crash"})
        assert r["type"] == "memory.record"
        remembered = r["memory"]

        async def indexed() -> bool:
            hits = (await c.request({"type": "search", "q": "topic9", "limit": 50}))["hits"]
            return len(hits) == 5  # the edited ones; no message said topic9 before

        await until(indexed, "every change to be indexed")
        await c.close()
    finally:
        server.stop(signal.SIGKILL)
    live = SearchStore(tmp_path / FILE_NAME)
    live_docs = live.docs()
    acknowledged = live.memory("acme", remembered["id"])  # committed before the answer
    live.close()
    assert acknowledged is not None and acknowledged["text"] == "survives a crash"
    assert len(live_docs) == 40 - 5
    out = reindex(tmp_path, "--memory")
    assert "entries of" in out
    rebuilt = SearchStore(tmp_path / FILE_NAME)
    try:
        assert rebuilt.docs() == live_docs
        record = rebuilt.memory("acme", remembered["id"])
        assert record is not None and record["text"] == "survives a crash"
    finally:
        rebuilt.close()
    # restarted on the rebuilt index: the record is served, nothing indexed twice
    server = start_server(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN)) as admin:
            r = await admin.get(f"/v1/memory/{remembered['id']}")
            assert r.status_code == 200 and r.json()["text"] == "survives a crash"
            assert len(await search(admin, "topic9", limit=50)) == 5
            # entries 4, 9, ... 39 said topic4: 4 was deleted, 9 edited away
            assert len(await search(admin, "topic4", limit=50)) == 6
    finally:
        assert server.stop() == 0
