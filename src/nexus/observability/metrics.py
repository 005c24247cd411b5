"""Prometheus exposition. Counters live where the work happens (Cython outboxes, router,
pipeline, gateway) as plain integers; this collector reads them at scrape time, so the
per-frame path never calls into a metrics library."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .._speedups.histogram import Histogram
from .loop_lag import LoopLag

if TYPE_CHECKING:
    from .._speedups.router import FlushQueue, Router
    from ..core.pipeline import MessagePipeline


class GatewayCounters(Protocol):
    """The gateway's plain counters (gateway.stats.GatewayStats)."""

    connections: int
    auth_failures: dict[str, int]
    bytes_in: int
    frames_in: int
    rate_limited: int
    slow_consumers: int
    pings_refused: int
    refused_closes: int
    floods: int


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    counts = hist.cumulative()
    buckets = [(repr(b), c) for b, c in zip(hist.bounds(), counts, strict=False)]
    buckets.append(("+Inf", counts[-1]))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.sum)


@dataclass(frozen=True, slots=True)
class MetricSources:
    """Where the counters live; passed in explicitly (app.py), read at scrape time."""

    stats: GatewayCounters
    connections: Callable[[], int]
    sessions: Callable[[], int]
    pipeline: MessagePipeline
    router: Router
    flush_queue: FlushQueue
    loop_lag: LoopLag
    extra: tuple[Callable[[], Iterable[Any]], ...] = ()  # extensions' metric families


class NexusCollector(Collector):
    def __init__(self, sources: MetricSources) -> None:
        self._src = sources

    def collect(self) -> Iterator[Metric]:
        src = self._src
        pipeline = src.pipeline
        stats = src.stats
        flush_queue = src.flush_queue
        yield GaugeMetricFamily(
            "nexus_connections_open", "Open WebSocket connections", value=src.connections()
        )
        yield GaugeMetricFamily(
            "nexus_event_loop_lag_seconds",
            "Worst event-loop lag seen since the previous scrape (how late a 250 ms timer fired)",
            value=src.loop_lag.take_max(),
        )
        yield GaugeMetricFamily(
            "nexus_sessions_authenticated", "Authenticated sessions", value=src.sessions()
        )
        yield CounterMetricFamily(
            "nexus_connections", "WebSocket connections accepted", value=stats.connections
        )
        failures = CounterMetricFamily(
            "nexus_auth_failures", "Failed authentications", labels=["reason"]
        )
        for reason, count in sorted(stats.auth_failures.items()):
            failures.add_metric([reason], count)
        yield failures
        yield CounterMetricFamily(
            "nexus_messages_received",
            "Write requests received (message.send/edit/delete over WebSocket and HTTP)",
            value=pipeline.accepted_entries,
        )
        yield CounterMetricFamily(
            "nexus_messages_stored",
            "Entries committed to the room log",
            value=pipeline.committed_entries,
        )
        yield CounterMetricFamily(
            "nexus_messages_delivered",
            "Room events fanned out to local members",
            value=src.router.deliveries,
        )
        yield CounterMetricFamily(
            "nexus_frames_out", "WebSocket frames written", value=flush_queue.frames_out
        )
        yield CounterMetricFamily(
            "nexus_socket_writes", "Socket writes (after coalescing)", value=flush_queue.writes
        )
        yield CounterMetricFamily(
            "nexus_bytes_out", "WebSocket bytes written", value=flush_queue.bytes_out
        )
        yield CounterMetricFamily(
            "nexus_bytes_in", "WebSocket payload bytes received", value=stats.bytes_in
        )
        yield CounterMetricFamily(
            "nexus_frames_in", "WebSocket frames received", value=stats.frames_in
        )
        yield CounterMetricFamily(
            "nexus_rate_limited", "Requests refused with rate_limited", value=stats.rate_limited
        )
        yield CounterMetricFamily(
            "nexus_pings_refused",
            "WebSocket PINGs over the rate limit, left unanswered",
            value=stats.pings_refused,
        )
        yield CounterMetricFamily(
            "nexus_refused_disconnects",
            "Connections closed (4004) for refused or flooding frames",
            value=stats.refused_closes + stats.floods,
        )
        yield CounterMetricFamily(
            "nexus_slow_consumer_disconnects",
            "Connections closed for exceeding the outbound buffer",
            value=stats.slow_consumers,
        )
        yield CounterMetricFamily("nexus_commits", "Commit batches", value=pipeline.commits)
        yield CounterMetricFamily(
            "nexus_commit_failures", "Failed commit batches", value=pipeline.failed_commits
        )
        yield _histogram(
            "nexus_commit_batch_entries", "Entries per commit batch", pipeline.batch_entries
        )
        yield _histogram(
            "nexus_commit_seconds",
            "Commit latency (write transaction + sync)",
            pipeline.commit_seconds,
        )
        yield _histogram(
            "nexus_ack_seconds", "Time from accepting a write to its ack", pipeline.ack_seconds
        )
        yield from self._hooks()
        for collect in src.extra:
            yield from collect()

    def _hooks(self) -> Iterator[Metric]:
        runners = self._src.pipeline.observers.runners
        lag = GaugeMetricFamily(
            "nexus_observer_lag_events",
            "Committed entries an observer has not handled yet",
            labels=["observer"],
        )
        delivered = CounterMetricFamily(
            "nexus_observer_delivered", "Entries handed to an observer", labels=["observer"]
        )
        errors = CounterMetricFamily(
            "nexus_observer_errors", "Failed observer calls (retried)", labels=["observer"]
        )
        for runner in runners:
            lag.add_metric([runner.name], runner.lag)
            delivered.add_metric([runner.name], runner.delivered)
            errors.add_metric([runner.name], runner.errors)
        yield lag
        yield delivered
        yield errors
        slots = self._src.pipeline.interceptors.slots
        faults = CounterMetricFamily(
            "nexus_interceptor_faults",
            "Interceptor calls that raised, overran or answered nonsense",
            labels=["interceptor"],
        )
        denials = CounterMetricFamily(
            "nexus_interceptor_denials", "Writes denied", labels=["interceptor"]
        )
        quarantined = GaugeMetricFamily(
            "nexus_interceptor_quarantined",
            "1 while an interceptor is quarantined",
            labels=["interceptor"],
        )
        for slot in slots:
            faults.add_metric([slot.name], slot.faults)
            denials.add_metric([slot.name], slot.denials)
            quarantined.add_metric([slot.name], int(slot.quarantined))
        yield faults
        yield denials
        yield quarantined


class HttpMetrics:
    """HTTP request counter, labelled by route template and status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "nexus_http_requests",
            "HTTP API requests",
            ["method", "route", "status"],
            registry=registry,
        )


def make_registry(sources: MetricSources) -> tuple[CollectorRegistry, HttpMetrics]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NexusCollector(sources))
    return registry, HttpMetrics(registry)
