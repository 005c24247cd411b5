"""Bad input gets the documented error; the connection stays open unless the table says so."""

from __future__ import annotations

import json

import pytest

from nexus.errors import CloseCode

from .harness import Client, ServerProcess, module_server, token


@pytest.mark.parametrize(
    "frame, code",
    [
        ("{not json", "bad_request"),
        ("[1, 2, 3]", "bad_request"),
        ('{"id": 1}', "bad_request"),
        ('{"type": "fly", "id": 1}', "bad_request"),
        ('{"type": 42}', "bad_request"),
        ('{"type": "room.join", "id": 1}', "bad_request"),
        ('{"type": "room.join", "room": 5, "id": 1}', "bad_request"),
        ('{"type": "room.join", "room": "has space", "id": 1}', "bad_request"),
        ('{"type": "room.join", "room": "r", "since": -1, "id": 1}', "bad_request"),
        ('{"type": "room.join", "room": "r", "since": "3", "id": 1}', "bad_request"),
        ('{"type": "message.send", "room": "r", "id": 1}', "bad_request"),
        ('{"type": "message.send", "room": "r", "body": 7, "id": 1}', "bad_request"),
        ('{"type": "message.send", "room": "r", "body": "x", "meta": [1], "id": 1}', "bad_request"),
        ('{"type": "history", "room": "r", "limit": 0, "id": 1}', "bad_request"),
        ('{"type": "history", "room": "r", "before": 5, "after": 1, "id": 1}', "bad_request"),
        ('{"type": "typing", "room": "r", "active": "yes", "id": 1}', "bad_request"),
        (
            '{"type": "message.send", "room": "r", "body": "' + "x" * 20000 + '", "id": 1}',
            "too_large",
        ),
        (
            '{"type": "message.send", "room": "r", "body": "x", "meta": {"k": "'
            + "v" * 5000
            + '"}, "id": 1}',
            "too_large",
        ),
    ],
)
async def test_bad_frames_get_error_and_connection_stays_open(
    server: ServerProcess, frame: str, code: str
) -> None:
    client = await Client.connect(server.url, token("ann"))
    await client.send_raw(frame)
    event = await client.recv()
    assert event["type"] == "error" and event["code"] == code, event
    assert isinstance(event["message"], str) and event["message"]
    try:
        parsed = json.loads(frame)
    except ValueError:
        parsed = None
    expected_id = parsed.get("id") if isinstance(parsed, dict) else None
    assert event["id"] == expected_id
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_binary_frame_is_bad_request(server: ServerProcess) -> None:
    client = await Client.connect(server.url, token("ann"))
    await client.send_raw(b'{"type": "ping"}')
    event = await client.recv()
    assert event["code"] == "bad_request"
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_invalid_json_before_auth_keeps_connection(server: ServerProcess) -> None:
    client = await Client.connect(server.url)
    await client.send_raw("nope")
    assert (await client.recv())["code"] == "bad_request"
    ok = await client.request({"type": "auth", "token": token("ann")})
    assert ok["type"] == "auth.ok"
    await client.close()


async def test_error_echoes_request_id(server: ServerProcess) -> None:
    client = await Client.connect(server.url, token("ann"))
    await client.send({"type": "room.leave", "room": "never-joined", "id": "xyz"})
    event = await client.recv()
    assert (event["code"], event["id"]) == ("not_found", "xyz")
    await client.close()


small_frame_server = module_server(max_frame_bytes=8192, max_body_bytes=4096, max_meta_bytes=1024)


async def test_oversized_frame_closes_1009(small_frame_server: ServerProcess) -> None:
    client = await Client.connect(small_frame_server.url, token("ann"))
    await client.send_raw('{"type": "ping", "pad": "' + "x" * 9000 + '"}')
    assert await client.closed_code() == CloseCode.MESSAGE_TOO_BIG


async def test_body_limit_is_in_utf8_bytes(small_frame_server: ServerProcess) -> None:
    client = await Client.connect(small_frame_server.url, token("ann"))
    await client.join("utf8")
    ok = await client.request({"type": "message.send", "room": "utf8", "body": "é" * 2048})
    assert ok["type"] == "ack"
    big = await client.request({"type": "message.send", "room": "utf8", "body": "é" * 2049})
    assert big["code"] == "too_large"
    await client.close()


async def test_an_unstorable_client_msg_id_fails_its_sender_alone(server: ServerProcess) -> None:
    """128 four-byte characters (512 bytes) exceed LMDB's key size: it used to fail the whole
    group commit, other users' and tenants' messages included. Now it is bad_request for
    its sender, at intake, and everyone else's messages in the same instant are stored."""
    others = [
        await Client.connect(server.url, token(f"peer{i}", tenant=t))
        for i, t in enumerate(["acme", "acme", "globex"])
    ]
    poison = await Client.connect(server.url, token("mallory"))
    for c in (*others, poison):
        await c.join("poisoned")
    for i, c in enumerate(others):
        await c.send(
            {
                "type": "message.send",
                "room": "poisoned",
                "body": f"ok {i}",
                "client_msg_id": f"ok-{i}",
                "id": f"s{i}",
            }
        )
    await poison.send(
        {
            "type": "message.send",
            "room": "poisoned",
            "body": "bad",
            "client_msg_id": "\U0001f600" * 128,
            "id": "bad",
        }
    )
    error = await poison.next("error")
    assert (error["id"], error["code"]) == ("bad", "bad_request")
    for c in others:
        assert (await c.next("ack"))["type"] == "ack"
    # 32 four-byte characters are 128 bytes: accepted
    ack = await poison.say("poisoned", "fits", client_msg_id="\U0001f600" * 32)
    assert ack["client_msg_id"] == "\U0001f600" * 32
    for c in (*others, poison):
        await c.close()
