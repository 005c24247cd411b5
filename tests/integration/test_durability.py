"""Nothing acknowledged is lost: kill -9 rounds, resume seams, idempotency across reconnects,
edits and deletes as sequenced events, graceful drain, a full store."""

from __future__ import annotations

import asyncio
import random
import signal
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import websockets

from nexus.store import LmdbStore
from nexus.store.keys import log_prefix, room_key, seq_of

from .harness import Client, start_server, token


def read_log(data_dir: Path, tenant: str, room: str) -> list[dict[str, object]]:
    """Every record of a room straight from the LMDB files (server stopped)."""
    store = LmdbStore(data_dir / "lmdb", map_size=1 << 30)
    try:
        prefix = log_prefix(room_key(tenant, room))
        out = []
        with store.env.begin() as txn:
            cur = txn.cursor(db=store.log_db)
            ok = cur.set_range(prefix)
            while ok and cur.key().startswith(prefix):
                record = orjson.loads(cur.value())
                assert record["seq"] == seq_of(cur.key())
                out.append(record)
                ok = cur.next()
        return out
    finally:
        store.close()


class Writer:
    """A client that keeps sending and records what it is acknowledged and what it sees."""

    def __init__(self, name: str, progress: asyncio.Event) -> None:
        self.name = name
        self.progress = progress  # set on every ack
        self.acked: dict[str, int] = {}  # body -> seq
        self.seen: list[int] = []  # seqs received, in order, across reconnects
        self.counter = 0

    @property
    def last_seen(self) -> int:
        return self.seen[-1] if self.seen else 0

    def on_event(self, event: dict[str, object]) -> None:
        if event["type"] in ("message", "message.edited", "message.deleted"):
            seq = event["seq"]
            assert seq == self.last_seen + 1, (self.name, self.last_seen, seq)
            self.seen.append(seq)  # type: ignore[arg-type]
        elif event["type"] == "ack":
            self.acked[event["client_msg_id"]] = event["seq"]  # type: ignore[index]
            self.progress.set()

    async def run(self, url: str, room: str, stop: asyncio.Event) -> None:
        try:
            client = await Client.connect(url, token(self.name))
            await client.send({"type": "room.join", "room": room, "since": self.last_seen})
            reader = asyncio.create_task(self._read(client))
            while not stop.is_set() and not reader.done():
                self.counter += 1
                body = f"{self.name}-{self.counter}"
                await client.send(
                    {"type": "message.send", "room": room, "body": body, "client_msg_id": body}
                )
                # Pacing, not synchronisation: an uneven stream, acks still in flight.
                await asyncio.sleep(random.uniform(0, 0.004))
            if not reader.done():
                reader.cancel()
            await client.close()
        except (websockets.ConnectionClosed, OSError):
            pass

    async def _read(self, client: Client) -> None:
        try:
            async for raw in client.ws:
                self.on_event(orjson.loads(raw))
        except websockets.ConnectionClosed:
            pass

    async def catch_up(self, url: str, room: str, until: int) -> None:
        client = await Client.connect(url, token(self.name))
        await client.send({"type": "room.join", "room": room, "since": self.last_seen})
        while self.last_seen < until:
            self.on_event(await client.recv())
        await client.close()


async def acks_reach(writers: list[Writer], target: int, timeout: float = 20.0) -> None:
    """Wait until the writers together were acknowledged ``target`` messages."""
    progress = writers[0].progress
    async with asyncio.timeout(timeout):
        while sum(len(w.acked) for w in writers) < target:
            progress.clear()
            await progress.wait()


