"""Nexus as an MCP server at ``/mcp`` on the HTTP port (Streamable HTTP).

Built on the official SDK's low-level ``Server`` and its ``StreamableHTTPSessionManager``,
which speak both the stateless 2026-07-28 revision (one POST per request, chosen by the
``MCP-Protocol-Version`` header) and the 2025-11-25 handshake revision (stateful
sessions, ``Mcp-Session-Id``). They run inside our FastAPI app and event loop, behind the
request guard (bearer JWT, body cap, per-user rate limit) — decision 0010 says why not
the SDK's own Starlette app.

Every message acts as the verified principal and is logged (method, tool or resource,
tenant, user, outcome, milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    GetPromptRequestParams,
    GetPromptResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    TextContent,
    TextResourceContents,
    Tool,
    ToolAnnotations,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.types import Receive, Scope, Send

from ... import __version__
from ...errors import NexusError, Unavailable
from ..deps import ApiContext
from ..guard import PRINCIPAL_KEY, send_error
from . import prompts, resources, tools
from .identity import principal_of, session_user
from .watch import RoomWatch, Tapper

log = logging.getLogger("nexus.mcp")

PATH = "/mcp"
INSTRUCTIONS = (
    "Nexus rooms: people and AI agents chatting, every entry sequenced. Read a room with "
    "read_history or the nexus://rooms/{room}/messages resource (after_seq to resume); post "
    "with post_message; tasks, search and memory tools act as you, with your permissions."
)


def _error_result(exc: NexusError) -> CallToolResult:
    body = {"error": {"code": exc.code, "message": exc.message}}
    return CallToolResult(
        content=[TextContent(type="text", text=f"{exc.code}: {exc.message}")],
        structured_content=body,
        is_error=True,
    )


class McpServer:
    """The ``/mcp`` endpoint (an ASGI app mounted as a route) and its lifecycle."""

    def __init__(self, api: ApiContext, tap: Tapper, *, session_idle_timeout: float) -> None:
        self.api = api
        self.watch = RoomWatch(api, tap)
        self.server: Server[Any] = Server(
            "nexus",
            version=__version__,
            title="Nexus",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
            on_subscribe_resource=self.watch.subscribe,
            on_unsubscribe_resource=self.watch.unsubscribe,
            on_subscriptions_listen=self.watch.listen,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
        )
        self.server.middleware.append(self._audit)
        self._tools = self._describe_tools()  # the same for everyone: built once
        self.manager = StreamableHTTPSessionManager(
            self.server,
            stateless=False,  # 2025-11-25 sessions carry resources/subscribe notifications
            session_idle_timeout=session_idle_timeout,
            max_request_body_size=api.settings.http_max_body_bytes,
        )
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.running = False
        self.requests: Counter[tuple[str, str]] = Counter()  # (method, outcome)

    # -- lifecycle: the session manager's task group lives in one task of its own -------
    async def start(self) -> None:
        ready = asyncio.Event()

        async def run() -> None:
            async with self.manager.run():
                self.running = True
                ready.set()
                await self._stop.wait()
                self.running = False
                self.watch.close()

        self._task = asyncio.get_running_loop().create_task(run(), name="mcp-sessions")
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            waiter.cancel()
            self._task.result()  # raises what stopped it

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        if not self._task.done():
            self._task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: the guard has verified the caller; the SDK checks a session's owner."""
        if not self.running:  # starting or stopping
            await send_error(send, Unavailable("the MCP endpoint is not running"))
            return
        who = scope.get("state", {}).get(PRINCIPAL_KEY)
        if who is not None:
            scope["user"] = session_user(who)
            self.api.directory.note(who)
        await self.manager.handle_request(scope, receive, send)

    # -- every message: who, what, outcome ------------------------------------------
    async def _audit(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        started = time.perf_counter()
        scope = getattr(ctx.request, "scope", None) or {}
        who = scope.get("state", {}).get(PRINCIPAL_KEY)
        name = ctx.params.get("name") or ctx.params.get("uri") if ctx.params else None
        outcome = "ok"
        try:
            result = await call_next(ctx)
            if isinstance(result, dict) and result.get("isError"):  # the wire form
                outcome = "tool_error"
            return result
        except MCPError as exc:
            outcome = f"error {exc.error.code}"
            raise
        except Exception as exc:
            outcome = f"error {type(exc).__name__}"
            raise
        finally:
            if ctx.request_id is not None:
                # Labels from a known set: a client's made-up method is "other".
                method = ctx.method if ctx.method in self.server._request_handlers else "other"
                self.requests[(method, outcome.partition(" ")[0])] += 1
                log.info(
                    "mcp %s%s by %s/%s (%s): %s in %.1f ms",
                    ctx.method,
                    f" {str(name)[:200]}" if name else "",
                    getattr(who, "tenant", "?"),
                    getattr(who, "user_id", "?"),
                    ctx.protocol_version,
                    outcome,
                    (time.perf_counter() - started) * 1000,
                )

    def collect(self) -> Iterator[object]:
        requests = CounterMetricFamily(
            "nexus_mcp_requests",
            "MCP requests at /mcp by method and outcome (ok, tool_error, error)",
            labels=["method", "outcome"],
        )
        for (method, outcome), n in sorted(self.requests.items()):
            requests.add_metric([method, outcome], n)
        yield requests
        streams, subscriptions = self.watch.counts()
        watching = GaugeMetricFamily(
            "nexus_mcp_subscriptions",
            "Open MCP room subscriptions: listen streams and 2025-11-25 resources/subscribe",
            labels=["kind"],
        )
        watching.add_metric(["listen"], streams)
        watching.add_metric(["subscribe"], subscriptions)
        yield watching

    # -- tools ---------------------------------------------------------------------
    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        principal_of(ctx.request)
        return ListToolsResult(tools=self._tools)

    @staticmethod
    def _describe_tools() -> list[Tool]:
        return [
            Tool(
                name=t.name,
                title=t.title,
                description=t.description,
                input_schema=t.input_schema(),
                annotations=ToolAnnotations(
                    read_only_hint=t.read_only,
                    destructive_hint=False,
                    open_world_hint=False,
                ),
            )
            for t in tools.TOOLS
        ]

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams
    ) -> CallToolResult:
        who = principal_of(ctx.request)
        tool = tools.BY_NAME.get(params.name)
        if tool is None:
            raise MCPError(INVALID_PARAMS, f"no tool named {params.name[:100]}")
        try:
            args = tools.parse_args(tool, params.arguments)
            result = await tool.run(self.api, who, args)
        except NexusError as exc:
            return _error_result(exc)
        return CallToolResult(
            content=[TextContent(type="text", text=orjson.dumps(result).decode())],
            structured_content=result,
        )

    # -- resources -------------------------------------------------------------------
    async def _list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        who = principal_of(ctx.request)
        listed = [
            Resource(
                uri="nexus://rooms",
                name="rooms",
                description="The rooms you may see",
                mime_type="application/json",
            ),
            Resource(
                uri="nexus://tasks",
                name="tasks",
                description="The tasks you may see",
                mime_type="application/json",
            ),
        ]
        for room in resources.visible_rooms(self.api, who, resources.ROOMS_LISTED):
            listed.append(
                Resource(
                    uri=resources.messages_uri(room.name),
                    name=f"{room.name}/messages",
                    title=f"#{room.name}",
                    description=str(room.meta.get("topic") or f"Messages of {room.name}"),
                    mime_type="application/json",
                )
            )
        return ListResourcesResult(resources=listed)

    async def _list_templates(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListResourceTemplatesResult:
        principal_of(ctx.request)
        return ListResourceTemplatesResult(
            resource_templates=[
                ResourceTemplate(
                    uri_template=t, name=n, description=d, mime_type="application/json"
                )
                for t, n, d in resources.TEMPLATES
            ]
        )

    async def _read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: ReadResourceRequestParams
    ) -> ReadResourceResult:
        who = principal_of(ctx.request)
        uri = str(params.uri)
        try:
            document = resources.read(self.api, who, uri)
        except NexusError as exc:
            # Not found and not visible are one answer: a room's existence does not leak.
            raise MCPError(INVALID_PARAMS, f"{exc.code}: {exc.message}") from None
        return ReadResourceResult(
            contents=[
                TextResourceContents(
                    uri=uri, mime_type="application/json", text=orjson.dumps(document).decode()
                )
            ]
        )

    # -- prompts: the skills ---------------------------------------------------------
    async def _list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListPromptsResult:
        return prompts.list_prompts(self.api, principal_of(ctx.request))

    async def _get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: GetPromptRequestParams
    ) -> GetPromptResult:
        who = principal_of(ctx.request)
        try:
            return prompts.get_prompt(self.api, who, params.name, params.arguments)
        except NexusError as exc:
            raise MCPError(INVALID_PARAMS, f"{exc.code}: {exc.message}") from None
