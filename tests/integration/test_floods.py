"""Hostile clients: floods of pings, bad frames and huge uploads are cut off, the server's
memory stays bounded (read from /proc) and other clients keep being served.

No timing assertion: "served" means every bystander request was answered, "bounded" means
the server's RSS grew by less than a fixed number of megabytes while the flood ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest

from models import framing_model

from .harness import Client, ServerProcess, module_server, token
from .rawws import BINARY, CLOSE, PING, PONG, ByteStream, RawWebSocket, build_frame, text

RSS_SLACK = 64 << 20  # a flood may not grow the server by more than this
FLOOD_SECONDS = 2.0
CUT_OFF = (4002, 4004)  # slow consumer, or too many refused frames

_users = itertools.count()
flood_server = module_server()


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    ByteStream.close_all()


@contextlib.asynccontextmanager
async def peak_rss(server: ServerProcess) -> AsyncIterator[list[int]]:
    """Samples the server's RSS every 50 ms while the block runs: [before, peak]."""
    figures = [server.rss_bytes()] * 2

    async def sample() -> None:
        while True:
            figures[1] = max(figures[1], server.rss_bytes())
            await asyncio.sleep(0.05)  # the sampling period, not a wait for anything

    task = asyncio.create_task(sample())
    try:
        yield figures
    finally:
        task.cancel()
        figures[1] = max(figures[1], server.rss_bytes())


async def raw_client(server: ServerProcess, authed: bool) -> RawWebSocket:
    ws = await RawWebSocket.connect(server.port)
    if authed:
        await ws.send_text({"type": "auth", "id": "a", "token": token(f"flood{next(_users)}")})
        event = await ws.recv_event()
        assert event["type"] == "auth.ok", event
    return ws


async def flood(ws: RawWebSocket, chunk: bytes, seconds: float) -> int:
    """Write ``chunk`` again and again for ``seconds`` or until the server ends the
    connection; never read. Returns how many chunks went out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    sent = 0
    sock = ws.stream.sock
    while loop.time() < deadline:
        try:
            async with asyncio.timeout(max(0.01, deadline - loop.time())):
                await loop.sock_sendall(sock, chunk)
        except TimeoutError:
            break  # the server stopped reading us: that is its right
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += 1
    return sent


async def close_code_after(ws: RawWebSocket, timeout: float = 10.0) -> int | None:
    """Read everything the server still sends; the code of its CLOSE frame, if any."""
    data = await ws.stream.read_to_end(timeout)
    frames, _ = framing_model.parse(data)
    for opcode, payload in frames:
        if opcode == CLOSE and len(payload) >= 2:
            return int.from_bytes(payload[:2], "big")
    return None


async def bystander_round_trips(server: ServerProcess, n: int) -> int:
    """A well-behaved user: ``n`` ping requests one after the other; returns how many were
    answered (each within 10 s)."""
    client = await Client.connect(server.url, token(f"calm{next(_users)}"))
    answered = 0
    for i in range(n):
        reply = await client.request({"type": "ping", "id": i})
        answered += reply["type"] == "pong"
    await client.close()
    return answered


# -- finding 1: ping floods -----------------------------------------------------------------


@pytest.mark.parametrize("authed", [False, True], ids=["preauth", "authed"])
async def test_ping_flood_without_reading_is_cut_off(
    flood_server: ServerProcess, authed: bool
) -> None:
    """Pings past the rate get no pong and count as refused; pongs are queued in the
    outbox (counted against the outbound limit). Before the fix every PING got a PONG
    written straight to the socket buffer and RSS grew by gigabytes."""
    ws = await raw_client(flood_server, authed)
    burst = b"".join(build_frame(PING, b"flood") for _ in range(1000))
    async with peak_rss(flood_server) as rss:
        sent = await flood(ws, burst, FLOOD_SECONDS)
        code = await close_code_after(ws)
    assert sent > 0
    assert code in CUT_OFF, code
    assert rss[1] - rss[0] < RSS_SLACK, f"RSS grew by {(rss[1] - rss[0]) >> 20} MB"
    assert await bystander_round_trips(flood_server, 20) == 20


async def test_pings_within_the_rate_are_answered_in_order(flood_server: ServerProcess) -> None:
    ws = await raw_client(flood_server, True)
    await ws.send_raw(b"".join(build_frame(PING, f"p{i}".encode()) for i in range(20)))
    for i in range(20):
        frame = await ws.recv_frame()
        assert (frame.opcode, frame.payload) == (PONG, f"p{i}".encode())


# -- finding 3: frame floods and fairness -------------------------------------------------------

FLOODS = {
    "binary": build_frame(BINARY, b"\x00" * 16),
    "bad-json": build_frame(0x1, b"{not json"),
    "rate-limited-send": text({"type": "message.send", "room": "flood", "body": "x"}),
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
async def test_frame_flood_is_cut_and_bystanders_are_served(
    flood_server: ServerProcess, kind: str
) -> None:
    """A client sending refused frames as fast as it can (and reading what it gets back,
    so it is no slow consumer) is closed with 4004, while another user's requests are all
    answered."""
    ws = await raw_client(flood_server, True)
    if kind == "rate-limited-send":
        await ws.send_text({"type": "room.join", "room": "flood", "id": "j"})
        assert (await ws.recv_event())["type"] == "room.joined"
    chunk = FLOODS[kind] * 200
    ended = asyncio.create_task(close_code_after(ws, timeout=30))
    async with peak_rss(flood_server) as rss:
        flooding = asyncio.create_task(flood(ws, chunk, 10.0))
        answered = await bystander_round_trips(flood_server, 30)
        code = await ended
        flooding.cancel()
    assert answered == 30
    assert code == 4004, code
    assert rss[1] - rss[0] < RSS_SLACK, f"RSS grew by {(rss[1] - rss[0]) >> 20} MB"


busy_server = module_server(
    rate_conn_per_s=100000, rate_conn_burst=100000, rate_user_per_s=100000, rate_user_burst=100000
)


async def test_a_burst_past_the_work_budget_is_answered_completely_in_order(
    busy_server: ServerProcess,
) -> None:
    """600 requests in one write exceed the per-iteration budget (64): the rest are held
    back and answered in later iterations, none lost, in order."""
    ws = await raw_client(busy_server, True)
    await ws.send_raw(b"".join(text({"type": "ping", "id": i}) for i in range(600)))
    for i in range(600):
        event = await ws.recv_event()
        assert (event["type"], event["id"]) == ("pong", i), event
    await ws.ping_roundtrip()


async def test_more_frames_than_the_backlog_in_one_go_is_a_flood(
    busy_server: ServerProcess,
) -> None:
    """Valid but absurd: thousands of frames arriving at once (flood_backlog_frames is
    4096) close the connection with 4004 rather than being queued without bound."""
    ws = await raw_client(busy_server, True)
    burst = b"".join(text({"type": "ping"}) for _ in range(20000))
    sock = ws.stream.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    await ws.stream.write(burst, timeout=30)
    assert await close_code_after(ws, timeout=30) == 4004


# -- finding 4: HTTP bodies ---------------------------------------------------------------------


async def raw_http(
    server: ServerProcess, head: bytes, body_chunk: bytes = b"", body_bytes: int = 0
) -> tuple[int, dict[str, object]]:
    """Send a request head, then up to ``body_bytes`` of body while the server reads; return
    the status and JSON body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.api_port)
    writer.write(head)

    async def upload() -> None:
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < body_bytes:
                writer.write(body_chunk)
                await writer.drain()
                sent += len(body_chunk)

    uploading = asyncio.create_task(upload())
    try:
        async with asyncio.timeout(10):
            status_line = await reader.readline()
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers["content-length"]))
    finally:
        uploading.cancel()
        writer.close()
    return int(status_line.split()[1]), orjson.loads(body)


