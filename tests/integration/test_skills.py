"""Agent Skills end to end on real servers (real LMDB, real sockets): installs over HTTP
(good archives, refused ones with their reasons), versions kept by digest, scope
precedence, permissions, the catalog budget, activation by tool call (the fake provider
on loopback) and ``/skill-name args`` answered through the agent path (the offline
provider)."""

from __future__ import annotations

import io
import itertools
import json
import tarfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import wasmtime

from fakes.provider_server import ProviderServer, openai_frames, stream_script
from nexus.store import LmdbStore

from .harness import Client, ServerProcess, module_server, start_server, token
from .test_agents import reply_of, streamed_text

EXAMPLES = Path(__file__).parents[2] / "examples" / "skills"
ADMIN = token("ada", roles=("admin", "member"))
MEMBER = token("mia", roles=("member",))
OTHER_ADMIN = token("olaf", tenant="globex", roles=("admin", "member"))
_rooms = itertools.count()

skills_server = module_server(
    skills_dir=str(EXAMPLES),
    agent_delta_interval=0,
    skill_archive_max_bytes=100_000,
    skill_file_max_bytes=20_000,
)


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def skill_md(name: str, description: str = "Helps.", body: str = "Do it well.") -> bytes:
    return f"---\nname: {name}\ndescription: {description}\n---\n{body}\n".encode()


