"""MCP client figures: calls by server, tool and outcome; each server's state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .connection import ServerConnection

OUTCOMES = ("ok", "tool_error", "refused", "timeout", "unavailable", "denied")


class McpMetrics:
    def __init__(self, connections: Callable[[], list[ServerConnection]]) -> None:
        self.calls: Counter[tuple[str, str, str]] = Counter()  # (server, tool, outcome)
        self._connections = connections

    def collect(self) -> Iterator[object]:
        calls = CounterMetricFamily(
            "nexus_mcp_tool_calls",
            f"MCP tool calls by server, tool and outcome ({', '.join(OUTCOMES)})",
            labels=["server", "tool", "outcome"],
        )
        for (server, tool, outcome), n in sorted(self.calls.items()):
            calls.add_metric([server, tool, outcome], n)
        yield calls
        up = GaugeMetricFamily(
            "nexus_mcp_server_up", "1 while the MCP server's session is open", labels=["server"]
        )
        failures = GaugeMetricFamily(
            "nexus_mcp_server_failures",
            "Failed connections to the MCP server in a row",
            labels=["server"],
        )
        for connection in self._connections():
            up.add_metric([connection.config.name], 1 if connection.state == "up" else 0)
            failures.add_metric([connection.config.name], connection.failures)
        yield up
        yield failures
