"""``nexus chat`` driven headless (Textual's ``run_test``) against a real server: keys in,
lines on screen out."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import Callable

import httpx

from nexus.chat import ChatApp
from nexus.client import NexusClient

from .harness import ServerProcess, module_server, token

chat_server = module_server(ai_providers='{"offline": {"type": "offline", "part_delay": 0.1}}')
ADA = token("ada", roles=("admin", "member"))
BOB = token("bob", roles=("member",))
_rooms = itertools.count()


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def until(pilot: object, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)  # type: ignore[attr-defined]


async def type_line(pilot: object, text: str) -> None:
    for ch in text:
        await pilot.press("space" if ch == " " else ch)  # type: ignore[attr-defined]
    await pilot.press("enter")  # type: ignore[attr-defined]


async def test_chat_messages_agent_reply_typing_commands(chat_server: ServerProcess) -> None:
    room = f"tui-{next(_rooms)}"
    async with httpx.AsyncClient(base_url=chat_server.api, headers=auth(ADA), timeout=10) as http:
        assert (await http.post("/v1/rooms", json={"name": room})).status_code == 201
        r = await http.post("/v1/agents", json={"name": "tui-helper"})
        assert r.status_code in (201, 409), r.text
        r = await http.put(f"/v1/rooms/{room}/members/tui-helper", json={"role": "member"})
        assert r.status_code == 200
        for i in range(60):  # scroll-back: more than the first page
            r = await http.post(f"/v1/rooms/{room}/messages", json={"body": f"old {i}"})
            assert r.status_code == 201
    app = ChatApp(NexusClient(chat_server.url, ADA), [room])
    async with app.run_test(size=(110, 32)) as pilot:
        await until(pilot, lambda: any("old 59" in line for line in app.shown()))
        assert not any(line.endswith("old 0") for line in app.shown())  # older: not yet
        await pilot.press("pageup")
        await until(pilot, lambda: any(line.endswith("ada: old 0") for line in app.shown()))
        await type_line(pilot, "hello from the terminal")
        await until(pilot, lambda: app.shown()[-1].endswith("ada: hello from the terminal"))
        async with NexusClient(chat_server.url, BOB) as bob:
            await bob.join(room)
            await until(pilot, lambda: "bob" in str(app.query_one("#members").render()))
            await bob.typing(room)
            await until(pilot, lambda: "bob is typing" in str(app.query_one("#typing").render()))
            await bob.send(room, "hi ada")
            await until(pilot, lambda: app.shown()[-1].endswith("bob: hi ada"))
        await type_line(pilot, "@tui-helper what did bob say?")
        # the reply streams into one line, in place, and ends without the cursor mark
        await until(pilot, lambda: any(line.endswith("▌") for line in app.shown()))
        await until(
            pilot,
            lambda: any("tui-helper: " in line and not line.endswith("▌") for line in app.shown()),
            timeout=20,
        )
        replies = [line for line in app.shown() if "tui-helper: " in line]
        assert len(replies) == 1
        await type_line(pilot, "/search terminal")
        await until(pilot, lambda: any("search 'terminal'" in line for line in app.shown()))
        await type_line(pilot, "/join tui-elsewhere")
        await until(pilot, lambda: app.current == "tui-elsewhere")
        await type_line(pilot, "/leave")
        await until(pilot, lambda: app.current == room)
        await type_line(pilot, "/task write the release notes")
        await until(pilot, lambda: any("created task" in line for line in app.shown()))


def test_nexus_chat_without_a_token_says_how_to_get_one(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    out = subprocess.run(
        [sys.executable, "-m", "nexus", "chat", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2 and "no token" in out.stderr