def zip_of(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return buf.getvalue()


def tgz_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in reversed(list(files.items())):  # another order, same digest
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def put(
    http: httpx.AsyncClient, name: str, data: bytes, kind: str = "application/zip", **params: str
) -> httpx.Response:
    return await http.put(
        f"/v1/skills/{name}", content=data, headers={"content-type": kind}, params=params
    )


@pytest.fixture
async def admin(skills_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=skills_server.api, headers=auth(ADMIN), timeout=20) as c:
        yield c


async def new_room(
    http: httpx.AsyncClient, agent: str | None = None, private: bool = False, **fields: Any
) -> str:
    room = f"skills-{next(_rooms)}"
    r = await http.post("/v1/rooms", json={"name": room, "private": private})
    assert r.status_code == 201, r.text
    if agent is not None:
        r = await http.post("/v1/agents", json={"name": agent, **fields})
        assert r.status_code in (201, 409), r.text
        r = await http.put(f"/v1/rooms/{room}/members/{agent}", json={"role": "member"})
        assert r.status_code == 200, r.text
    return room


# -- installs ---------------------------------------------------------------------------


async def test_install_keeps_versions_by_digest(admin: httpx.AsyncClient) -> None:
    files = {"SKILL.md": skill_md("notes-a"), "references/style.md": b"# Style\nshort lines"}
    r = await put(admin, "notes-a", zip_of(files))
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["name"] == "notes-a" and first["version"] == 1 and first["scope"] == "tenant"
    assert first["digest"].startswith("sha256:") and first["installed_by"] == "ada"
    assert first["files"] == {"SKILL.md": len(files["SKILL.md"]), "references/style.md": 19}
    # the same files as a tar.gz inside a folder named as the skill: the same content
    again = await put(
        admin, "notes-a", tgz_of({f"notes-a/{k}": v for k, v in files.items()}), "application/gzip"
    )
    assert again.status_code == 200 and again.json()["digest"] == first["digest"]
    assert again.json()["version"] == 1
    changed = {**files, "SKILL.md": skill_md("notes-a", body="Do it better.")}
    second = (await put(admin, "notes-a", zip_of(changed))).json()
    assert second["version"] == 2 and second["digest"] != first["digest"]
    got = (await admin.get("/v1/skills/notes-a")).json()
    assert got["digest"] == second["digest"]
    assert [v["version"] for v in got["versions"]] == [2, 1]
    old = await admin.get(f"/v1/skills/notes-a/versions/{first['digest']}")
    assert old.status_code == 200
    assert old.json()["body"] == "Do it well." and old.json()["references"] == [
        "references/style.md"
    ]
    # the first content again: it is active again, under the next number, not a copy
    back = await put(admin, "notes-a", zip_of(files))
    assert back.status_code == 200 and back.json()["version"] == 3
    got = (await admin.get("/v1/skills/notes-a")).json()
    assert [(v["version"], v["digest"]) for v in got["versions"]] == [
        (3, first["digest"]),
        (2, second["digest"]),
    ]
    missing = await admin.get("/v1/skills/notes-a/versions/sha256:00")
    assert missing.status_code == 404
    assert (await admin.delete("/v1/skills/notes-a")).status_code == 204
    assert (await admin.get("/v1/skills/notes-a")).status_code == 404
    assert (await admin.delete("/v1/skills/notes-a")).status_code == 404


@pytest.mark.parametrize(
    ("name", "archive", "status", "message"),
    [
        ("bad-a", zip_of({"SKILL.md": skill_md("bad-a"), "../x": b"x"}), 400, "../x: '..' is"),
        ("bad-a", zip_of({"SKILL.md": skill_md("bad-a"), "/etc/x": b"x"}), 400, "absolute paths"),
        (
            "bad-a",
            zip_of({"SKILL.md": skill_md("bad-a")}, symlinks={"leak": "../../etc/passwd"}),
            400,
            "leak: symbolic links are not allowed in a skill",
        ),
        (
            "bad-a",
            zip_of({"SKILL.md": skill_md("bad-a"), "big.md": b"x" * 20_001}),
            413,
            "big.md: over 20000 bytes",
        ),
        ("bad-a", b"x" * 100_001, 413, "the archive is over 100000 bytes"),
        (
            "bad-a",
            zip_of({"SKILL.md": b"---\nname: [bad-a\n---\nbody\n"}),
            400,
            "SKILL.md: the frontmatter is not valid YAML at line 3: expected ',' or ']'",
        ),
        (
            "bad-a",
            zip_of({"SKILL.md": b"no frontmatter here"}),
            400,
            "SKILL.md must start with a line '---'",
        ),
        (
            "bad-a",
            zip_of({"SKILL.md": skill_md("bad-b")}),
            400,
            "SKILL.md names the skill 'bad-b' but its folder is 'bad-a'",
        ),
        (
            "bad-a",
            zip_of({"bad-b/SKILL.md": skill_md("bad-b")}),
            400,
            "the archive's folder is 'bad-b' but the skill is installed as 'bad-a'",
        ),
        (
            "bad-a",
            zip_of({"SKILL.md": skill_md("bad-a"), "scripts/x.py": b"print(1)"}),
            400,
            "scripts/x.py: only WebAssembly modules (.wasm) may be skill scripts here",
        ),
        (
            "bad-a",
            zip_of({"SKILL.md": skill_md("bad-a"), "scripts/x.wasm": b"not wasm"}),
            400,
            "scripts/x.wasm: not a valid WebAssembly module",
        ),
        ("bad-a", zip_of({"README.md": b"x"}), 400, "no SKILL.md"),
        ("bad-a", b"plain text", 400, "neither a zip nor a tar.gz"),
    ],
)
async def test_bad_archives_are_refused_with_the_reason(
    admin: httpx.AsyncClient, name: str, archive: bytes, status: int, message: str
) -> None:
    r = await put(admin, name, archive)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == ("too_large" if status == 413 else "bad_request")
    assert message in error["message"], error
    assert (await admin.get(f"/v1/skills/{name}")).status_code == 404


async def test_bad_requests_around_the_archive(admin: httpx.AsyncClient) -> None:
    good = zip_of({"SKILL.md": skill_md("req-a")})
    r = await put(admin, "req-a", good, "application/json")
    assert r.status_code == 400 and "content-type application/zip" in r.json()["error"]["message"]
    r = await put(admin, "Req_A", good)
    assert r.status_code == 400
    r = await put(admin, "req-a", good, scope="team:x")
    assert r.status_code == 400 and "scope must be tenant" in r.json()["error"]["message"]
    r = await put(admin, "req-a", good, scope="room:no-such-room")
    assert r.status_code == 404 and "no room no-such-room" in r.json()["error"]["message"]
    r = await put(admin, "req-a", good, scope="agent:nobody")
    assert r.status_code == 404 and "no agent nobody" in r.json()["error"]["message"]
    r = await put(admin, "req-a", good, scope="server")
    assert r.status_code == 409


# -- scopes and permissions -------------------------------------------------------------


async def test_scope_precedence_agent_room_tenant_server(admin: httpx.AsyncClient) -> None:
    room = await new_room(admin, agent="scoper")
    for scope, text in (("tenant", "tenant"), (f"room:{room}", "room"), ("agent:scoper", "agent")):
        r = await put(
            admin, "layered", zip_of({"SKILL.md": skill_md("layered", text)}), scope=scope
        )
        assert r.status_code == 201, r.text

    async def seen(**params: str) -> dict[str, str]:
        r = await admin.get("/v1/skills", params=params)
        assert r.status_code == 200, r.text
        return {s["name"]: s["description"] for s in r.json()["skills"]}

    assert (await seen(room=room, agent="scoper"))["layered"] == "agent"
    assert (await seen(room=room))["layered"] == "room"
    assert (await seen(agent="scoper"))["layered"] == "agent"
    assert (await seen())["layered"] == "tenant"
    # the server's folder skill is seen by every tenant, below the tenant's own
    assert (await seen())["meeting-notes"].startswith("Turn the room's recent discussion")
    one = (await admin.get("/v1/skills/layered", params={"room": room})).json()
    assert one["scope"] == f"room:{room}" and one["description"] == "room"
    server = (await admin.get("/v1/skills/meeting-notes")).json()
    assert server["scope"] == "server" and server["source"] == "folder"
    everything = (await admin.get("/v1/skills", params={"installed": "true"})).json()["skills"]
    assert {(s["name"], s["scope"]) for s in everything if s["name"] == "layered"} == {
        ("layered", "tenant"),
        ("layered", f"room:{room}"),
        ("layered", "agent:scoper"),
    }
    r = await admin.delete("/v1/skills/layered", params={"scope": f"room:{room}"})
    assert r.status_code == 204
    assert (await seen(room=room))["layered"] == "tenant"
    r = await admin.delete("/v1/skills/meeting-notes", params={"scope": "server"})
    assert r.status_code == 409


async def test_permissions(skills_server: ServerProcess, admin: httpx.AsyncClient) -> None:
    r = await put(admin, "perm-a", zip_of({"SKILL.md": skill_md("perm-a")}))
    assert r.status_code == 201
    secret = await new_room(admin, private=True)
    r = await put(
        admin, "hidden-a", zip_of({"SKILL.md": skill_md("hidden-a")}), scope=f"room:{secret}"
    )
    assert r.status_code == 201
    async with httpx.AsyncClient(base_url=skills_server.api, headers=auth(MEMBER)) as member:
        r = await put(member, "perm-b", zip_of({"SKILL.md": skill_md("perm-b")}))
        assert r.status_code == 403
        assert (await member.delete("/v1/skills/perm-a")).status_code == 403
        names = {s["name"] for s in (await member.get("/v1/skills")).json()["skills"]}
        assert "perm-a" in names and "hidden-a" not in names
        assert (await member.get("/v1/skills", params={"installed": "true"})).status_code == 403
        assert (await member.get("/v1/skills", params={"room": secret})).status_code == 404
        r = await member.get("/v1/skills/hidden-a", params={"scope": f"room:{secret}"})
        assert r.status_code == 404
        assert (await member.get("/v1/skills/perm-a")).status_code == 200
    async with httpx.AsyncClient(base_url=skills_server.api, headers=auth(OTHER_ADMIN)) as other:
        names = {s["name"] for s in (await other.get("/v1/skills")).json()["skills"]}
        assert "perm-a" not in names and "meeting-notes" in names
        assert (await other.get("/v1/skills/perm-a")).status_code == 404
        assert (await other.delete("/v1/skills/perm-a")).status_code == 404
    async with httpx.AsyncClient(base_url=skills_server.api) as nobody:
        assert (await nobody.get("/v1/skills")).status_code == 401


# -- agents -----------------------------------------------------------------------------


async def test_the_catalog_respects_its_budget(skills_server: ServerProcess) -> None:
    tok = token("cat", tenant="catalog", roles=("admin", "member"))
    async with httpx.AsyncClient(base_url=skills_server.api, headers=auth(tok), timeout=20) as http:
        room = await new_room(http, agent="reader")
        for i in range(40):
            name = f"skill-{i:02}"
            description = f"Skill number {i} does one particular thing very thoroughly indeed."
            r = await put(http, name, zip_of({"SKILL.md": skill_md(name, description)}))
            assert r.status_code == 201, r.text
        r = await http.get(f"/v1/rooms/{room}/context", params={"agent": "reader"})
        assert r.status_code == 200, r.text
        system = r.json()["messages"][0]["content"]
        listed = [line for line in system.splitlines() if line.startswith("- ")]
        assert 0 < len(listed) < 41  # of 40 of the tenant's and the server's one
        assert listed[0].startswith("- meeting-notes") and listed[1].startswith("- skill-00")
        left = 41 - len(listed)
        assert f"({left} more skill(s) not listed: the catalog is limited to 400 tokens)" in system
        pinned = [i for i in r.json()["trace"]["items"] if i["section"] == "pinned"]
        assert pinned and all(i["included"] for i in pinned)
        assert max(i["tokens"] for i in pinned) <= 400


async def test_an_agent_activates_a_skill_by_tool_call(tmp_path: Path) -> None:
    async with ProviderServer() as fake:

        def tool_round(call_id: str, name: str, arguments: dict[str, str]) -> object:
            frames = openai_frames(
                text=(),
                tool_calls=[(call_id, name, [json.dumps(arguments)])],
                finish="tool_calls",
                usage=(10, 2),
            )
            return stream_script(frames)

        fake.push(
            tool_round("c1", "activate_skill", {"name": "meeting-notes"}),
            tool_round(
                "c2",
                "read_skill_reference",
                {"name": "meeting-notes", "path": "references/format.md"},
            ),
            stream_script(openai_frames(text=("Notes follow.",), usage=(10, 2))),
        )
        provider = {
            "type": "openai",
            "base_url": f"{fake.url}/v1",
            "api_key": "sk-test",
            "model": "gpt-test",
            "retries": 0,
        }
        server = start_server(
            tmp_path,
            ai_providers=json.dumps({"hosted": provider}),
            agent_delta_interval=0,
            skills_dir=str(EXAMPLES),
        )
        try:
            async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN)) as http:
                room = await new_room(http, agent="scribe", provider="hosted")
                digest = (await http.get("/v1/skills/meeting-notes")).json()["digest"]
            ann = await Client.connect(server.url, ADMIN)
            await ann.join(room)
            await ann.say(room, "@scribe notes of today please")
            calls = [await ann.next("tool.call", timeout=20) for _ in range(2)]
            results = [await ann.next("tool.result", timeout=20) for _ in range(2)]
            seen = await reply_of(ann)
            assert [c["name"] for c in calls] == ["activate_skill", "read_skill_reference"]
            activated, reference = results
            assert activated["ok"] and activated["result"].startswith(
                f"Skill meeting-notes (digest {digest}, version 1, scope server)"
            )
            assert "references/format.md" in activated["result"]
            assert "# Meeting notes" in activated["result"]
            assert reference["ok"] and "House style for formal notes" in reference["result"]
            assert digest in reference["result"]
            assert seen["end"]["text"] == "Notes follow."
            first = fake.requests[0].json
            offered = {t["function"]["name"] for t in first["tools"]}
            assert {"activate_skill", "read_skill_reference"} <= offered
            assert "run_skill_script" not in offered  # no skill here has scripts
            system = first["messages"][0]["content"]
            assert "- meeting-notes: Turn the room's recent discussion" in system
            assert "# Meeting notes" not in system  # only the catalog until activated
            await ann.close()
        finally:
            server.stop()


