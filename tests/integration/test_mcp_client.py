"""Our MCP client against the SDK-built fixture server (examples/mcp/fixture_server.py):
over stdio as a real subprocess and over Streamable HTTP on loopback — listing and
calling, the allowlist, timeouts, the output cap, error results, a server killed in the
middle of a call (a tool error at once, a new session after the backoff), headers read
from a secret file."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from fakes.mcp_fixture import HttpFixture, stdio_table
from nexus.auth import Principal
from nexus.core.agents import AgentConfig
from nexus.extensions.ai.tools import ToolContext, ToolError, ToolRegistry
from nexus.extensions.mcp import connection as connection_module
from nexus.extensions.mcp.config import parse_servers
from nexus.extensions.mcp.metrics import McpMetrics
from nexus.extensions.mcp.pool import ConnectionPool
from nexus.extensions.mcp.runner import ToolRunner
from nexus.extensions.mcp.source import McpToolSource

SECRET = "tok-9f8e7d6c5b4a-never-shown"
BOT = Principal("bot", "acme", frozenset({"agent"}), kind="agent", expires_at=float("inf"))


class Harness:
    def __init__(self, tables: dict[str, dict[str, Any]]) -> None:
        self.pool = ConnectionPool(parse_servers(tables))
        self.metrics = McpMetrics(self.pool.all)
        # No destructive tools here: approvals are tested end to end (test_mcp_agents.py).
        self.runner = ToolRunner(self.pool, None, 1.0, self.metrics)  # type: ignore[arg-type]
        self.registry = ToolRegistry(())
        self.registry.add_source(McpToolSource(self.pool, self.runner))

    def agent(self, **mcp: list[str]) -> AgentConfig:
        return AgentConfig("acme", "bot", mcp={k: tuple(v) for k, v in mcp.items()})

    async def call(self, agent: AgentConfig, name: str, arguments: str) -> tuple[str, bool]:
        turn = self.registry.for_turn(agent, None)  # type: ignore[arg-type]
        ctx = ToolContext(None, BOT, None, None, agent, "m1", "c1")  # type: ignore[arg-type]
        return await self.registry.call(ctx, name, arguments, turn)

    async def run(self, server: str, tool: str, args: dict[str, Any]) -> str:
        ctx = ToolContext(None, BOT, None, None, None, "m1", "c1")  # type: ignore[arg-type]
        return await self.runner.run(ctx, server, tool, args)


@pytest.fixture
async def stdio() -> AsyncIterator[Harness]:
    harness = Harness(
        {"fx": stdio_table(timeout=1, backoff=0.2, backoff_max=0.5, output_max_chars=200)}
    )
    yield harness
    await harness.pool.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Poll ``check`` until it holds (a reconnect after backoff has no event to wait for)."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "did not happen in time"
        await asyncio.sleep(0.1)


async def test_stdio_tools_are_listed_namespaced_with_their_schema(stdio: Harness) -> None:
    agent = stdio.agent(fx=["echo", "add", "not_on_the_server"])
    assert stdio.registry.for_turn(agent, None).specs  # type: ignore[arg-type]
    await stdio.pool.get("fx").client()  # type: ignore[union-attr]
    turn = stdio.registry.for_turn(agent, None)  # type: ignore[arg-type]
    specs = {s.name: s for s in turn.specs}
    assert set(specs) == {"fx__echo", "fx__add"}  # a listed name the server lacks: absent
    assert specs["fx__add"].parameters["properties"]["a"]["type"] == "integer"
    assert specs["fx__add"].parameters["required"] == ["a", "b"]
    assert "Add two integers" in specs["fx__add"].description
    assert await stdio.call(agent, "fx__echo", '{"text": "hello"}') == ("hello", True)
    text, ok = await stdio.call(agent, "fx__add", '{"a": 2, "b": 40}')
    assert ok and '"sum": 42' in text
    assert stdio.metrics.calls[("fx", "echo", "ok")] == 1


async def test_star_offers_every_listed_tool(stdio: Harness) -> None:
    await stdio.pool.get("fx").client()  # type: ignore[union-attr]
    turn = stdio.registry.for_turn(stdio.agent(fx=["*"]), None)  # type: ignore[arg-type]
    assert {s.name for s in turn.specs} >= {"fx__echo", "fx__slow", "fx__delete_item"}


async def test_a_tool_off_the_allowlist_is_neither_offered_nor_run(stdio: Harness) -> None:
    agent = stdio.agent(fx=["echo"])
    await stdio.pool.get("fx").client()  # type: ignore[union-attr]
    turn = stdio.registry.for_turn(agent, None)  # type: ignore[arg-type]
    assert [s.name for s in turn.specs] == ["fx__echo"]
    text, ok = await stdio.call(agent, "fx__pid", "{}")
    assert not ok and text == "error: no tool named fx__pid is available"
    # Another tenant's agent gets nothing from a server reserved to acme.
    reserved = Harness({"fx": stdio_table(tenants=["acme"])})
    other = AgentConfig("globex", "bot", mcp={"fx": ("echo",)})
    assert reserved.registry.for_turn(other, None).specs == ()  # type: ignore[arg-type]
    await reserved.pool.close()


async def test_error_results_timeouts_and_the_output_cap(stdio: Harness) -> None:
    with pytest.raises(ToolError, match="boom"):
        await stdio.run("fx", "fail", {"message": "boom"})
    with pytest.raises(ToolError, match="Unknown tool"):
        await stdio.run("fx", "missing", {})
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"slow on server fx: no answer within 1 s"):
        await stdio.run("fx", "slow", {"seconds": 30})
    assert time.monotonic() - started < 5
    assert await stdio.run("fx", "echo", {"text": "still here"}) == "still here"  # same session
    text = await stdio.run("fx", "big", {"chars": 5000})
    assert len(text) <= 200 and text.endswith("[output cut at 200 characters]")
    outcomes = {k[2] for k in stdio.metrics.calls}
    assert outcomes == {"tool_error", "timeout", "ok"}


async def test_a_server_killed_mid_call_is_a_tool_error_then_it_is_restarted(
    stdio: Harness,
) -> None:
    first = int(await stdio.run("fx", "pid", {}))
    call = asyncio.ensure_future(stdio.run("fx", "slow", {"seconds": 0.9}))
    await asyncio.sleep(0.2)  # the call is in flight (it takes 0.9 s)
    os.kill(first, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(ToolError, match="server fx is unavailable"):
        await call
    assert time.monotonic() - started < 2
    connection = stdio.pool.get("fx")
    assert connection is not None

    async def back() -> bool:
        try:
            return int(await stdio.run("fx", "pid", {})) != first
        except ToolError as exc:
            assert "server fx is unavailable" in str(exc)  # the open circuit, at once
            return False

    await eventually(back)
    assert connection.state == "up" and connection.failures == 0


async def test_a_server_that_dies_idle_is_noticed_and_restarted(
    stdio: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_module, "PROBE_INTERVAL_S", 0.2)
    first = int(await stdio.run("fx", "pid", {}))
    connection = stdio.pool.get("fx")
    assert connection is not None
    await asyncio.sleep(0.3)  # the owner probes with the short interval
    os.kill(first, signal.SIGKILL)

    async def noticed() -> bool:  # by the probe alone: no call is made
        return connection.state == "down"

    await eventually(noticed)
    assert "connection closed" in connection.last_error and connection.tools is not None

    async def back() -> bool:
        try:
            return int(await stdio.run("fx", "pid", {})) != first
        except ToolError:
            return False

    await eventually(back)


async def test_a_command_that_does_not_exist_is_a_tool_error(tmp_path: Path) -> None:
    harness = Harness({"gone": {"transport": "stdio", "command": str(tmp_path / "nope")}})
    started = time.monotonic()
    with pytest.raises(ToolError, match="server gone is unavailable"):
        await harness.run("gone", "echo", {"text": "x"})
    with pytest.raises(ToolError, match="server gone is unavailable"):
        await harness.run("gone", "echo", {"text": "x"})  # backing off: at once
    assert time.monotonic() - started < 5
    await harness.pool.close()


async def test_http_with_a_header_from_a_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "auth"
    secret_file.write_text(f"Bearer {SECRET}\n")
    with HttpFixture(header=f"Authorization=Bearer {SECRET}") as http:
        harness = Harness(
            {
                "web": {
                    "transport": "http",
                    "url": http.url,
                    "headers_files": {"Authorization": str(secret_file)},
                    "timeout": 2,
                },
                "bare": {"transport": "http", "url": http.url, "connect_timeout": 5},
            }
        )
        try:
            agent = harness.agent(web=["echo", "add"])
            await harness.pool.get("web").client()  # type: ignore[union-attr]
            turn = harness.registry.for_turn(agent, None)  # type: ignore[arg-type]
            assert {s.name for s in turn.specs} == {"web__echo", "web__add"}
            assert await harness.call(agent, "web__echo", '{"text": "over http"}') == (
                "over http",
                True,
            )
            # The server echoes what it is sent; a secret value never comes back out.
            assert await harness.run("web", "echo", {"text": f"x {SECRET} y"}) == "x [redacted] y"
            # Without the header the server answers 401: a tool error, not a hang.
            with pytest.raises(ToolError, match="server bare is unavailable"):
                await harness.run("bare", "echo", {"text": "x"})
            assert "Bearer" not in repr(harness.pool.get("web").config)  # type: ignore[union-attr]
        finally:
            await harness.pool.close()


async def test_http_server_killed_then_back_on_its_port() -> None:
    with HttpFixture() as http:
        harness = Harness(
            {"web": {"transport": "http", "url": http.url, "timeout": 2, "backoff": 0.2}}
        )
        try:
            first = await harness.run("web", "pid", {})
            call = asyncio.ensure_future(harness.run("web", "slow", {"seconds": 1.5}))
            await asyncio.sleep(0.3)
            http.kill()
            started = time.monotonic()
            with pytest.raises(ToolError, match=r"unavailable|no answer"):
                await call
            assert time.monotonic() - started < 4
            with pytest.raises(ToolError):
                await harness.run("web", "pid", {})
            http.start()  # the same port

            async def back() -> bool:
                try:
                    return await harness.run("web", "pid", {}) != first
                except ToolError:
                    return False

            await eventually(back)
        finally:
            await harness.pool.close()
