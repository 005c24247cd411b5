"""Runs one MCP tool call for an agent: the approval of a destructive tool, the call with
its timeout, the result flattened to text and capped. Every failure is a ``ToolError``
(the model reads it), never an exception that ends the turn nor a wait without end."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import orjson

from ...core.approvals import Approvals
from ...errors import NexusError
from ..ai.runtime import ARG_MAX_CHARS
from ..ai.tools import ToolContext, ToolError
from .config import ServerConfig
from .connection import CallRefused, CallTimedOut, ServerUnavailable
from .metrics import McpMetrics
from .pool import ConnectionPool

REDACTED = "[redacted]"
SECRET_MIN_CHARS = 4  # shorter values would scrub ordinary words


class ToolRunner:
    def __init__(
        self,
        pool: ConnectionPool,
        approvals: Approvals,
        approval_timeout: float,
        metrics: McpMetrics,
    ) -> None:
        self._pool = pool
        self._approvals = approvals
        self._approval_timeout = approval_timeout
        self._metrics = metrics

    async def run(self, ctx: ToolContext, server: str, tool: str, args: dict[str, Any]) -> str:
        connection = self._pool.get(server)
        if connection is None:
            raise ToolError(f"no MCP server named {server}")
        config = connection.config
        outcome = "unavailable"
        try:
            if tool in config.destructive:
                outcome = "denied"
                await self._approve(ctx, config, tool, args)
            outcome = "unavailable"
            result = await connection.call(tool, args)
            text = _redact(flatten(result, config.output_max_chars), config.secrets)
            if result.is_error:
                outcome = "tool_error"
                raise ToolError(text or f"{tool} failed")
            outcome = "ok"
            return text
        except ServerUnavailable as exc:
            raise ToolError(_redact(str(exc), config.secrets)) from None
        except CallTimedOut as exc:
            outcome = "timeout"
            raise ToolError(f"{tool} on server {server}: {exc}") from None
        except CallRefused as exc:
            outcome = "refused"
            raise ToolError(_redact(f"{tool} on server {server}: {exc}", config.secrets)) from None
        finally:
            self._metrics.calls[(server, tool, outcome)] += 1

    async def _approve(
        self, ctx: ToolContext, config: ServerConfig, tool: str, args: dict[str, Any]
    ) -> None:
        """Ask the room; returns when a member approved, raises ToolError otherwise."""
        fields = {
            "message_id": ctx.message_id,
            "call_id": ctx.call_id,
            "agent": ctx.principal.user_id,
            "server": config.name,
            "tool": tool,
            "arguments": orjson.dumps(args).decode()[:ARG_MAX_CHARS],
        }
        try:
            decision = await self._approvals.ask(
                ctx.principal, ctx.room, fields, self._approval_timeout
            )
        except NexusError as exc:
            raise ToolError(f"could not ask for approval: {exc.message}") from None
        if decision.approved:
            return
        if decision.reason == "expired":
            raise ToolError(
                f"{tool} needs a room member's approval; none came within "
                f"{self._approval_timeout:g} s, so it did not run"
            )
        raise ToolError(f"{decision.by or 'a room member'} denied {tool}; it did not run")


def flatten(result: types.CallToolResult, limit: int) -> str:
    """The result as text for a model: text blocks as they are, other blocks named, the
    structured content as JSON when there is no text; cut at ``limit`` characters."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            parts.append(f"[{block.type}: {block.mime_type}, not shown]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link: {block.uri}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource: {resource.uri}, binary, not shown]")
    text = "\n".join(parts)
    if not text and result.structured_content is not None:
        text = orjson.dumps(result.structured_content).decode()
    if len(text) > limit:
        note = f"\n[output cut at {limit} characters]"
        text = text[: limit - len(note)] + note if limit > 2 * len(note) else text[:limit]
    return text


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if len(secret) >= SECRET_MIN_CHARS and secret in text:
            text = text.replace(secret, REDACTED)
    return text