async def test_acked_messages_survive_sigkill_rounds(tmp_path: Path) -> None:
    room = "crash"
    progress = asyncio.Event()
    writers = [Writer(f"w{i}", progress) for i in range(3)]
    rng = random.Random(7)
    for _ in range(4):
        server = start_server(
            tmp_path,
            rate_conn_per_s=5000,
            rate_conn_burst=5000,
            rate_user_per_s=5000,
            rate_user_burst=5000,
        )
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(server.url, room, stop)) for w in writers]
        # Kill at a random point of the traffic (counted in acks, not guessed in seconds,
        # so every round has some), while the writers still have messages in flight.
        await acks_reach(writers, sum(len(w.acked) for w in writers) + rng.randint(20, 80))
        server.stop(signal.SIGKILL)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
    # Final life: every writer resumes and must end with the whole, gapless log.
    server = start_server(tmp_path)
    probe = await Client.connect(server.url, token("probe"))
    top = (await probe.join(room))["seq"]
    await probe.close()
    await asyncio.gather(*(w.catch_up(server.url, room, top) for w in writers))
    assert server.stop() == 0

    records = read_log(tmp_path, "acme", room)
    assert [r["seq"] for r in records] == list(range(1, top + 1))
    bodies = [r["body"] for r in records]
    assert len(bodies) == len(set(bodies)), "a message was stored twice"
    by_body = {r["body"]: r["seq"] for r in records}
    acked = {body: seq for w in writers for body, seq in w.acked.items()}
    print("crash test:", len(acked), "acked,", top, "stored")
    assert len(acked) > 50, "too little traffic to mean anything"
    for body, seq in acked.items():
        assert by_body.get(body) == seq, f"acked {body} at seq {seq} is not in the log"
    for w in writers:
        assert w.seen == list(range(1, top + 1))


async def test_resume_seam_under_live_traffic(tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        replay_page=16,
        rate_conn_per_s=10000,
        rate_conn_burst=10000,
        rate_user_per_s=10000,
        rate_user_burst=10000,
    )
    try:
        room = "seam"
        sender = await Client.connect(server.url, token("talker"))
        await sender.join(room)
        total = 1500
        for i in range(300):
            await sender.send({"type": "message.send", "room": room, "body": f"m{i}"})
        while (await sender.next("ack"))["seq"] < 300:
            pass

        async def keep_sending() -> None:
            for i in range(300, total):
                await sender.send({"type": "message.send", "room": room, "body": f"m{i}"})
                if i % 50 == 0:
                    # Pacing: let the late joiner's replay run while the traffic goes on.
                    await asyncio.sleep(0.001)

        sending = asyncio.create_task(keep_sending())
        late = await Client.connect(server.url, token("late"))
        await late.send({"type": "room.join", "room": room, "since": 0})
        seqs = []
        while len(seqs) < total:
            event = await late.next("message")
            seqs.append(event["seq"])
        await sending
        assert seqs == list(range(1, total + 1))
        assert not [e for e in await late.barrier() if e["type"] == "message"]
    finally:
        server.stop()


