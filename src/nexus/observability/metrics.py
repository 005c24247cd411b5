"""Prometheus exposition. Counters live where the work happens (Cython outboxes, router,
pipeline, gateway) as plain integers; this collector reads them at scrape time, so the
per-frame path never calls into a metrics library."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric,
)
from prometheus_client.registry import Collector

from .._speedups.histogram import Histogram
from .loop_lag import LoopLag

if TYPE_CHECKING:
    from ..gateway.server import Gateway


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    counts = hist.cumulative()
    buckets = [(repr(b), c) for b, c in zip(hist.bounds(), counts)]
    buckets.append(("+Inf", counts[-1]))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.sum)


class NexusCollector(Collector):
    def __init__(self, gateway: Gateway, loop_lag: LoopLag) -> None:
        self._gw = gateway
        self._lag = loop_lag

    def collect(self) -> Iterator[Metric]:
        gw = self._gw
        node = gw.node
        pipeline = node.pipeline
        stats = gw.stats
        yield GaugeMetricFamily("nexus_connections_open", "Open WebSocket connections",
                                value=len(gw.connections))
        yield GaugeMetricFamily("nexus_event_loop_lag_seconds",
                                "Worst event-loop lag seen since the previous scrape "
                                "(how late a 250 ms timer fired)", value=self._lag.take_max())
        yield GaugeMetricFamily("nexus_sessions_authenticated", "Authenticated sessions",
                                value=len(node.sessions))
        yield CounterMetricFamily("nexus_connections", "WebSocket connections accepted",
                                  value=stats.connections)
        failures = CounterMetricFamily("nexus_auth_failures", "Failed authentications",
                                       labels=["reason"])
        for reason, count in sorted(stats.auth_failures.items()):
            failures.add_metric([reason], count)
        yield failures
        yield CounterMetricFamily("nexus_messages_received", "Write requests received "
                                  "(message.send/edit/delete over WebSocket and HTTP)",
                                  value=pipeline.accepted_entries)
        yield CounterMetricFamily("nexus_messages_stored", "Entries committed to the room log",
                                  value=pipeline.committed_entries)
        yield CounterMetricFamily("nexus_messages_delivered",
                                  "Room events fanned out to local members",
                                  value=node.router.deliveries)
        yield CounterMetricFamily("nexus_frames_out", "WebSocket frames written",
                                  value=gw.flush_queue.frames_out)
        yield CounterMetricFamily("nexus_socket_writes", "Socket writes (after coalescing)",
                                  value=gw.flush_queue.writes)
        yield CounterMetricFamily("nexus_bytes_out", "WebSocket bytes written",
                                  value=gw.flush_queue.bytes_out)
        yield CounterMetricFamily("nexus_bytes_in", "WebSocket payload bytes received",
                                  value=stats.bytes_in)
        yield CounterMetricFamily("nexus_frames_in", "WebSocket frames received",
                                  value=stats.frames_in)
        yield CounterMetricFamily("nexus_rate_limited", "Requests refused with rate_limited",
                                  value=stats.rate_limited)
        yield CounterMetricFamily("nexus_pings_refused",
                                  "WebSocket PINGs over the rate limit, left unanswered",
                                  value=stats.pings_refused)
        yield CounterMetricFamily("nexus_refused_disconnects",
                                  "Connections closed (4004) for refused or flooding frames",
                                  value=stats.refused_closes + stats.floods)
        yield CounterMetricFamily("nexus_slow_consumer_disconnects",
                                  "Connections closed for exceeding the outbound buffer",
                                  value=stats.slow_consumers)
        yield CounterMetricFamily("nexus_commits", "Commit batches", value=pipeline.commits)
        yield CounterMetricFamily("nexus_commit_failures", "Failed commit batches",
                                  value=pipeline.failed_commits)
        yield _histogram("nexus_commit_batch_entries", "Entries per commit batch",
                         pipeline.batch_entries)
        yield _histogram("nexus_commit_seconds", "Commit latency (write transaction + sync)",
                         pipeline.commit_seconds)
        yield _histogram("nexus_ack_seconds", "Time from accepting a write to its ack",
                         pipeline.ack_seconds)


class HttpMetrics:
    """HTTP request counter, labelled by route template and status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("nexus_http_requests", "HTTP API requests",
                                ["method", "route", "status"], registry=registry)


def make_registry(gateway: Gateway, loop_lag: LoopLag) -> tuple[CollectorRegistry, HttpMetrics]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NexusCollector(gateway, loop_lag))
    return registry, HttpMetrics(registry)
