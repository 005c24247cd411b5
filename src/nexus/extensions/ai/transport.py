"""One streamed provider call over HTTP: POST, read server-sent events, yield parts.

Shared by the hosted adapters, which bring only what differs: the request (an
``Exchange``) and an ``EventDecoder`` turning their events into parts. Everything else is
here, once: HTTP errors and network failures become ``StreamError`` parts, the four
timeouts are enforced, and the response is closed in a ``finally`` — so ``aclose()`` on
the part stream (a cancelled reply) drops the connection at once and stops the cost.

Timeouts, all measured on the loop's clock:

* connect — httpx's connect timeout (also its pool and write timeouts);
* first token — a deadline from sending the request to the decoder's first part; pings
  and metadata events do not move it, so a server that accepts and then only keeps the
  connection alive is caught;
* idle — after the first part, the longest wait for more bytes (pings count as life);
* total — a deadline for the whole call.

The time the consumer spends between parts is not counted against idle: the clock runs
only while waiting on the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson

from .config import ProviderConfig
from .http_errors import provider_message, scrub, status_error
from .parts import Finish, Part, StreamError
from .sse import SseEvent, SseParser, SseTooLarge

ERROR_BODY_MAX = 64 * 1024  # bytes of an error answer read for its message
MAX_CONNECTIONS = 32  # per provider: concurrent replies beyond this wait for the pool


class EventDecoder(Protocol):
    """A wire format's events to parts, sans-I/O; one per call."""

    def feed(self, event: SseEvent) -> list[Part]:
        """The parts ``event`` gives. A ``Finish`` or ``StreamError`` ends the call."""
        ...

    def end(self, truncated: bool) -> list[Part]:
        """The last parts when the stream ended without a terminal part: ending with a
        ``Finish`` when the reply's end was already seen, otherwise a ``StreamError``."""
        ...


@dataclass(frozen=True, slots=True)
class Exchange:
    """What to send: the endpoint, the headers (with the key), the JSON body."""

    url: str
    headers: dict[str, str]
    body: dict[str, Any]


def new_client(config: ProviderConfig) -> httpx.AsyncClient:
    """The provider's own connection pool. Reads have no httpx timeout: the first-token,
    idle and total timeouts are enforced by ``stream_parts``."""
    timeout = httpx.Timeout(
        connect=config.connect_timeout,
        read=None,
        write=config.connect_timeout,
        pool=config.connect_timeout,
    )
    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS, max_keepalive_connections=8, keepalive_expiry=30.0
    )
    return httpx.AsyncClient(timeout=timeout, limits=limits, http2=False, trust_env=False)


def failure(config: ProviderConfig, exc: httpx.HTTPError) -> StreamError:
    """A network failure as a ``StreamError`` (the key scrubbed from the text)."""
    what = scrub(str(exc) or type(exc).__name__, config.api_key)
    name = config.name
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout | httpx.WriteTimeout):
        return StreamError("timeout", f"{name}: connect timeout ({config.connect_timeout:g}s)")
    if isinstance(exc, httpx.ConnectError):
        return StreamError("connect", f"{name}: cannot connect: {what}")
    if isinstance(exc, httpx.DecodingError):
        return StreamError("protocol", f"{name}: undecodable response: {what}")
    # reset, closed mid-body (ReadError, RemoteProtocolError): a network failure
    return StreamError("connect", f"{name}: connection lost: {what}")


async def stream_parts(
    client: httpx.AsyncClient, config: ProviderConfig, exchange: Exchange, decoder: EventDecoder
) -> AsyncGenerator[Part, None]:
    """POST ``exchange`` and yield the parts ``decoder`` makes of the answer; the last one
    is a ``Finish`` or a ``StreamError``. Never raises for the provider's failures."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    total_at = started + config.total_timeout
    first_at = min(total_at, started + config.first_token_timeout)
    response: httpx.Response | None = None
    try:
        request = client.build_request(
            "POST", exchange.url, headers=exchange.headers, content=orjson.dumps(exchange.body)
        )
        try:
            async with asyncio.timeout_at(first_at):
                response = await client.send(request, stream=True)
        except TimeoutError:
            yield _timeout(config, "first token" if first_at < total_at else "total")
            return
        except httpx.HTTPError as exc:
            yield failure(config, exc)
            return
        if response.status_code >= 400:
            body = await _error_body(response, min(total_at, loop.time() + config.idle_timeout))
            yield status_error(
                response.status_code, response.headers, body, config.api_key, config.name
            )
            return
        if response.headers.get("content-type", "").startswith("application/json"):
            # stream: true ignored, or an error sent with a 200
            body = await _error_body(response, min(total_at, loop.time() + config.idle_timeout))
            detail = scrub(provider_message(body), config.api_key)
            yield StreamError("protocol", f"{config.name}: a JSON answer, not a stream: {detail}")
            return
        parser = SseParser()
        chunks = response.aiter_bytes()
        first = True  # no part yet: the first-token deadline applies
        while True:
            if first:
                deadline, which = first_at, "first token" if first_at < total_at else "total"
            else:
                idle_at = loop.time() + config.idle_timeout
                deadline, which = min(idle_at, total_at), "idle" if idle_at < total_at else "total"
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks, None)
            except TimeoutError:
                yield _timeout(config, which)
                return
            except httpx.HTTPError as exc:
                yield failure(config, exc)
                return
            if chunk is None:
                parser.close()
                for part in decoder.end(parser.truncated):
                    yield part
                return
            try:
                events = parser.feed(chunk)
            except SseTooLarge as exc:
                yield StreamError("protocol", f"{config.name}: {exc}")
                return
            for event in events:
                for part in decoder.feed(event):
                    first = False
                    yield part
                    if isinstance(part, Finish | StreamError):
                        return
    finally:
        if response is not None:
            await response.aclose()  # unread body: httpx drops the connection


def ended_early(provider: str, truncated: bool) -> StreamError:
    """The error of a stream that ended before the reply did (``truncated``: inside an
    event)."""
    where = " mid-event" if truncated else ""
    return StreamError("protocol", f"{provider}: stream ended early{where}")


def _timeout(config: ProviderConfig, which: str) -> StreamError:
    seconds = {
        "first token": config.first_token_timeout,
        "idle": config.idle_timeout,
        "total": config.total_timeout,
    }[which]
    return StreamError("timeout", f"{config.name}: {which} timeout ({seconds:g}s)")


async def _error_body(response: httpx.Response, deadline: float) -> bytes:
    """Up to ``ERROR_BODY_MAX`` bytes of an error answer, or what came before the
    deadline or a failure (the status alone still makes a useful error)."""
    body = bytearray()
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= ERROR_BODY_MAX:
                    break
    except (TimeoutError, httpx.HTTPError):
        pass
    return bytes(body[:ERROR_BODY_MAX])
