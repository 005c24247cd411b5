"""The HTTP API on a real server: permission matrix, HTTP writes reaching WebSocket members,
metrics that count what was sent."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from .harness import Client, ServerProcess, module_server, start_server, token

ADMIN = token("ada", roles=("admin",))
MEMBER = token("mia", roles=("member",))
AGENT = token("bot", roles=("agent",), kind="agent")
OTHER = token("oscar", tenant="globex", roles=("admin",))
ROLES = {"admin": ADMIN, "member": MEMBER, "agent": AGENT, "other_tenant": OTHER, "no_token": None}
_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("data"))
    yield srv
    assert srv.stop() == 0


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.api, timeout=10) as client:
        yield client


def auth(tok: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"} if tok else {}


async def make_room(http: httpx.AsyncClient, **extra: object) -> str:
    name = f"api-{next(_names)}"
    r = await http.post("/v1/rooms", json={"name": name, **extra}, headers=auth(ADMIN))
    assert r.status_code == 201, r.text
    return name


async def post(http: httpx.AsyncClient, room: str, body: str, tok: str = ADMIN) -> dict:
    r = await http.post(f"/v1/rooms/{room}/messages", json={"body": body}, headers=auth(tok))
    assert r.status_code == 201, r.text
    return r.json()


# (method, path, json body, expected status per role). {room} is a fresh room made by the
# admin, {msg} a fresh message in it by the admin, {mine} one by the caller (if allowed).
MATRIX = [
    (
        "GET",
        "/v1/rooms",
        None,
        dict(admin=200, member=200, agent=200, other_tenant=200, no_token=401),
    ),
    (
        "POST",
        "/v1/rooms",
        {"name": "{new}"},
        dict(admin=201, member=201, agent=403, other_tenant=201, no_token=401),
    ),
    (
        "GET",
        "/v1/rooms/{room}",
        None,
        dict(admin=200, member=200, agent=200, other_tenant=404, no_token=401),
    ),
    (
        "PATCH",
        "/v1/rooms/{room}",
        {"topic": "t"},
        dict(admin=200, member=403, agent=403, other_tenant=404, no_token=401),
    ),
    (
        "DELETE",
        "/v1/rooms/{room}",
        None,
        dict(admin=200, member=403, agent=403, other_tenant=404, no_token=401),
    ),
    (
        "GET",
        "/v1/rooms/{room}/members",
        None,
        dict(admin=200, member=200, agent=200, other_tenant=404, no_token=401),
    ),
    (
        "PUT",
        "/v1/rooms/{room}/members/zoe",
        {"role": "member"},
        dict(admin=200, member=403, agent=403, other_tenant=404, no_token=401),
    ),
    (
        "DELETE",
        "/v1/rooms/{room}/members/kim",
        None,
        dict(admin=204, member=403, agent=403, other_tenant=404, no_token=401),
    ),
    (
        "GET",
        "/v1/rooms/{room}/messages",
        None,
        dict(admin=200, member=200, agent=200, other_tenant=404, no_token=401),
    ),
    (
        "GET",
        "/v1/rooms/{room}/messages/{msg}",
        None,
        dict(admin=200, member=200, agent=200, other_tenant=404, no_token=401),
    ),
    (
        "POST",
        "/v1/rooms/{room}/messages",
        {"body": "hi"},
        dict(admin=201, member=201, agent=201, other_tenant=404, no_token=401),
    ),
    (
        "PATCH",
        "/v1/rooms/{room}/messages/{msg}",
        {"body": "changed"},
        dict(admin=200, member=403, agent=403, other_tenant=404, no_token=401),
    ),
    (
        "PATCH",
        "/v1/rooms/{room}/messages/{mine}",
        {"body": "changed"},
        dict(admin=200, member=200, agent=200, other_tenant=404, no_token=401),
    ),
    (
        "DELETE",
        "/v1/rooms/{room}/messages/{msg}",
        None,
        dict(admin=200, member=403, agent=403, other_tenant=404, no_token=401),
    ),
    (
        "GET",
        "/v1/rooms/{room}/presence",
        None,
        dict(admin=200, member=200, agent=200, other_tenant=404, no_token=401),
    ),
    (
        "GET",
        "/v1/users",
        None,
        dict(admin=200, member=200, agent=200, other_tenant=200, no_token=401),
    ),
    (
        "GET",
        "/v1/admin/connections",
        None,
        dict(admin=200, member=403, agent=403, other_tenant=200, no_token=401),
    ),
    (
        "DELETE",
        "/v1/admin/connections/{session}",
        None,
        dict(admin=204, member=403, agent=403, other_tenant=404, no_token=401),
    ),
    (
        "GET",
        "/v1/server",
        None,
        dict(admin=200, member=403, agent=403, other_tenant=200, no_token=401),
    ),
]
CASES = [(m, p, b, role, status) for m, p, b, expect in MATRIX for role, status in expect.items()]


@pytest.mark.parametrize(
    "method, path, body, role, status", CASES, ids=[f"{c[0]} {c[1]} as {c[3]}" for c in CASES]
)
async def test_permission_matrix(
    server: ServerProcess,
    http: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict | None,
    role: str,
    status: int,
) -> None:
    tok = ROLES[role]
    room = await make_room(http)
    values = {"room": room, "new": f"new-{next(_names)}"}
    if "{msg}" in path:
        values["msg"] = (await post(http, room, "by admin"))["message_id"]
    if "{mine}" in path:
        writer = tok if role in ("admin", "member", "agent") else ADMIN
        values["mine"] = (await post(http, room, "mine", writer))["message_id"]
    if "kim" in path:
        r = await http.put(
            f"/v1/rooms/{room}/members/kim", json={"role": "member"}, headers=auth(ADMIN)
        )
        assert r.status_code == 200
    client = None
    if "{session}" in path:
        client = await Client.connect(server.url, token("victim"))
        sessions = (await http.get("/v1/admin/connections", headers=auth(ADMIN))).json()
        values["session"] = next(
            c["session_id"] for c in sessions["connections"] if c["user_id"] == "victim"
        )
    url = path.format(**values)
    payload = (
        None
        if body is None
        else {k: (v.format(**values) if isinstance(v, str) else v) for k, v in body.items()}
    )
    r = await http.request(method, url, json=payload, headers=auth(tok))
    assert r.status_code == status, r.text
    if status >= 400:
        error = r.json()["error"]
        assert error["code"] in ("unauthorized", "forbidden", "not_found") and error["message"]
    if client is not None:
        if status == 204:
            assert await client.closed_code() == 4502
        await client.close()


async def test_other_tenant_lists_see_nothing_of_acme(http: httpx.AsyncClient) -> None:
    await make_room(http)
    rooms = (await http.get("/v1/rooms", headers=auth(OTHER))).json()["rooms"]
    assert all(r["tenant"] == "globex" for r in rooms)
    users = (await http.get("/v1/users", headers=auth(OTHER))).json()["users"]
    assert "ada" not in {u["user_id"] for u in users}


async def test_private_room_needs_membership(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    room = await make_room(http, private=True)
    assert (await http.get(f"/v1/rooms/{room}", headers=auth(MEMBER))).status_code == 404
    ws = await Client.connect(server.url, MEMBER)
    assert (await ws.request({"type": "room.join", "room": room}))["code"] == "not_found"
    r = await http.put(
        f"/v1/rooms/{room}/members/mia", json={"role": "member"}, headers=auth(ADMIN)
    )
    assert r.status_code == 200
    assert (await http.get(f"/v1/rooms/{room}", headers=auth(MEMBER))).status_code == 200
    await ws.join(room)
    members = (await http.get(f"/v1/rooms/{room}/members", headers=auth(MEMBER))).json()
    assert [(m["user_id"], m["role"]) for m in members["members"]] == [("mia", "member")]
    await ws.close()


async def test_errors_are_json_with_codes(http: httpx.AsyncClient) -> None:
    room = await make_room(http)
    cases = [
        (await http.post("/v1/rooms", content=b"{", headers=auth(ADMIN)), 400, "bad_request"),
        (
            await http.post("/v1/rooms", json={"name": "bad name"}, headers=auth(ADMIN)),
            400,
            "bad_request",
        ),
        (await http.post("/v1/rooms", json={"name": room}, headers=auth(ADMIN)), 409, "conflict"),
        (
            await http.post(
                f"/v1/rooms/{room}/messages", json={"body": "x" * 20000}, headers=auth(ADMIN)
            ),
            413,
            "too_large",
        ),
        (
            await http.get(f"/v1/rooms/{room}/messages?cursor=zz", headers=auth(ADMIN)),
            400,
            "bad_request",
        ),
        (
            await http.get(f"/v1/rooms/{room}/messages?limit=0", headers=auth(ADMIN)),
            400,
            "bad_request",
        ),
        (
            await http.get(f"/v1/rooms/{room}/messages?cursor=b%C2%B2", headers=auth(ADMIN)),
            400,
            "bad_request",
        ),
        (await http.get("/v1/nothing-here", headers=auth(ADMIN)), 404, "not_found"),
        (
            await http.get("/v1/rooms", headers={"Authorization": "Bearer nope"}),
            401,
            "unauthorized",
        ),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code


async def test_message_paging_with_cursors(http: httpx.AsyncClient) -> None:
    room = await make_room(http)
    for i in range(7):
        await post(http, room, f"m{i}")
    seen = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (
            await http.get(f"/v1/rooms/{room}/messages", params=params, headers=auth(MEMBER))
        ).json()
        seen = [m["seq"] for m in page["messages"]] + seen
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(range(1, 8))
    forward = (
        await http.get(f"/v1/rooms/{room}/messages", params={"cursor": "a5"}, headers=auth(MEMBER))
    ).json()
    assert [m["seq"] for m in forward["messages"]] == [6, 7]


async def test_http_posts_reach_websocket_members_in_order(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    room = await make_room(http)
    ws = await Client.connect(server.url, MEMBER)
    await ws.join(room)
    other = await Client.connect(server.url, token("wes"))
    await other.join(room)
    await ws.say(room, "from ws 1")
    http_ack = await post(http, room, "from http")
    await other.say(room, "from ws 2")
    edit = await http.patch(
        f"/v1/rooms/{room}/messages/{http_ack['message_id']}",
        json={"body": "from http, edited"},
        headers=auth(ADMIN),
    )
    assert edit.status_code == 200
    delete = await http.delete(
        f"/v1/rooms/{room}/messages/{http_ack['message_id']}", headers=auth(ADMIN)
    )
    assert delete.status_code == 200 and delete.json()["seq"] == 5
    kinds = ("message", "message.edited", "message.deleted")
    got = [await ws.next(*kinds) for _ in range(5)]
    assert [(e["seq"], e["type"]) for e in got] == [
        (1, "message"),
        (2, "message"),
        (3, "message"),
        (4, "message.edited"),
        (5, "message.deleted"),
    ]
    assert got[1]["body"] == "from http" and got[1]["sender"] == "ada"
    assert http_ack["seq"] == 2
    assert [await other.next(*kinds) for _ in range(5)] == got
    presence = (await http.get(f"/v1/rooms/{room}/presence", headers=auth(AGENT))).json()
    assert sorted(m["user_id"] for m in presence["members"]) == ["mia", "wes"]
    await ws.close()
    await other.close()


def scrape(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def test_metrics_count_scripted_traffic(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = start_server(tmp_path_factory.mktemp("data"))
    try:
        async with httpx.AsyncClient(base_url=srv.api, timeout=10) as http:
            room = await make_room(http)
            a = await Client.connect(srv.url, token("a1"))
            b = await Client.connect(srv.url, token("b1"))
            await a.join(room)
            await b.join(room)
            await b.barrier()
            before = scrape((await http.get("/metrics")).text)
            ws_sent, http_sent = 7, 3
            for i in range(ws_sent):
                await a.say(room, f"w{i}")
            for i in range(http_sent):
                await post(http, room, f"h{i}")
            for _ in range(ws_sent + http_sent):
                await b.next("message")
            bad = await Client.connect(srv.url)
            await bad.send({"type": "auth", "token": token("x", ttl=-10)})
            await bad.closed_code()
            after = scrape((await http.get("/metrics")).text)
        delta = {k: after[k] - before.get(k, 0.0) for k in after}
        total = ws_sent + http_sent
        assert delta["nexus_messages_received_total"] == total
        assert delta["nexus_messages_stored_total"] == total
        assert delta["nexus_messages_delivered_total"] == 2 * total
        assert delta['nexus_auth_failures_total{reason="token expired"}'] == 1
        assert delta["nexus_ack_seconds_count"] == total
        assert after["nexus_connections_open"] == 2
        assert 0 <= after["nexus_event_loop_lag_seconds"] < 60
        posted = [
            k
            for k in delta
            if k.startswith("nexus_http_requests_total")
            and 'route="/v1/rooms/{room}/messages"' in k
            and 'status="201"' in k
        ]
        assert posted and delta[posted[0]] == http_sent
        assert re.search(r"nexus_commit_seconds_bucket\{le=", "\n".join(after))
        await a.close()
        await b.close()
    finally:
        srv.stop()


locked_metrics = module_server(metrics_token="scrape-secret")


async def test_metrics_token(locked_metrics: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=locked_metrics.api) as http:
        assert (await http.get("/metrics")).status_code == 401
        ok = await http.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert ok.status_code == 200 and "nexus_connections_open" in ok.text
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 200


# -- hardening: no client input gives a 500; one record shape on both transports ---------------


async def test_odd_input_is_4xx_never_500(http: httpx.AsyncClient) -> None:
    room = await make_room(http)
    long_id = "\U0001f600" * 128  # 128 characters, 512 bytes: more than a storage key holds
    cases = [
        ("GET", f"/v1/rooms/{room}/messages/{long_id}", None, 404),
        ("PATCH", f"/v1/rooms/{room}/messages/{long_id}", {"body": "x"}, 404),
        ("POST", f"/v1/rooms/{room}/messages", {"body": "x", "client_msg_id": long_id}, 400),
        ("POST", f"/v1/rooms/{room}/messages", {"body": "x", "reply_to": long_id}, 400),
        ("GET", f"/v1/rooms/{room}/messages?cursor=a%F0%9F%98%80", None, 400),
        ("GET", f"/v1/rooms/{room}/messages?cursor=a99999999999999999999", None, 400),
        ("GET", f"/v1/rooms?cursor={'%C3%A9' * 200}", None, 400),
        ("GET", f"/v1/users?cursor={'x' * 300}", None, 400),
        ("GET", f"/v1/rooms/{room}/members?cursor=%00", None, 400),
    ]
    for method, path, body, status in cases:
        response = await http.request(method, path, json=body, headers=auth(ADMIN))
        assert response.status_code == status, (method, path, response.text)
        assert response.json()["error"]["code"] in ("bad_request", "not_found")
    # a 4-byte client_msg_id that fits in 128 bytes is fine
    ok = await http.post(
        f"/v1/rooms/{room}/messages",
        headers=auth(ADMIN),
        json={"body": "x", "client_msg_id": "\U0001f600" * 32},
    )
    assert ok.status_code == 201, ok.text


async def test_http_and_websocket_records_have_one_shape(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    room = await make_room(http)
    first = await post(http, room, "to be edited")
    await post(http, room, "plain")
    edited = await http.patch(
        f"/v1/rooms/{room}/messages/{first['message_id']}",
        json={"body": "edited"},
        headers=auth(ADMIN),
    )
    assert edited.status_code == 200
    page = (await http.get(f"/v1/rooms/{room}/messages", headers=auth(ADMIN))).json()
    client = await Client.connect(server.url, ADMIN)
    history = await client.request({"type": "history", "room": room})
    await client.close()
    assert page["messages"] == history["messages"]
    assert all(
        None not in (m.get("edited"), m.get("target_id"))
        or "edited" not in m
        or "target_id" not in m
        for m in page["messages"]
    )
    plain = page["messages"][1]
    assert "edited" not in plain and "deleted" not in plain and "target_id" not in plain
    one = (await http.get(f"/v1/rooms/{room}/messages/{plain['id']}", headers=auth(ADMIN))).json()
    assert one == plain


async def test_message_page_limit_is_lowered_to_history_max_limit(http: httpx.AsyncClient) -> None:
    room = await make_room(http)
    for i in range(3):
        await post(http, room, f"m{i}")
    small = await http.get(f"/v1/rooms/{room}/messages?limit=2", headers=auth(ADMIN))
    assert len(small.json()["messages"]) == 2 and small.json()["has_more"]
    big = await http.get(f"/v1/rooms/{room}/messages?limit=100000", headers=auth(ADMIN))
    assert big.status_code == 200 and len(big.json()["messages"]) == 3