async def test_idempotent_resend_across_reconnect(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        first = await Client.connect(server.url, token("ann"))
        await first.join("idem")
        ack = await first.say("idem", "hello", client_msg_id="k1")
        # Send and vanish without waiting for the ack.
        await first.send(
            {"type": "message.send", "room": "idem", "body": "unacked", "client_msg_id": "k2"}
        )
        await first.close()

        again = await Client.connect(server.url, token("ann"))
        await again.join("idem")
        dup = await again.say("idem", "hello", client_msg_id="k1")
        assert dup["duplicate"] and (dup["seq"], dup["message_id"]) == (
            ack["seq"],
            ack["message_id"],
        )
        resent = await again.say("idem", "unacked", client_msg_id="k2")
        page = await again.request({"type": "history", "room": "idem"})
        bodies = [m["body"] for m in page["messages"]]
        assert bodies == ["hello", "unacked"]
        assert resent["seq"] == 2
        await again.close()
        # And across a restart of the server.
        assert server.stop() == 0
        server = start_server(tmp_path)
        third = await Client.connect(server.url, token("ann"))
        await third.join("idem")
        after_restart = await third.say("idem", "hello", client_msg_id="k1")
        assert after_restart["duplicate"] and after_restart["seq"] == ack["seq"]
        await third.close()
    finally:
        server.stop()


async def test_edit_and_delete_are_sequenced_and_permissioned(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        room = "edits"
        owner = await Client.connect(server.url, token("olga"))  # creates the room: admin of it
        ann = await Client.connect(server.url, token("ann"))
        ben = await Client.connect(server.url, token("ben"))
        for c in (owner, ann, ben):
            await c.join(room)
        sent = await ann.say(room, "first draft")
        mid = sent["message_id"]

        denied = await ben.request(
            {"type": "message.edit", "room": room, "message_id": mid, "body": "hijack"}
        )
        assert denied["code"] == "forbidden"
        edit = await ann.request(
            {
                "type": "message.edit",
                "room": room,
                "message_id": mid,
                "body": "final text",
                "client_msg_id": "e1",
            }
        )
        assert edit["type"] == "ack" and edit["seq"] == 2
        live = await ben.next("message.edited")
        assert (live["seq"], live["target_id"], live["target_seq"], live["body"], live["by"]) == (
            2,
            mid,
            1,
            "final text",
            "ann",
        )

        other = await ben.say(room, "ben's line")
        by_admin = await owner.request(
            {"type": "message.delete", "room": room, "message_id": other["message_id"]}
        )
        assert by_admin["type"] == "ack" and by_admin["seq"] == 4
        deleted = await ann.next("message.deleted")
        assert (deleted["target_id"], deleted["by"]) == (other["message_id"], "olga")
        gone = await ann.request(
            {"type": "message.edit", "room": room, "message_id": other["message_id"], "body": "x"}
        )
        assert gone["code"] == "conflict"
        missing = await ann.request({"type": "message.delete", "room": room, "message_id": "nope"})
        assert missing["code"] == "not_found"

        page = await ann.request({"type": "history", "room": room})
        msgs = {m["seq"]: m for m in page["messages"]}
        assert [m["type"] for m in page["messages"]] == [
            "message",
            "message.edited",
            "message",
            "message.deleted",
        ]
        assert msgs[1]["body"] == "final text" and msgs[1]["edited_by"] == "ann"
        assert msgs[1]["edited"] >= msgs[1]["ts"]
        assert msgs[3]["body"] == "" and msgs[3]["deleted_by"] == "olga"

        # A client resuming from before the edits learns about them in seq order.
        late = await Client.connect(server.url, token("cy"))
        await late.send({"type": "room.join", "room": room, "since": 1})
        replay = [await late.next("message", "message.edited", "message.deleted") for _ in range(3)]
        assert [(e["type"], e["seq"]) for e in replay] == [
            ("message.edited", 2),
            ("message", 3),
            ("message.deleted", 4),
        ]
        for c in (owner, ann, ben, late):
            await c.close()
    finally:
        server.stop()


async def test_retried_delete_gets_its_ack_and_archived_room_refuses_changes(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path)
    try:
        room = "archive-me"
        olga = await Client.connect(server.url, token("olga"))  # creator: room admin
        ann = await Client.connect(server.url, token("ann"))
        for c in (olga, ann):
            await c.join(room)
        first = await ann.say(room, "to be deleted")
        kept = await ann.say(room, "to be kept")
        delete = {
            "type": "message.delete",
            "room": room,
            "message_id": first["message_id"],
            "client_msg_id": "del-1",
        }
        done = await ann.request(delete)
        assert done["type"] == "ack" and done["seq"] == 3
        # The retry finds the message deleted, but it is the same request: same ack, no event.
        again = await ann.request(delete)
        assert (again["type"], again["seq"], again["message_id"], again.get("duplicate")) == (
            "ack",
            3,
            done["message_id"],
            True,
        )

        req = urllib.request.Request(
            f"{server.api}/v1/rooms/{room}",
            method="DELETE",
            headers={"Authorization": f"Bearer {token('olga')}"},
        )
        assert await asyncio.to_thread(http_status, req) == 200
        for change in (
            {
                "type": "message.edit",
                "room": room,
                "message_id": kept["message_id"],
                "body": "late edit",
            },
            {"type": "message.delete", "room": room, "message_id": kept["message_id"]},
            {"type": "message.send", "room": room, "body": "late send"},
        ):
            refused = await olga.request(change)
            assert (refused["type"], refused["code"]) == ("error", "forbidden"), change
        # A retry of something committed before the archive still gets its ack.
        late_retry = await ann.request(delete)
        assert (late_retry["seq"], late_retry.get("duplicate")) == (3, True)
        page = await ann.request({"type": "history", "room": room})
        assert [m["seq"] for m in page["messages"]] == [1, 2, 3]
        assert page["messages"][1]["body"] == "to be kept"
        for c in (olga, ann):
            await c.close()
    finally:
        server.stop()


def http_status(url: str | urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_graceful_drain(tmp_path: Path) -> None:
    server = start_server(tmp_path, drain_delay=1.0)
    client = await Client.connect(server.url, token("ann"))
    await client.join("drain")
    acked = [(await client.say("drain", f"m{i}"))["seq"] for i in range(20)]
    assert http_status(server.http + "/readyz") == 200
    server.proc.send_signal(signal.SIGTERM)
    status = 200
    for _ in range(100):
        status = await asyncio.to_thread(http_status, server.http + "/readyz")
        if status == 503:
            break
    assert status == 503
    assert await client.closed_code() == 1001
    assert await asyncio.to_thread(server.proc.wait, 20) == 0
    records = read_log(tmp_path, "acme", "drain")
    assert [r["seq"] for r in records] == acked


async def test_full_store_refuses_with_internal_and_keeps_serving(tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        store_map_size=256 * 1024,
        rate_conn_per_s=10000,
        rate_conn_burst=10000,
        rate_user_per_s=10000,
        rate_user_burst=10000,
    )
    try:
        client = await Client.connect(server.url, token("ann"))
        await client.join("full")
        acked = []
        refused = 0
        for i in range(200):
            reply = await client.request(
                {"type": "message.send", "room": "full", "body": f"{i:04d}" + "x" * 4000}
            )
            if reply["type"] == "ack":
                assert not refused, "an ack after a refusal means a gap or reorder risk"
                acked.append(reply["seq"])
            else:
                assert reply["code"] == "internal", reply
                refused += 1
                if refused >= 3:
                    break
        assert refused >= 3 and acked == list(range(1, len(acked) + 1))
        # Reads still work and show exactly the acknowledged messages.
        page = await client.request({"type": "history", "room": "full", "limit": 100})
        assert [m["seq"] for m in page["messages"]][-3:] == acked[-3:]
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        assert any("COMMIT FAILED" in line for line in server.output)
        await client.close()
    finally:
        server.stop()
    records = read_log(tmp_path, "acme", "full")
    assert [r["seq"] for r in records] == acked


async def test_retention_trims_oldest(tmp_path: Path) -> None:
    server = start_server(tmp_path, retention_max_count=5, retention_interval=0.1)
    try:
        client = await Client.connect(server.url, token("ann"))
        await client.join("short")
        for i in range(12):
            await client.say("short", f"m{i}")
        # Retention runs on the server's own timer (every 0.1 s here) and tells no client:
        # there is no event to wait for, so poll history, for at most 10 s.
        for _ in range(200):
            page = await client.request({"type": "history", "room": "short", "after": 0})
            if page["messages"][0]["seq"] == 8:
                break
            await asyncio.sleep(0.05)
        assert [m["seq"] for m in page["messages"]] == [8, 9, 10, 11, 12]
        joined = await (await Client.connect(server.url, token("ben"))).join("short", since=0)
        assert (joined["seq"], joined["first_seq"]) == (12, 8)
        await client.close()
    finally:
        server.stop()