async def test_slash_skill_runs_through_the_agent_and_streams(
    skills_server: ServerProcess, admin: httpx.AsyncClient
) -> None:
    # the agent answers every message of the room: the invocation must still get one reply
    room = f"skills-{next(_rooms)}"
    r = await admin.post("/v1/rooms", json={"name": room})
    assert r.status_code == 201
    r = await admin.post("/v1/agents", json={"name": "runner", "triggers": {"rooms": [room]}})
    assert r.status_code == 201, r.text
    r = await admin.put(f"/v1/rooms/{room}/members/runner", json={"role": "member"})
    assert r.status_code == 200
    digest = (await admin.get("/v1/skills/meeting-notes")).json()["digest"]
    ann = await Client.connect(skills_server.url, ADMIN)
    await ann.join(room)
    await ann.say(room, "We decided to launch on Friday; Bo owns the release notes")
    await reply_of(ann)  # the room trigger answers that one
    ack = await ann.say(room, "/meeting-notes launch decisions")
    activated = await ann.next("skill.activated", timeout=20)
    assert activated["skill"] == "meeting-notes" and activated["digest"] == digest
    assert activated["agent"] == "runner" and activated["by"] == "ada"
    assert activated["message_id"] == ack["message_id"]
    assert activated["args"] == "launch decisions" and activated["sender"] == "runner"
    seen = await reply_of(ann)
    assert seen["started"]["reply_to"] == ack["message_id"]
    assert seen["end"]["type"] == "message.completed"
    assert seen["end"]["text"] and streamed_text(seen) == seen["end"]["text"]
    history = (await admin.get(f"/v1/rooms/{room}/messages", params={"limit": 50})).json()
    replies = [
        m
        for m in history["messages"]
        if m["type"] == "message.started" and m.get("reply_to") == ack["message_id"]
    ]
    assert len(replies) == 1  # one answer: the skill's, not also the room trigger's
    await ann.close()