@pytest.mark.parametrize(
    "authorization", [b"", b"Authorization: Bearer nope\r\n"], ids=["no-token", "bad-token"]
)
async def test_unauthenticated_upload_is_refused_before_it_is_read(
    flood_server: ServerProcess, authorization: bytes
) -> None:
    size = 200 << 20
    head = (
        b"POST /v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + authorization
        + f"Content-Length: {size}\r\n\r\n".encode()
    )
    async with peak_rss(flood_server) as rss:
        status, body = await raw_http(flood_server, head, b"x" * (1 << 20), size)
    assert status == 401 and body["error"]["code"] == "unauthorized"  # type: ignore[index]
    assert rss[1] - rss[0] < RSS_SLACK


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_body_is_413_before_it_is_buffered(
    flood_server: ServerProcess, chunked: bool
) -> None:
    auth = f"Authorization: Bearer {token('uploader', roles=('admin', 'member'))}\r\n".encode()
    size = 50 << 20
    if chunked:
        head = (
            b"POST /v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + auth
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        piece = b"x" * 65536
        chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    else:
        head = (
            b"POST /v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + auth
            + f"Content-Length: {size}\r\n\r\n".encode()
        )
        chunk = b"x" * (1 << 20)
    async with peak_rss(flood_server) as rss:
        status, body = await raw_http(flood_server, head, chunk, size)
    assert status == 413 and body["error"]["code"] == "too_large"  # type: ignore[index]
    assert rss[1] - rss[0] < RSS_SLACK


# -- finding 8: HTTP writes share the user's bucket ---------------------------------------------

strict_http_server = module_server(rate_user_per_s=1, rate_user_burst=10)


async def test_http_writes_are_rate_limited_with_the_users_bucket(
    strict_http_server: ServerProcess,
) -> None:
    who = token("poster", roles=("admin", "member"))
    headers = {"Authorization": f"Bearer {who}"}
    async with httpx.AsyncClient(base_url=strict_http_server.api, headers=headers) as http:
        assert (await http.post("/v1/rooms", json={"name": "posts"})).status_code == 201
        statuses = []
        for i in range(15):
            response = await http.post("/v1/rooms/posts/messages", json={"body": f"m{i}"})
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                error = response.json()["error"]
                assert error["code"] == "rate_limited" and error["retry_after_ms"] >= 1
        assert statuses.count(201) <= 10 and 429 in statuses
        # Reads are not charged.
        assert (await http.get("/v1/rooms/posts/messages")).status_code == 200
    # The same user's WebSocket requests draw from the bucket the HTTP writes emptied.
    client = await Client.connect(strict_http_server.url, who)
    replies = [await client.request({"type": "ping"}) for _ in range(3)]
    assert any(r["type"] == "error" and r["code"] == "rate_limited" for r in replies), replies
    await client.close()
