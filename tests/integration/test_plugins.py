"""Wasm plugins in a real server: installs over the HTTP API and from a folder, the
example plugins (built from their C and WAT sources), limits that hold while the server
keeps serving, failure policies, quarantine, capability denial, state across a restart,
hot reload under traffic, and on_event resuming after kill -9."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import wasmtime

from .harness import Client, ServerProcess, start_server, token

ROOT = Path(__file__).resolve().parents[2]
ADMIN = token("ana", roles=("admin", "member"))
BOT = "plugin:echo-bot"
HEADERS = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every example plugin, built from source by examples/plugins/build.py."""
    spec = importlib.util.spec_from_file_location(
        "nexus_plugin_examples", ROOT / "examples/plugins/build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out: dict[str, Path] = module.build(tmp_path_factory.mktemp("plugins"))
    return out


def body_of(folder: Path, **manifest_changes: Any) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(manifest_changes)
    if manifest_changes:
        manifest.pop("digest", None)
    wasm = (folder / manifest["module"]).read_bytes()
    return {"manifest": manifest, "module": base64.b64encode(wasm).decode()}


def wat_body(name: str, code: str, **manifest: Any) -> dict[str, Any]:
    wasm = bytes(wasmtime.wat2wasm(code))
    fields = {"name": name, "version": "1", "hooks": ["on_message"], **manifest}
    return {"manifest": fields, "module": base64.b64encode(wasm).decode()}


async def put(srv: ServerProcess, name: str, body: dict[str, Any], headers: Any = None) -> Any:
    async with httpx.AsyncClient() as http:
        return await http.put(
            f"{srv.api}/v1/plugins/{name}", json=body, headers=headers or HEADERS, timeout=30
        )


async def api(srv: ServerProcess, method: str, path: str) -> Any:
    async with httpx.AsyncClient() as http:
        return await http.request(method, f"{srv.api}{path}", headers=HEADERS, timeout=30)


async def metrics(srv: ServerProcess) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{srv.api}/metrics")).text
    return {
        name: float(value)
        for name, value in (
            line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#"
        )
    }


async def until(check: Any, what: str, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def history(client: Client, room: str) -> list[dict[str, Any]]:
    """The whole room, oldest first (pages of 100, the server's largest)."""
    out: list[dict[str, Any]] = []
    before = None
    while True:
        ask: dict[str, Any] = {"type": "history", "room": room, "limit": 100}
        if before is not None:
            ask["before"] = before
        page = (await client.request(ask))["messages"]
        out[:0] = page
        if len(page) < 100:
            return out
        before = page[0]["seq"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path / "data")
    yield srv
    assert srv.stop() == 0, "".join(srv.output)


PRELUDE = """
  (memory (export "memory") 1)
  (func (export "nexus_input") (param i32) (result i32) (i32.const 1024))
"""
LOOP = f"""(module {PRELUDE}
  (func (export "on_message") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0)))"""
TRAP = f"""(module {PRELUDE}
  (func (export "on_message") (param i32 i32) (result i64) unreachable))"""


# -- installs and their errors ----------------------------------------------------------------


async def test_install_errors_are_clear(server: ServerProcess, built: dict[str, Path]) -> None:
    good = body_of(built["redactor"])
    unpinned = {k: v for k, v in good["manifest"].items() if k != "digest"}
    junk = base64.b64encode(b"\0asm junk!").decode()
    cases = [
        ({**good, "module": "not base64!!"}, 400, "not valid base64"),
        ({"manifest": unpinned, "module": junk}, 400, "not a valid WebAssembly module"),
        ({**good, "manifest": {**good["manifest"], "hoks": []}}, 400, "hoks: Extra inputs"),
        ({**good, "manifest": {**good["manifest"], "name": "other"}}, 400, "the path"),
        (
            {**good, "manifest": {**good["manifest"], "limits": {"fuel": 10**12}}},
            400,
            "over this server's",
        ),
        (
            {**good, "manifest": {**good["manifest"], "digest": "sha256:" + "0" * 64}},
            400,
            "digest",
        ),
    ]
    for body, status, text in cases:
        answer = await put(server, "redactor", body)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["code"] == "bad_request"
        assert text in answer.json()["error"]["message"], answer.text
    member = {"Authorization": f"Bearer {token('bob')}"}
    assert (await put(server, "redactor", good, member)).status_code == 403
    assert (await api(server, "GET", "/v1/plugins/nope")).status_code == 404
    forbidden = body_of(built["misbehaving-forbidden-import"])
    answer = await put(server, forbidden["manifest"]["name"], forbidden)
    assert answer.status_code == 400 and "capability 'post'" in answer.text, answer.text
    assert (await api(server, "GET", "/v1/plugins")).json() == {"plugins": []}
    schema = (await api(server, "GET", "/v1/plugins/schema")).json()
    assert schema["additionalProperties"] is False and "hooks" in schema["required"]


# -- the examples -----------------------------------------------------------------------------


async def test_redactor_masks_before_the_message_is_stored(
    server: ServerProcess, built: dict[str, Path]
) -> None:
    body = body_of(built["redactor"], config={"words": ["idiot", "darn"]})
    answer = await put(server, "redactor", body)
    assert answer.status_code == 201, answer.text
    ana = await Client.connect(server.url, ADMIN)
    await ana.join("general")
    await ana.say("general", "call me at 5551234567 or ana@example.com, you idiot")
    await ana.say("general", "nothing to hide here")
    await ana.say("general", 'quotes \\" and \u00e9\u00e8 and \U0001f600 stay, darn')
    bodies = [m["body"] for m in await history(ana, "general")]
    assert "5551234567" not in bodies[0] and "ana@example.com" not in bodies[0]
    assert "idiot" not in bodies[0] and "call me at" in bodies[0]
    assert bodies[1] == "nothing to hide here"
    assert "darn" not in bodies[2] and '\\" and \u00e9\u00e8 and \U0001f600 stay' in bodies[2]
    # An edit is checked like a message: it cannot bring back what was masked.
    clean = (await history(ana, "general"))[1]
    edited = await ana.request(
        {
            "type": "message.edit",
            "room": "general",
            "message_id": clean["id"],
            "body": "reach me at bob@example.org",
        }
    )
    assert edited["type"] == "ack", edited
    assert "bob@example.org" not in (await history(ana, "general"))[1]["body"]
    view = (await api(server, "GET", "/v1/plugins/redactor")).json()
    assert view["calls"]["on_message"] == 4 and view["faults"] == {}
    await ana.close()


async def test_mention_guard_denies(server: ServerProcess, built: dict[str, Path]) -> None:
    folder = built["mention-guard"]
    body = body_of(folder, config={"max_mentions": 2})
    assert (await put(server, body["manifest"]["name"], body)).status_code == 201
    ana = await Client.connect(server.url, ADMIN)
    await ana.join("general")
    ok = await ana.say("general", "hi @bob and @cy")
    assert ok["type"] == "ack"
    denied = await ana.request({"type": "message.send", "room": "general", "body": "@a @b @c @d"})
    assert (denied["type"], denied["code"]) == ("error", "forbidden"), denied
    assert "mention" in denied["message"]
    assert [m["body"] for m in await history(ana, "general")] == ["hi @bob and @cy"]
    await ana.close()


async def test_poll_state_survives_a_restart(tmp_path: Path, built: dict[str, Path]) -> None:
    srv = start_server(tmp_path / "data")
    try:
        assert (await put(srv, "poll", body_of(built["poll"]))).status_code == 201
        ana = await Client.connect(srv.url, ADMIN)
        await ana.join("general")
        await ana.say("general", "/poll new Lunch? | pizza | sushi")
        created = await ana.next("message")
        while created["sender"] != "plugin:poll":
            created = await ana.next("message")
        assert "pizza" in created["body"] and created["sender_kind"] == "plugin"
        await ana.say("general", "/poll vote 1 2")
        voted = await ana.next("message")
        while voted["sender"] != "plugin:poll" or voted["seq"] <= created["seq"]:
            voted = await ana.next("message")
        await ana.close()
    finally:
        assert srv.stop() == 0, "".join(srv.output)
    srv = start_server(tmp_path / "data")
    try:
        ana = await Client.connect(srv.url, ADMIN)
        await ana.join("general")
        sent = await ana.say("general", "/poll show 1")

        async def shown() -> bool:
            return any(
                m["sender"] == "plugin:poll" and m["seq"] > sent["seq"]
                for m in await history(ana, "general")
            )

        await until(shown, "the poll's answer after the restart")
        answer = next(m for m in await history(ana, "general") if m["seq"] > sent["seq"])["body"]
        assert "sushi" in answer and "1" in answer, answer  # the vote was kept
        await ana.close()
    finally:
        assert srv.stop() == 0, "".join(srv.output)


async def test_echo_bot_resumes_after_kill_9_without_doubles(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    srv = start_server(tmp_path / "data")
    try:
        assert (await put(srv, "echo-bot", body_of(built["echo-bot"]))).status_code == 201
        ana = await Client.connect(srv.url, ADMIN)
        await ana.join("general")
        for i in range(30):
            await ana.say("general", f"echo n{i}")
    finally:
        srv.stop(signal.SIGKILL)  # some echoes are out, others not, cursors maybe behind
    await ana.close()
    srv = start_server(tmp_path / "data")
    try:
        ana = await Client.connect(srv.url, ADMIN)
        await ana.join("general")

        async def all_echoed() -> bool:
            echoes = [m for m in await history(ana, "general") if m["sender"] == BOT]
            return len(echoes) >= 30

        await until(all_echoed, "an echo of every message", timeout=30)
        await asyncio.sleep(0.5)  # a doubled echo would land meanwhile
        echoes = [m["body"] for m in await history(ana, "general") if m["sender"] == BOT]
        assert sorted(echoes) == sorted(f"echo: n{i}" for i in range(30))
        await ana.close()
    finally:
        assert srv.stop() == 0, "".join(srv.output)


async def test_hot_reload_under_traffic_loses_and_doubles_nothing(
    server: ServerProcess, built: dict[str, Path]
) -> None:
    body = body_of(built["echo-bot"])
    assert (await put(server, "echo-bot", body)).status_code == 201
    ana = await Client.connect(server.url, ADMIN)
    await ana.join("general")
    count = 60

    async def traffic() -> None:
        for i in range(count):
            await ana.say("general", f"echo t{i}")

    async def reloads() -> None:
        for n in range(6):
            await asyncio.sleep(0.02)
            changed = {**body, "manifest": {**body["manifest"], "version": f"1.{n}"}}
            assert (await put(server, "echo-bot", changed)).status_code == 200
            assert (await api(server, "POST", "/v1/plugins/echo-bot/reload")).status_code == 200

    await asyncio.gather(traffic(), reloads())

    async def echoed() -> bool:
        return len([m for m in await history(ana, "general") if m["sender"] == BOT]) >= count

    await until(echoed, "every echo")
    await asyncio.sleep(0.5)
    echoes = [m["body"] for m in await history(ana, "general") if m["sender"] == BOT]
    assert sorted(echoes) == sorted(f"echo: t{i}" for i in range(count))
    await ana.close()


# -- limits, policies, quarantine -------------------------------------------------------------


async def test_a_looping_plugin_is_stopped_and_quarantined_while_others_are_served(
    server: ServerProcess,
) -> None:
    # Fuel enough for ~100 ms of looping: the 20 ms deadline stops each call first.
    limits = {"deadline_ms": 20, "fuel": 100_000_000}
    body = wat_body("spin", LOOP, rooms=["spin-*"], limits=limits)
    assert (await put(server, "spin", body)).status_code == 201
    ana = await Client.connect(server.url, ADMIN)
    bob = await Client.connect(server.url, token("bob"))
    await ana.join("spin-room")
    await bob.join("calm")
    for i in range(5):
        # Each call is cut at its deadline; fail-open: the message is stored as sent.
        ack = await ana.say("spin-room", f"m{i}")
        assert ack["type"] == "ack"
        assert (await bob.say("calm", f"still here {i}"))["type"] == "ack"
    figures = await metrics(server)
    assert figures['nexus_plugin_quarantined{plugin="spin",tenant="acme"}'] == 1
    stopped = [
        figures.get(f'nexus_plugin_faults_total{{kind="{kind}",plugin="spin",tenant="acme"}}', 0)
        for kind in ("deadline", "fuel")
    ]
    assert sum(stopped) == 5 and stopped[0] >= 1, stopped
    # Quarantined: no longer called, writes pass.
    assert (await ana.say("spin-room", "after"))["type"] == "ack"
    view = (await api(server, "GET", "/v1/plugins/spin")).json()
    assert view["quarantined"] and view["calls"].get("on_message", 0) == 0
    await ana.join("plugin-audit", since=0)
    notices = [m for m in await history(ana, "plugin-audit") if m["type"] == "plugin.quarantined"]
    assert notices and notices[0]["plugin"] == "spin" and notices[0]["faults"] == 5
    reloaded = (await api(server, "POST", "/v1/plugins/spin/reload")).json()
    assert not reloaded["quarantined"]
    figures = await metrics(server)
    assert figures['nexus_plugin_quarantined{plugin="spin",tenant="acme"}'] == 0
    await ana.close()
    await bob.close()


async def test_fail_closed_refuses_writes_while_the_plugin_faults(server: ServerProcess) -> None:
    body = wat_body("strict", TRAP, rooms=["strict"], failure_policy="closed")
    assert (await put(server, "strict", body)).status_code == 201
    ana = await Client.connect(server.url, ADMIN)
    await ana.join("strict")
    refused = await ana.request({"type": "message.send", "room": "strict", "body": "x"})
    assert (refused["type"], refused["code"]) == ("error", "unavailable"), refused
    assert "strict" in refused["message"]
    disabled = (await api(server, "POST", "/v1/plugins/strict/disable")).json()
    assert disabled["enabled"] is False
    assert (await ana.say("strict", "now it passes"))["type"] == "ack"
    await ana.close()


@pytest.mark.parametrize("mode", ["loop", "membomb", "trap", "huge", "badjson", "badptr"])
async def test_each_misbehaving_plugin_is_contained(
    server: ServerProcess, built: dict[str, Path], mode: str
) -> None:
    body = body_of(built[f"misbehaving-{mode}"])
    name = body["manifest"]["name"]
    assert (await put(server, name, body)).status_code == 201, "install"
    ana = await Client.connect(server.url, ADMIN)
    room = f"bad-{mode}"
    await ana.join(room)
    ack = await ana.say(room, "hello")
    assert ack["type"] == "ack"  # fail-open: stored as sent
    assert [m["body"] for m in await history(ana, room)] == ["hello"]
    view = (await api(server, "GET", f"/v1/plugins/{name}")).json()
    # The memory bomb is no fault: memory.grow fails at the cap inside the guest, which
    # then answers nothing (tests/unit/test_plugin_instance.py checks the cap itself).
    assert sum(view["faults"].values()) == (0 if mode == "membomb" else 1), view
    assert (await api(server, "GET", "/healthz")).status_code in (200, 404)
    await ana.close()


TICKER = f"""(module
  (import "nexus" "post" (func $post (param i32 i32) (result i32)))
  {PRELUDE}
  (data (i32.const 2048) "{{\\"room\\":\\"ticks\\",\\"body\\":\\"tick\\"}}")
  (func (export "on_tick") (param i32 i32) (result i64)
    (drop (call $post (i32.const 2048) (i32.const 30)))
    (i64.const 0)))"""


async def test_on_tick_runs_on_its_period_and_posts(server: ServerProcess) -> None:
    body = wat_body("ticker", TICKER, hooks=["on_tick"], tick_seconds=1, capabilities=["post"])
    assert (await put(server, "ticker", body)).status_code == 201
    ana = await Client.connect(server.url, ADMIN)
    await ana.join("ticks")
    tick = await ana.next("message", timeout=5)
    assert (tick["sender"], tick["sender_kind"], tick["body"]) == (
        "plugin:ticker",
        "plugin",
        "tick",
    )
    assert (await api(server, "POST", "/v1/plugins/ticker/disable")).json()["enabled"] is False
    await asyncio.sleep(1.5)
    count = len(await history(ana, "ticks"))
    await asyncio.sleep(1.5)
    assert len(await history(ana, "ticks")) == count  # disabled: no more ticks
    await ana.close()


# -- folder installs --------------------------------------------------------------------------


async def test_folder_plugins_run_for_every_tenant(tmp_path: Path, built: dict[str, Path]) -> None:
    folder = tmp_path / "plugins"
    shutil.copytree(built["redactor"], folder / "redactor")
    manifest = json.loads((folder / "redactor/manifest.json").read_text())
    manifest["config"] = {"words": ["darn"]}
    manifest.pop("digest", None)
    (folder / "redactor/manifest.json").write_text(json.dumps(manifest))
    srv = start_server(tmp_path / "data", plugins_dir=str(folder))
    try:
        for tenant in ("acme", "globex"):
            user = await Client.connect(srv.url, token("zoe", tenant=tenant))
            await user.join("general")
            await user.say("general", "darn it")
            assert "darn" not in (await history(user, "general"))[0]["body"]
            await user.close()
        listed = (await api(srv, "GET", "/v1/plugins")).json()["plugins"]
        assert [(p["name"], p["scope"], p["source"]) for p in listed] == [
            ("redactor", "all-tenants", "folder")
        ]
        taken = await put(srv, "redactor", body_of(built["redactor"]))
        assert taken.status_code == 409
    finally:
        assert srv.stop() == 0, "".join(srv.output)
