"""One MCP server's client session: opened on first need, shared by every agent that may
use the server, restarted after a failure with jittered exponential backoff.

The session lives in one owner task (the SDK's transports are anyio context managers:
entered and left in the same task); calls from turns go through it concurrently. While
the server is down the circuit is open: a call fails at once with ``ServerUnavailable``
until the backoff has passed, then the next need starts one reconnect. The owner lists
the tools again now and then, so a server that died between calls is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from .config import ServerConfig

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 15.0  # an open session's tools are listed again this often
LIST_PAGES_MAX = 20  # tools/list pages read (a server that pages forever is cut off)
CLOSE_TIMEOUT_S = 8.0  # the SDK gives a stdio server 2 s, then SIGTERM, then SIGKILL


class ServerUnavailable(Exception):
    """The server cannot be reached now (not started, died, or backing off)."""


class CallTimedOut(Exception):
    """The server did not answer a call in time."""


class CallRefused(Exception):
    """The server answered a call with an MCP error (e.g. invalid arguments)."""


@dataclass(frozen=True, slots=True)
class RemoteTool:
    """A tool as the server lists it."""

    name: str
    description: str
    input_schema: dict[str, Any]


class ServerConnection:
    def __init__(
        self,
        config: ServerConfig,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.state = "idle"  # idle, connecting, up, down, closed
        self.tools: dict[str, RemoteTool] | None = None  # the last listing (kept while down)
        self.failures = 0  # in a row; reset by a session that came up
        self.last_error = ""
        self.retry_at = 0.0  # monotonic time before which no reconnect is tried
        self._monotonic = monotonic
        self._jitter = jitter
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()  # the current attempt came up or failed
        self._broken = asyncio.Event()  # the owner should leave the session
        self._wake = asyncio.Event()  # the owner should look now (broken, list changed)

    # -- use ------------------------------------------------------------------------
    def warm(self) -> None:
        """Start connecting if not up, not connecting and not backing off (never waits)."""
        if self.state in ("connecting", "up", "closed") or self._monotonic() < self.retry_at:
            return
        self.state = "connecting"
        self._settled = asyncio.Event()
        self._broken = asyncio.Event()
        self._wake = asyncio.Event()
        self._owner = asyncio.get_running_loop().create_task(
            self._own(), name=f"mcp server {self.config.name}"
        )

    async def client(self) -> Client:
        """The live session, connecting first if needed; ServerUnavailable otherwise."""
        self.warm()
        if self.state == "connecting":
            # asyncio.timeout, not wait_for, here and below: wait_for (Python 3.11) can
            # swallow the cancel of a turn that comes as the awaited event does.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.connect_timeout + 1):
                    await self._settled.wait()
        if self.state != "up" or self._client is None:
            raise ServerUnavailable(self._why())
        return self._client

    async def call(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """Call tool ``name``. Raises ServerUnavailable (down, or died during the call),
        CallTimedOut (no answer within the server's timeout) or CallRefused."""
        client = await self.client()
        timeout = self.config.timeout
        try:
            # The SDK's timeout answers REQUEST_TIMEOUT; ours bounds anything beyond it.
            async with asyncio.timeout(timeout + 1):
                return await client.call_tool(name, arguments, read_timeout_seconds=timeout)
        except TimeoutError:
            raise CallTimedOut(f"no answer within {timeout:g} s") from None
        except MCPError as exc:
            if exc.code == types.REQUEST_TIMEOUT:
                raise CallTimedOut(f"no answer within {timeout:g} s") from None
            if exc.code == types.CONNECTION_CLOSED:
                self._fail(client, "the connection closed")
                raise ServerUnavailable(self._why()) from None
            raise CallRefused(exc.error.message or f"MCP error {exc.code}") from None
        except ValidationError:
            raise CallRefused("the server's answer is not a valid tool result") from None
        except Exception as exc:  # the transport failed (a reset, a broken stream...)
            self._fail(client, f"{exc.__class__.__name__}: {exc}"[:200])
            raise ServerUnavailable(self._why()) from None

    async def close(self) -> None:
        self.state = "closed"
        self._broken.set()
        self._wake.set()
        owner = self._owner
        if owner is not None and not owner.done():
            await asyncio.wait({owner}, timeout=CLOSE_TIMEOUT_S)
            owner.cancel()  # no-op if it ended

    # -- the owner task ---------------------------------------------------------------
    async def _own(self) -> None:
        error = "closed"
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await self._new_client(stack)
                async with asyncio.timeout(self.config.connect_timeout):
                    await stack.enter_async_context(client)
                    self.tools = await self._list(client)
                self._client, self.state = client, "up"
                self.failures, self.last_error = 0, ""
                self._settled.set()
                log.info("MCP server %s is up (%d tools)", self.config.name, len(self.tools))
                error = await self._serve(client)
        except TimeoutError:
            error = f"did not start within {self.config.connect_timeout:g} s"
        except asyncio.CancelledError:
            error = "closed"
        except BaseException as exc:  # an ExceptionGroup from the SDK's task groups, OSError...
            error = _describe(exc)
        finally:
            self._client = None
            if self.state != "closed":
                self._down(error)
            self._settled.set()

    async def _serve(self, client: Client) -> str:
        """Keep the session until it breaks or is closed; the reason it ended.

        Every PROBE_INTERVAL_S (or at once after a ``tools/list_changed``) the tools are
        listed again: that keeps the listing fresh and proves the server alive (``ping``
        is gone from the 2026-07-28 revision). Any answer, even an error, is a live
        server; no answer in time, or a closed connection, is a dead one."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PROBE_INTERVAL_S):
                    await self._wake.wait()
            if self._broken.is_set():
                return self.last_error or "closed"
            self._wake.clear()
            try:
                async with asyncio.timeout(self.config.connect_timeout):
                    self.tools = await self._list(client, refresh=True)
            except MCPError as exc:
                if exc.code == types.CONNECTION_CLOSED:
                    return "the connection closed"
            except TimeoutError:
                return f"no answer to tools/list within {self.config.connect_timeout:g} s"
            except Exception as exc:
                return f"tools/list failed: {_describe(exc)}"

    def _down(self, error: str) -> None:
        self.state = "down"
        self.failures += 1
        self.last_error = error
        delay = min(self.config.backoff_max, self.config.backoff * 2 ** (self.failures - 1))
        delay *= 0.5 + self._jitter() / 2  # full delay at most, half at least
        self.retry_at = self._monotonic() + delay
        log.warning(
            "MCP server %s is unavailable (%s); retry in %.1f s", self.config.name, error, delay
        )

    def _fail(self, client: Client, error: str) -> None:
        if client is self._client and not self._broken.is_set():
            self.last_error = error
            self._broken.set()
            self._wake.set()

    def _why(self) -> str:
        why = f"server {self.config.name} is unavailable"
        return f"{why}: {self.last_error}" if self.last_error else why

    async def _new_client(self, stack: contextlib.AsyncExitStack) -> Client:
        config = self.config
        server: Any
        if config.transport == "stdio":
            server = StdioServerParameters(
                command=config.command, args=list(config.args), env=config.env, cwd=config.cwd
            )
        else:
            # Ours to close (the transport leaves a client it was given open).
            http = await stack.enter_async_context(create_mcp_http_client(headers=config.headers))
            server = streamable_http_client(config.url, http_client=http)
        return Client(server, message_handler=self._on_message)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._wake.set()  # the owner lists the tools again

    async def _list(self, client: Client, refresh: bool = False) -> dict[str, RemoteTool]:
        tools: dict[str, RemoteTool] = {}
        cursor: str | None = None
        for _ in range(LIST_PAGES_MAX):
            page = await client.list_tools(
                cursor=cursor, cache_mode="refresh" if refresh else "use"
            )
            for tool in page.tools:
                tools[tool.name] = RemoteTool(tool.name, tool.description or "", tool.input_schema)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools


def _describe(exc: BaseException) -> str:
    """A short reason (the first leaf of an exception group), without secrets: exceptions
    name hosts and commands, never header values."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{exc.__class__.__name__}: {exc}"[:200]