async def test_slash_skill_without_an_agent_is_a_notice(
    skills_server: ServerProcess, admin: httpx.AsyncClient
) -> None:
    room = await new_room(admin)
    ann = await Client.connect(skills_server.url, ADMIN)
    await ann.join(room)
    ack = await ann.say(room, "/meeting-notes")
    notice = await ann.next("skill.notice", timeout=20)
    assert notice["skill"] == "meeting-notes" and notice["reason"] == "no_agent"
    assert notice["message_id"] == ack["message_id"]
    assert "no agent in this room can run /meeting-notes" in notice["message"]
    # a slash word that is no skill is an ordinary message
    await ann.say(room, "/not-a-skill hello")
    assert not [e for e in await ann.barrier() if e["type"].startswith("skill.")]
    await ann.close()


async def test_an_agent_scoped_skill_runs_with_its_agent(
    skills_server: ServerProcess, admin: httpx.AsyncClient
) -> None:
    room = await new_room(admin, agent="ay")
    r = await admin.post("/v1/agents", json={"name": "bee"})
    assert r.status_code in (201, 409)
    assert (await admin.put(f"/v1/rooms/{room}/members/bee", json={"role": "member"})).is_success
    r = await put(
        admin, "bees-only", zip_of({"SKILL.md": skill_md("bees-only")}), scope="agent:bee"
    )
    assert r.status_code == 201, r.text
    ann = await Client.connect(skills_server.url, ADMIN)
    await ann.join(room)
    ack = await ann.say(room, "/bees-only now")
    activated = await ann.next("skill.activated", timeout=20)
    assert activated["agent"] == "bee" and activated["scope"] == "agent:bee"
    seen = await reply_of(ann)
    assert seen["started"]["sender"] == "bee" and seen["started"]["reply_to"] == ack["message_id"]
    await ann.close()


