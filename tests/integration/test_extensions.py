"""The two seams in a real server, driven by the probe extensions in tests/extensions:
interceptor verdicts, faults and quarantine, an asynchronous interceptor that keeps
idempotency and order, observers that see every committed entry once or more across a
kill -9, and a failing observer that harms nobody else."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .harness import Client, ServerProcess, start_server, token

EXTENSIONS = Path(__file__).resolve().parents[1] / "extensions"


def probe_server(
    data_dir: Path, workdir: Path, record_delay: float = 0.0, **settings: object
) -> ServerProcess:
    return start_server(
        data_dir,
        extensions="seam_probes:install",
        env_extra={
            "PYTHONPATH": str(EXTENSIONS),
            "SEAM_RECORD_FILE": str(workdir / "recorded.tsv"),
            "SEAM_RECORD_DELAY": str(record_delay),
            "SEAM_FLAKY_FIXED": str(workdir / "flaky-fixed"),
        },
        **settings,
    )


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("probes")
    srv = probe_server(work / "data", work)
    yield srv
    assert srv.stop() == 0, "".join(srv.output)


async def metrics(server: ServerProcess) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{server.api}/metrics")).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def until(check: object, what: str, timeout: float = 15.0) -> None:
    """Poll ``check()`` (an async callable returning bool) until it holds. Observers run on
    their own schedule: there is no event to wait for, only a state to reach."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# -- interceptors -----------------------------------------------------------------------------


async def test_interceptor_verdicts(probes: ServerProcess) -> None:
    ann = await Client.connect(probes.url, token("ann"))
    await ann.join("guarded-verdicts")
    denied = await ann.request(
        {
            "type": "message.send",
            "room": "guarded-verdicts",
            "body": "a forbidden thing",
            "client_msg_id": "d1",
        }
    )
    assert (denied["type"], denied["code"]) == ("error", "forbidden"), denied
    assert "forbidden word" in denied["message"]
    replaced = await ann.say("guarded-verdicts", "darn it")
    annotated = await ann.say("guarded-verdicts", "fine", meta={"lang": "en"})
    raised = await ann.say("guarded-verdicts", "boom")  # fail-open: stored as sent
    huge = await ann.say("guarded-verdicts", "huge")  # an unstorable replacement is a fault
    page = await ann.request({"type": "history", "room": "guarded-verdicts"})
    by_seq = {m["seq"]: m for m in page["messages"]}
    assert by_seq[replaced["seq"]]["body"] == "d**n it"
    assert by_seq[annotated["seq"]]["meta"] == {"lang": "en", "checked_by": "censor"}
    assert by_seq[raised["seq"]]["body"] == "boom" and by_seq[raised["seq"]]["meta"] is None
    assert by_seq[huge["seq"]]["body"] == "huge"
    assert len(page["messages"]) == 4  # the denied one was never stored
    # The denial released the client_msg_id: the same id may be used for a new message.
    retry = await ann.say("guarded-verdicts", "now allowed", client_msg_id="d1")
    assert not retry["duplicate"]
    # A room the interceptor does not want is untouched.
    await ann.join("plain-room")
    plain = await ann.say("plain-room", "darn it")
    plain_page = await ann.request({"type": "history", "room": "plain-room"})
    assert plain_page["messages"][-1]["body"] == "darn it" and plain["seq"] == 1
    figures = await metrics(probes)
    assert figures['nexus_interceptor_faults_total{interceptor="censor"}'] >= 2
    assert figures['nexus_interceptor_denials_total{interceptor="censor"}'] >= 1
    await ann.close()


async def test_repeated_faults_quarantine_a_fail_open_interceptor(tmp_path: Path) -> None:
    srv = probe_server(tmp_path / "data", tmp_path)
    try:
        ann = await Client.connect(srv.url, token("ann"))
        await ann.join("guarded-q")
        for i in range(5):
            await ann.say("guarded-q", f"boom {i}")
        figures = await metrics(srv)
        assert figures['nexus_interceptor_quarantined{interceptor="censor"}'] == 1
        # Quarantined and fail-open: no longer consulted, writes pass unchanged.
        ok = await ann.say("guarded-q", "a forbidden word, unchecked")
        assert ok["type"] == "ack"
        await ann.close()
    finally:
        assert srv.stop() == 0


async def test_async_interceptor_keeps_order_and_idempotency(probes: ServerProcess) -> None:
    ann = await Client.connect(probes.url, token("ann"))
    await ann.join("remote-order")
    for i in range(3):
        await ann.send(
            {
                "type": "message.send",
                "room": "remote-order",
                "body": f"m{i}",
                "client_msg_id": f"r{i}",
                "id": f"s{i}",
            }
        )
    # A resend while the first is still being checked is answered with the same entry.
    await ann.send(
        {
            "type": "message.send",
            "room": "remote-order",
            "body": "m0",
            "client_msg_id": "r0",
            "id": "again",
        }
    )
    await ann.send(
        {
            "type": "message.send",
            "room": "remote-order",
            "body": "no thanks",
            "client_msg_id": "r3",
            "id": "s3",
        }
    )
    answers = {}
    while len(answers) < 5:
        event = await ann.next("ack", "error")
        answers[event["id"]] = event
    assert [answers[f"s{i}"]["seq"] for i in range(3)] == [1, 2, 3]
    assert answers["again"]["duplicate"] and answers["again"]["seq"] == 1
    assert (answers["s3"]["type"], answers["s3"]["code"]) == ("error", "forbidden")
    page = await ann.request({"type": "history", "room": "remote-order"})
    assert [m["body"] for m in page["messages"]] == ["m0", "m1", "m2"]
    assert all(m["meta"] == {"remote": "ok"} for m in page["messages"])
    # Over HTTP the same interceptor answers the request.
    headers = {"Authorization": f"Bearer {token('ann')}"}
    async with httpx.AsyncClient(base_url=probes.api, headers=headers, timeout=10) as http:
        ok = await http.post("/v1/rooms/remote-order/messages", json={"body": "via http"})
        no = await http.post("/v1/rooms/remote-order/messages", json={"body": "nope"})
    assert ok.status_code == 201 and ok.json()["seq"] == 4
    assert no.status_code == 403 and no.json()["error"]["code"] == "forbidden"
    await ann.close()


