"""Fixtures of the multi-node tests: a fresh nats-server with JetStream per test (random
port, temp store), and the Nexus nodes on it. A missing nats-server binary fails the
tests: cluster mode is part of the product, not an optional extra."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.natsd import NatsServer, NatsServerMissing, nats_server_binary

from .nodes import Cluster


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    try:
        binary = nats_server_binary()
    except NatsServerMissing as exc:
        pytest.fail(str(exc))
    server = NatsServer(tmp_path / "jetstream", binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cluster(nats: NatsServer, tmp_path: Path) -> Iterator[Cluster]:
    """Nodes are started by the test (``cluster.start(3)``), with fast failure detection
    (heartbeat 0.5 s, node timeout 2.5 s) so presence tests need not wait 5 s a node, and a
    stream name of its own."""
    nodes = Cluster(
        nats,
        tmp_path / "nodes",
        stream=f"NEXUS_T{uuid.uuid4().hex[:8].upper()}",
        cluster_heartbeat_interval=0.5,
        cluster_node_timeout=2.5,
    )
    try:
        yield nodes
    finally:
        nodes.stop()