async def test_installs_survive_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    files = {"SKILL.md": skill_md("kept"), "references/r.md": b"reference text"}
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN)) as http:
            first = (await put(http, "kept", zip_of(files))).json()
            changed = {**files, "references/r.md": b"reference text, revised"}
            second = (await put(http, "kept", zip_of(changed))).json()
    finally:
        assert server.stop() == 0
    server = start_server(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN)) as http:
            got = (await http.get("/v1/skills/kept")).json()
            assert [(v["version"], v["digest"]) for v in got["versions"]] == [
                (2, second["digest"]),
                (1, first["digest"]),
            ]
            r = await http.get(f"/v1/skills/kept/versions/{first['digest']}/files/references/r.md")
            assert r.status_code == 200 and r.text == "reference text"
            r = await http.get(f"/v1/skills/kept/versions/{second['digest']}/files/nope.md")
            assert r.status_code == 404
            assert (await http.delete("/v1/skills/kept")).status_code == 204
    finally:
        assert server.stop() == 0
    store = LmdbStore(tmp_path / "lmdb", map_size=1 << 30)
    try:
        assert store.records("skill") == []  # the records and the file blobs went
    finally:
        store.close()
    server = start_server(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN)) as http:
            assert (await http.get("/v1/skills/kept")).status_code == 404
    finally:
        assert server.stop() == 0