# -- observers --------------------------------------------------------------------------------


def recorded(path: Path) -> list[tuple[str, int, str]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        room, seq, kind = line.split("\t")
        rows.append((room.split("\x1f", 1)[1], int(seq), kind))
    return rows


async def test_observer_sees_every_entry_in_order(probes: ServerProcess, tmp_path: Path) -> None:
    ann = await Client.connect(probes.url, token("ann"))
    await ann.join("recorded-order")
    acks = [await ann.say("recorded-order", f"m{i}") for i in range(20)]
    edit = await ann.request(
        {
            "type": "message.edit",
            "room": "recorded-order",
            "message_id": acks[0]["message_id"],
            "body": "edited",
        }
    )
    assert edit["type"] == "ack"
    record_file = probe_record_file(probes)

    async def caught_up() -> bool:
        return len([r for r in recorded(record_file) if r[0] == "recorded-order"]) >= 21

    await until(caught_up, "the recorder to see 21 entries")
    rows = [r for r in recorded(record_file) if r[0] == "recorded-order"]
    assert [seq for _, seq, _ in rows] == list(range(1, 22))
    assert rows[-1][2] == "message.edited" and rows[0][2] == "message"
    await ann.close()


def probe_record_file(server: ServerProcess) -> Path:
    return server.data_dir.parent / "recorded.tsv"


async def test_observer_resumes_after_kill_9_without_loss(tmp_path: Path) -> None:
    record_file = tmp_path / "recorded.tsv"
    acked: set[int] = set()
    srv = probe_server(tmp_path / "data", tmp_path, record_delay=0.3)
    try:
        ann = await Client.connect(srv.url, token("ann"))
        await ann.join("recorded-crash")
        for i in range(200):
            await ann.send(
                {"type": "message.send", "room": "recorded-crash", "body": f"m{i}", "id": i}
            )
            if i % 20 == 19:  # let some acks arrive, then keep sending
                event = await ann.next("ack")
                acked.add(event["seq"])
        srv.stop(signal.SIGKILL)
        try:
            while True:
                event = await ann.next("ack", timeout=2)
                acked.add(event["seq"])
        except Exception:
            pass  # the connection died with the server
    finally:
        srv.stop(signal.SIGKILL)
    assert acked
    before = {seq for room, seq, _ in recorded(record_file) if room == "recorded-crash"}
    assert not acked <= before, "the slow recorder had everything: no resume to test"
    srv = probe_server(tmp_path / "data", tmp_path)
    try:

        async def all_seen() -> bool:
            seen = {seq for room, seq, _ in recorded(record_file) if room == "recorded-crash"}
            return acked <= seen

        await until(all_seen, "the recorder to catch up from its cursor after the restart")
        figures = await metrics(srv)
        assert figures['nexus_observer_lag_events{observer="recorder"}'] == 0
        seen = [seq for room, seq, _ in recorded(record_file) if room == "recorded-crash"]
        # at least once: duplicates are allowed (a batch whose cursor was not yet durable),
        # gaps are not
        assert set(range(1, max(seen) + 1)) == set(seen)
    finally:
        assert srv.stop() == 0


async def test_a_failing_observer_harms_nobody(probes: ServerProcess) -> None:
    record_file = probe_record_file(probes)
    ann = await Client.connect(probes.url, token("ann"))
    bob = await Client.connect(probes.url, token("bob"))
    for c in (ann, bob):
        await c.join("flaky-room")
        await c.join("recorded-beside-flaky")
    for i in range(10):
        assert (await ann.say("flaky-room", f"f{i}"))["type"] == "ack"
        await ann.say("recorded-beside-flaky", f"r{i}")
    seen = [e for e in await bob.barrier() if e["type"] == "message"]
    assert len([e for e in seen if e["room"] == "flaky-room"]) == 10  # fan-out unaffected

    async def recorder_done() -> bool:
        return len([r for r in recorded(record_file) if r[0] == "recorded-beside-flaky"]) >= 10

    await until(recorder_done, "the recorder, beside a failing observer")

    async def flaky_lags() -> bool:
        figures = await metrics(probes)
        return (
            figures['nexus_observer_lag_events{observer="flaky"}'] == 10
            and figures['nexus_observer_errors_total{observer="flaky"}'] >= 1
        )

    await until(flaky_lags, "the failing observer's lag and errors to show")
    (probes.data_dir.parent / "flaky-fixed").touch()  # the observer recovers

    async def flaky_caught_up() -> bool:
        return (await metrics(probes))['nexus_observer_lag_events{observer="flaky"}'] == 0

    await until(flaky_caught_up, "the recovered observer to catch up", timeout=60)
    await ann.close()
    await bob.close()
