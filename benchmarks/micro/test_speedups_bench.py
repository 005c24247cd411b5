"""Micro-benchmarks: each `_speedups` module against its plain-Python model.

Run with `make bench` (pytest-benchmark); not part of the default test run.
"""

from __future__ import annotations

from typing import Any

import pytest

from models import framing_model, histogram_model, ratelimit_model, router_model
from nexus._speedups import framing, histogram, ratelimit, router

PAYLOAD = b'{"type":"message","room":"r","seq":1,"body":"' + b"x" * 100 + b'"}'


@pytest.mark.parametrize("impl", [framing, framing_model], ids=["cython", "model"])
def test_frame_text(benchmark: Any, impl: Any) -> None:
    benchmark(impl.frame_text, PAYLOAD)


@pytest.mark.parametrize("impl", [ratelimit, ratelimit_model], ids=["cython", "model"])
def test_token_bucket_take(benchmark: Any, impl: Any) -> None:
    bucket = impl.TokenBucket(1e9, 1e9)
    now = [0.0]

    def take() -> int:
        now[0] += 1e-6
        return bucket.take(now[0])

    benchmark(take)


class NullLoop:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def call_soon(self, cb: Any) -> None:
        self.callbacks.append(cb)


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


@pytest.mark.parametrize("impl", [router, router_model], ids=["cython", "model"])
def test_fanout_1000_members_and_flush(benchmark: Any, impl: Any) -> None:
    loop = NullLoop()
    queue = impl.FlushQueue(loop)
    rtr = impl.Router()
    for _ in range(1000):
        rtr.join("room", impl.Outbox(NullTransport(), queue, 1 << 30, None))
    frame = framing.frame_text(PAYLOAD)

    def one_broadcast() -> None:
        rtr.broadcast("room", frame)
        for cb in loop.callbacks:
            cb()
        loop.callbacks.clear()

    benchmark(one_broadcast)


@pytest.mark.parametrize("impl", [histogram, histogram_model], ids=["cython", "model"])
def test_histogram_observe(benchmark: Any, impl: Any) -> None:
    h = impl.Histogram([0.001, 0.01, 0.1, 1.0])
    benchmark(h.observe, 0.05)