ECHO_WAT = """(module
  (memory (export "memory") 1)
  (func (export "nexus_input") (param i32) (result i32) (i32.const 1024))
  (func (export "run") (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $n)))))"""
LOOP_WAT = """(module
  (memory (export "memory") 1)
  (func (export "nexus_input") (param i32) (result i32) (i32.const 1024))
  (func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0)))"""


async def test_an_agent_runs_a_skill_script_in_the_wasm_sandbox(tmp_path: Path) -> None:
    async with ProviderServer() as fake:

        def tool_round(call_id: str, name: str, arguments: dict[str, Any]) -> object:
            frames = openai_frames(
                text=(),
                tool_calls=[(call_id, name, [json.dumps(arguments)])],
                finish="tool_calls",
                usage=(10, 2),
            )
            return stream_script(frames)

        fake.push(
            tool_round(
                "c1", "run_skill_script", {"name": "wordy", "script": "echo", "input": {"n": 1}}
            ),
            tool_round("c2", "run_skill_script", {"name": "wordy", "script": "scripts/loop.wasm"}),
            stream_script(openai_frames(text=("Done.",), usage=(10, 2))),
        )
        provider = {"type": "openai", "base_url": f"{fake.url}/v1", "api_key": "k", "retries": 0}
        server = start_server(
            tmp_path,
            ai_providers=json.dumps({"hosted": provider}),
            agent_delta_interval=0,
            plugin_fuel_max=5_000_000,
        )
        try:
            files = {
                "SKILL.md": skill_md("wordy", body="Run scripts/echo.wasm on the input."),
                "scripts/echo.wasm": bytes(wasmtime.wat2wasm(ECHO_WAT)),
                "scripts/loop.wasm": bytes(wasmtime.wat2wasm(LOOP_WAT)),
            }
            async with httpx.AsyncClient(base_url=server.api, headers=auth(ADMIN)) as http:
                r = await put(http, "wordy", zip_of(files))
                assert r.status_code == 201, r.text
                view = r.json()
                assert view["scripts"] == ["scripts/echo.wasm", "scripts/loop.wasm"]
                room = await new_room(http, agent="runner", provider="hosted")
            ann = await Client.connect(server.url, ADMIN)
            await ann.join(room)
            await ann.say(room, "@runner count it")
            echoed, looped = [await ann.next("tool.result", timeout=20) for _ in range(2)]
            await reply_of(ann)
            assert echoed["ok"] and json.loads(echoed["result"]) == {
                "skill": "wordy",
                "digest": view["digest"],
                "input": {"n": 1},
            }
            assert not looped["ok"]
            assert looped["result"].startswith("error: scripts/loop.wasm failed (")
            offered = {t["function"]["name"] for t in fake.requests[0].json["tools"]}
            assert "run_skill_script" in offered
            await ann.close()
        finally:
            server.stop()
