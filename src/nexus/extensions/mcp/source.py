"""The MCP tools of an agent's turn: for each server in the agent's ``mcp`` allowlist, the
listed tools the server has, named ``<server>__<tool>``.

A name follows the providers' rule ``[a-zA-Z0-9_-]{1,64}``: other characters of a
server's tool name become ``_``, and a tool whose name is still too long (or collides
with another after that) is not offered. The server's JSON schema is passed through.
Before a server was ever reached its listing is unknown: the allowlisted names are
offered with an open schema, and a call says whether the server is there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from ...core.agents import AgentConfig
from ...core.rooms import Room
from ..ai.parts import ToolSpec
from ..ai.tools import Run, Tool, ToolContext
from .connection import RemoteTool
from .pool import ConnectionPool
from .runner import ToolRunner

log = logging.getLogger(__name__)

SEPARATOR = "__"
NAME_MAX = 64
ALL = "*"  # an allowlist of every tool the server lists
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
DESCRIPTION_MAX = 1024
OPEN_SCHEMA: dict[str, Any] = {"type": "object"}


def tool_name(server: str, tool: str) -> str | None:
    """The name the model sees for ``tool`` of ``server``; None when it cannot fit."""
    name = f"{server}{SEPARATOR}{_UNSAFE.sub('_', tool)}"
    return name if len(name) <= NAME_MAX else None


class McpToolSource:
    def __init__(self, pool: ConnectionPool, runner: ToolRunner) -> None:
        self._pool = pool
        self._runner = runner

    def tools_for(self, agent: AgentConfig, room: Room) -> Sequence[Tool]:
        tools: dict[str, Tool] = {}
        for server, allowed in agent.mcp.items():
            connection = self._pool.get(server)
            if connection is None or not connection.config.allows(agent.tenant):
                continue  # the operator removed it, or took it from this tenant
            connection.warm()  # a server first needed now is being reached for the next turn
            listed = connection.tools
            if listed is None:
                offered = [RemoteTool(n, "", OPEN_SCHEMA) for n in allowed if n != ALL]
            elif ALL in allowed:
                offered = list(listed.values())
            else:
                offered = [listed[n] for n in allowed if n in listed]
            for remote in offered:
                name = tool_name(server, remote.name)
                if name is None or name in tools:
                    log.debug(
                        "MCP tool %s of %s is not offered: its name does not fit",
                        remote.name,
                        server,
                    )
                    continue
                tools[name] = Tool(
                    ToolSpec(name, self._describe(server, remote), remote.input_schema),
                    self._run(server, remote.name),
                )
        return list(tools.values())

    def _describe(self, server: str, remote: RemoteTool) -> str:
        connection = self._pool.get(server)
        text = remote.description or f"Tool {remote.name} of MCP server {server}."
        if connection is not None and remote.name in connection.config.destructive:
            text += " (Runs only after a room member approves it.)"
        return text[:DESCRIPTION_MAX]

    def _run(self, server: str, tool: str) -> Run:
        async def run(ctx: ToolContext, args: dict[str, Any]) -> str:
            return await self._runner.run(ctx, server, tool, args)

        return run
