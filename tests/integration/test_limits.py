"""Rate limits and slow consumers: refusals are explicit, nothing is lost or duplicated,
and a client that stops reading cannot grow the server's memory."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Iterator

import pytest

from .harness import Client, ServerProcess, module_server, start_server, token
from .rawws import RawWebSocket


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        tmp_path_factory.mktemp("data"),
        rate_conn_per_s=20,
        rate_conn_burst=10,
        rate_user_per_s=40,
        rate_user_burst=15,
    )
    yield srv
    assert srv.stop() == 0


def refill_window(started: float) -> float:
    """Seconds since ``started`` (loop time): every refill the server's buckets can have
    had since a bucket created after ``started`` lies within it."""
    return asyncio.get_running_loop().time() - started


# The rate-limit tests below check each behaviour on a real server. Their bounds allow
# for the refill during the test's own wall-clock time, measured rather than guessed; the
# exact arithmetic (which request is refused, and the retry hint) is checked on a fake
# clock in tests/unit/test_rate_limits.py.


async def test_burst_past_bucket_is_refused_without_loss(strict_server: ServerProcess) -> None:
    started = asyncio.get_running_loop().time()
    client = await Client.connect(strict_server.url, token("ann"))
    await client.join("burst")  # auth and join took 2 of the 10 tokens
    total = 30
    for i in range(total):
        await client.send(
            {
                "type": "message.send",
                "room": "burst",
                "body": f"m{i}",
                "client_msg_id": f"m{i}",
                "id": f"m{i}",
            }
        )
    acked: dict[str, int] = {}
    refused: dict[str, int] = {}
    while len(acked) + len(refused) < total:
        event = await client.next("ack", "error")
        if event["type"] == "ack":
            acked[event["id"]] = event["seq"]
        else:
            assert event["code"] == "rate_limited", event
            assert event["retry_after_ms"] >= 1
            refused[event["id"]] = event["retry_after_ms"]
    window = refill_window(started)
    assert refused, "the burst should have exceeded the bucket"
    # The 8 left of the connection's 10 (20/s), plus at most what refilled meanwhile.
    assert 8 <= len(acked) <= 8 + 20 * window, (len(acked), window)
    assert sorted(acked.values()) == list(range(1, len(acked) + 1))

    # Resend exactly the refused ones, pacing by the server's retry hint.
    for rid in sorted(refused, key=lambda r: int(r[1:])):
        while True:
            reply = await client.request(
                {"type": "message.send", "room": "burst", "body": rid, "client_msg_id": rid}
            )
            if reply["type"] == "ack":
                acked[rid] = reply["seq"]
                break
            assert reply["code"] == "rate_limited"
            # Not synchronisation: a client honouring the server's retry hint.
            await asyncio.sleep(reply["retry_after_ms"] / 1000)

    # The room holds each client message once, gapless.
    history = []
    after = 0
    while True:
        page = await client.request(
            {"type": "history", "room": "burst", "after": after, "limit": 100}
        )
        if page["type"] == "error":
            await asyncio.sleep(page["retry_after_ms"] / 1000)  # honouring the retry hint
            continue
        history += page["messages"]
        if not page["has_more"]:
            break
        after = history[-1]["seq"]
    assert [m["seq"] for m in history] == list(range(1, total + 1))
    assert sorted(acked) == sorted(f"m{i}" for i in range(total))
    assert len({m["id"] for m in history}) == total
    await client.close()


async def test_user_bucket_is_shared_across_connections(strict_server: ServerProcess) -> None:
    started = asyncio.get_running_loop().time()
    a1 = await Client.connect(strict_server.url, token("zed"))
    a2 = await Client.connect(strict_server.url, token("zed"))
    for i in range(12):
        await a1.send({"type": "ping", "id": i})
        await a2.send({"type": "ping", "id": i})
    replies = []
    for c in (a1, a2):
        for _ in range(12):
            replies.append(await c.next("pong", "error"))
    window = refill_window(started)
    limited = [r for r in replies if r["type"] == "error"]
    # 24 requests against a user burst of 15 (40/s); each connection alone allows 9 after
    # auth, so the user's 15 all pass, plus at most what refilled meanwhile.
    assert limited and all(r["code"] == "rate_limited" for r in limited)
    assert 15 <= len(replies) - len(limited) <= 15 + 40 * window, (len(limited), window)
    await a1.close()
    await a2.close()


slow_refill_server = module_server(
    rate_conn_per_s=1, rate_conn_burst=10, rate_user_per_s=1, rate_user_burst=15
)


async def test_reconnecting_does_not_refill_the_user_bucket(
    slow_refill_server: ServerProcess,
) -> None:
    started = asyncio.get_running_loop().time()
    first = await Client.connect(slow_refill_server.url, token("yan"))
    # auth takes 1 of the connection's 10 tokens; 9 pings take the rest, and 9 of the
    # user's 15
    for i in range(9):
        assert (await first.request({"type": "ping", "id": i}))["type"] == "pong"
    await first.close()
    second = await Client.connect(slow_refill_server.url, token("yan"))
    replies = [await second.request({"type": "ping", "id": i}) for i in range(8)]
    window = refill_window(started)
    passed = [r for r in replies if r["type"] == "pong"]
    # A fresh connection bucket (9 after auth), but the user's has 6 left, plus what
    # refilled at 1/s.
    assert 6 <= len(passed) <= 6 + window, (replies, window)
    assert all(r["code"] == "rate_limited" for r in replies if r["type"] == "error")
    await second.close()


# -- slow consumer ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def buffered_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        tmp_path_factory.mktemp("data"),
        outbound_limit_bytes=256 * 1024,
        rate_conn_per_s=100000,
        rate_conn_burst=100000,
        rate_user_per_s=100000,
        rate_user_burst=100000,
        store_durability="none",
    )
    yield srv
    assert srv.stop() == 0


def raw_ws_connect(port: int, tok: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {tok}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + mask + body


async def test_slow_consumer_is_disconnected_and_memory_stays_bounded(
    buffered_server: ServerProcess,
) -> None:
    room = "firehose"
    sender = await Client.connect(buffered_server.url, token("fast"))
    await sender.join(room)
    slow = raw_ws_connect(buffered_server.port, token("slow"))
    slow.sendall(masked_text(b'{"type":"room.join","room":"firehose"}'))
    assert (await sender.next("presence"))["user_id"] == "slow"
    rss_before = buffered_server.rss_bytes()

    body = "x" * 8000
    sent = 0
    left_at = None
    # 4000 x 8 KB = 32 MB offered to a reader that takes none of it.
    for i in range(4000):
        await sender.send({"type": "message.send", "room": room, "body": body, "id": i})
        sent += 1
        if i % 20 == 19:
            events = await sender.barrier()
            if any(e["type"] == "presence" and e["action"] == "leave" for e in events):
                left_at = sent
                break
    if left_at is None:
        event = await sender.next("presence", timeout=10)
        assert (event["user_id"], event["action"]) == ("slow", "leave")
        left_at = sent
    rss_after = buffered_server.rss_bytes()
    assert left_at < 4000, "the slow consumer should be cut off before the stream ends"
    # Bounded: far below the 32 MB offered (limit is 256 KiB + socket buffers).
    assert rss_after - rss_before < 24 * 1024 * 1024, (rss_before, rss_after)

    # Its socket is closed by the server: reading drains what was buffered, then EOF/reset.
    slow.settimeout(10)
    try:
        while slow.recv(65536):
            pass
    except ConnectionResetError:
        pass
    slow.close()
    # The server still serves the others.
    assert (await sender.request({"type": "ping"}))["type"] == "pong"
    await sender.close()


# -- heartbeat --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heartbeat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        tmp_path_factory.mktemp("data"), heartbeat_interval=0.3, heartbeat_timeout=0.3
    )
    yield srv
    assert srv.stop() == 0


def read_frames(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Read unmasked server frames until the peer closes; (opcode, payload) each."""
    data = b""
    sock.settimeout(10)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    frames = []
    while len(data) >= 2:
        opcode, n = data[0] & 0x0F, data[1] & 0x7F
        head = 2
        if n == 126:
            n, head = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(data[2:10], "big"), 10
        frames.append((opcode, data[head : head + n]))
        data = data[head + n :]
    return frames


async def test_silent_peer_is_pinged_then_closed(heartbeat_server: ServerProcess) -> None:
    sock = raw_ws_connect(heartbeat_server.port, token("mute"))
    frames = await asyncio.to_thread(read_frames, sock)
    sock.close()
    opcodes = [op for op, _ in frames]
    assert 0x9 in opcodes, opcodes  # the server pinged
    assert opcodes[-1] == 0x8  # and closed after no pong came back
    assert int.from_bytes(frames[-1][1][:2], "big") == 1001


async def test_answering_peer_stays_connected(heartbeat_server: ServerProcess) -> None:
    ws = await RawWebSocket.connect(heartbeat_server.port)
    await ws.send_text({"type": "auth", "id": "a", "token": token("chatty")})
    assert (await ws.recv_event())["type"] == "auth.ok"
    # A server that ignored the PONGs would close 0.3 s after its first PING and never send
    # a second one: each PING after the first shows the previous PONG kept the session.
    await ws.answer_pings(4)
    await ws.ping_roundtrip()
    ws.close_transport()
