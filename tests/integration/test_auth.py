"""Authentication over a real socket: JWT checks, timeouts, pre-auth rules."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nexus.auth import mint_token
from nexus.errors import CloseCode

from .harness import (
    AUDIENCE,
    ISSUER,
    Client,
    ServerProcess,
    module_server,
    start_server,
    token,
)
from .rawws import RawWebSocket


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "mallory",
        "tenant": "acme",
        "roles": ["admin"],
        "kind": "human",
        "iat": now,
        "exp": now + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    base.update(over)
    return base


async def rejected(server: ServerProcess, tok: str) -> tuple[dict[str, object], int | None]:
    """Send an auth with ``tok``; return the error event and the close code."""
    client = await Client.connect(server.url)
    await client.send({"type": "auth", "token": tok, "id": "a1"})
    event = await client.recv()
    return event, await client.closed_code()


async def test_valid_token_in_auth_message(server: ServerProcess) -> None:
    client = await Client.connect(server.url)
    reply = await client.request(
        {"type": "auth", "token": token("alice", roles=("member",), kind="agent")}
    )
    assert reply["type"] == "auth.ok"
    assert (reply["user_id"], reply["tenant"], reply["kind"]) == ("alice", "acme", "agent")
    assert reply["roles"] == ["member"]
    assert len(reply["session_id"]) == 16
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_valid_token_in_upgrade_header(server: ServerProcess) -> None:
    client = await Client.connect(server.url, token("bob"), header=True)
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_bad_token_in_upgrade_header_gets_401(server: ServerProcess) -> None:
    with pytest.raises(websockets.InvalidStatus) as info:
        await Client.connect(server.url, token("bob", ttl=-10), header=True)
    assert info.value.response.status_code == 401
    body = json.loads(info.value.response.body)
    assert body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "not_yet_valid",
        "wrong_signature",
        "wrong_audience",
        "wrong_issuer",
        "alg_none",
        "garbage",
    ],
)
async def test_invalid_tokens_are_refused_and_closed(server: ServerProcess, case: str) -> None:
    now = time.time()
    tok = {
        "expired": lambda: token("alice", ttl=-5),
        "not_yet_valid": lambda: token("alice", not_before=now + 300),
        "wrong_signature": lambda: token("alice", key="another-secret-of-enough-length-0123456789"),
        "wrong_audience": lambda: token("alice", audience="someone-else"),
        "wrong_issuer": lambda: token("alice", issuer="evil"),
        "alg_none": lambda: ".".join(
            (b64(b'{"alg":"none","typ":"JWT"}'), b64(json.dumps(claims()).encode()), "")
        ),
        "garbage": lambda: "not.a.jwt",
    }[case]()
    event, code = await rejected(server, tok)
    assert event["type"] == "error" and event["code"] == "unauthorized"
    assert event["id"] == "a1"
    assert code == CloseCode.UNAUTHORIZED


async def test_request_before_auth_is_refused(server: ServerProcess) -> None:
    client = await Client.connect(server.url)
    await client.send({"type": "room.join", "room": "general", "id": 7})
    event = await client.recv()
    assert (event["type"], event["code"], event["id"]) == ("error", "unauthorized", 7)
    assert await client.closed_code() == CloseCode.UNAUTHORIZED


async def test_second_auth_is_a_bad_request(server: ServerProcess) -> None:
    client = await Client.connect(server.url, token("alice"))
    reply = await client.request({"type": "auth", "token": token("eve")})
    assert reply["code"] == "bad_request"
    await client.close()


quick_auth_server = module_server(auth_timeout=0.5)


async def test_no_auth_within_timeout_closes_4001(quick_auth_server: ServerProcess) -> None:
    client = await Client.connect(quick_auth_server.url)
    event = await client.recv()
    assert (event["type"], event["code"]) == ("error", "unauthorized")
    assert await client.closed_code() == CloseCode.AUTH_TIMEOUT


# -- public-key configuration: RS256 pinned -------------------------------------------------


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path_factory.mktemp("keys") / "public.pem"
    path.write_bytes(public)
    return private, path


@pytest.fixture(scope="module")
def rsa_server(
    tmp_path_factory: pytest.TempPathFactory, rsa_keys: tuple[str, Path]
) -> Iterator[ServerProcess]:
    srv = start_server(
        tmp_path_factory.mktemp("data"),
        auth_algorithms="RS256",
        auth_public_key_file=rsa_keys[1],
        auth_secret=None,
    )
    yield srv
    srv.stop()


async def test_rs256_token_accepted(rsa_server: ServerProcess, rsa_keys: tuple[str, Path]) -> None:
    tok = mint_token(
        rsa_keys[0],
        user="carol",
        tenant="acme",
        algorithm="RS256",
        issuer=ISSUER,
        audience=AUDIENCE,
    )
    client = await Client.connect(rsa_server.url, tok)
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_hs_rs_confusion_rejected(
    rsa_server: ServerProcess, rsa_keys: tuple[str, Path]
) -> None:
    # Classic confusion: HS256 "signed" with the server's public key as the HMAC secret.
    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64(json.dumps(claims()).encode())
    signing_input = f"{header}.{payload}".encode()
    sig = hmac.new(rsa_keys[1].read_bytes(), signing_input, hashlib.sha256).digest()
    event, code = await rejected(rsa_server, f"{header}.{payload}.{b64(sig)}")
    assert event["code"] == "unauthorized"
    assert code == CloseCode.UNAUTHORIZED


async def test_hs256_with_shared_secret_rejected_when_rs256_pinned(
    rsa_server: ServerProcess,
) -> None:
    event, code = await rejected(rsa_server, token("alice"))
    assert event["code"] == "unauthorized"
    assert code == CloseCode.UNAUTHORIZED


fast_sweep_server = module_server(heartbeat_interval=0.4, heartbeat_timeout=0.4)


async def test_session_closes_when_its_token_expires(fast_sweep_server: ServerProcess) -> None:
    client = await Client.connect(fast_sweep_server.url, token("brief", ttl=2))
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    event = await client.next("error", timeout=10)
    assert (event["code"], event["message"]) == ("unauthorized", "token expired")
    assert await client.closed_code() == CloseCode.TOKEN_EXPIRED


lenient_server = module_server(heartbeat_interval=0.4, heartbeat_timeout=0.4, auth_leeway=60)


async def test_leeway_that_admitted_a_token_keeps_its_session(
    lenient_server: ServerProcess,
) -> None:
    # Expired 5 s ago, admitted by the 60 s leeway: the expiry sweep must not close it.
    ws = await RawWebSocket.connect(lenient_server.port)
    await ws.send_text({"type": "auth", "id": "a", "token": token("late", ttl=-5)})
    assert (await ws.recv_event())["type"] == "auth.ok"
    # The sweep checks a token's expiry before it pings: each PING is a sweep that looked
    # at this session and kept it. Three are at least 1.2 s of sweeps every 0.1 s; an
    # expiry would show here as an error event and a CLOSE 4003 instead of a PING.
    await ws.answer_pings(3)
    await ws.ping_roundtrip()
    ws.close_transport()


async def test_room_and_ids_with_trailing_newline_are_refused(server: ServerProcess) -> None:
    client = await Client.connect(server.url, token("ann"))
    reply = await client.request({"type": "room.join", "room": "general\n"})
    assert reply["code"] == "bad_request"
    await client.close()
    event, code = await rejected(server, token("dev\n"))
    assert event["code"] == "unauthorized" and code == CloseCode.UNAUTHORIZED
