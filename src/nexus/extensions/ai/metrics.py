"""The agent runtime's figures: plain counters updated per turn, read at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ..._speedups.histogram import Histogram
from .resilient import PolicyEvent

TTFT_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
TURN_BOUNDS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class AgentMetrics:
    def __init__(self) -> None:
        self.turns: Counter[tuple[str, str]] = Counter()  # (agent, outcome)
        self.tokens_in: Counter[tuple[str, str]] = Counter()  # (agent, model)
        self.tokens_out: Counter[tuple[str, str]] = Counter()
        self.provider_errors: Counter[tuple[str, str]] = Counter()  # (provider, kind)
        self.cancellations: Counter[str] = Counter()  # agent
        self.refused: Counter[tuple[str, str]] = Counter()  # (agent, reason)
        self.tool_calls: Counter[tuple[str, str]] = Counter()  # (tool, ok|error)
        self.summaries: Counter[str] = Counter()  # agent: rolling summaries written
        self.policy: Counter[tuple[str, str]] = Counter()  # (provider, retry|fallback|cooldown)
        self.ttft = Histogram(TTFT_BOUNDS)
        self.turn_seconds = Histogram(TURN_BOUNDS)
        self.running = 0

    def policy_event(self, event: PolicyEvent) -> None:
        """A retry or fallback follows a failed provider call the turn never sees."""
        self.policy[(event.provider, event.action)] += 1
        if event.action != "cooldown":
            self.provider_errors[(event.provider, event.error.kind)] += 1

    def collect(self) -> Iterator[object]:
        turns = CounterMetricFamily(
            "nexus_agent_turns",
            "Agent turns by outcome (completed, failed, cancelled, interrupted)",
            labels=["agent", "outcome"],
        )
        for (agent, outcome), n in sorted(self.turns.items()):
            turns.add_metric([agent, outcome], n)
        yield turns
        for name, doc, counter in (
            ("nexus_agent_tokens_in", "Prompt tokens by agent and model", self.tokens_in),
            ("nexus_agent_tokens_out", "Reply tokens by agent and model", self.tokens_out),
        ):
            family = CounterMetricFamily(name, doc, labels=["agent", "model"])
            for (agent, model), n in sorted(counter.items()):
                family.add_metric([agent, model], n)
            yield family
        errors = CounterMetricFamily(
            "nexus_provider_errors",
            "Failed provider calls by kind (retried ones included)",
            labels=["provider", "kind"],
        )
        for (provider, kind), n in sorted(self.provider_errors.items()):
            errors.add_metric([provider, kind], n)
        yield errors
        policy = CounterMetricFamily(
            "nexus_provider_policy",
            "Retries, fallbacks and cooldowns of hosted providers before a reply started",
            labels=["provider", "action"],
        )
        for (provider, action), n in sorted(self.policy.items()):
            policy.add_metric([provider, action], n)
        yield policy
        cancels = CounterMetricFamily(
            "nexus_agent_cancellations", "Replies cancelled", labels=["agent"]
        )
        for agent, n in sorted(self.cancellations.items()):
            cancels.add_metric([agent], n)
        yield cancels
        refused = CounterMetricFamily(
            "nexus_agent_refused", "Triggers refused (busy, budget)", labels=["agent", "reason"]
        )
        for (agent, reason), n in sorted(self.refused.items()):
            refused.add_metric([agent, reason], n)
        yield refused
        tools = CounterMetricFamily(
            "nexus_agent_tool_calls", "Tool calls by result", labels=["tool", "result"]
        )
        for (tool, result), n in sorted(self.tool_calls.items()):
            tools.add_metric([tool, result], n)
        yield tools
        summaries = CounterMetricFamily(
            "nexus_agent_summaries", "Rolling summaries written", labels=["agent"]
        )
        for agent, n in sorted(self.summaries.items()):
            summaries.add_metric([agent], n)
        yield summaries
        yield GaugeMetricFamily(
            "nexus_agent_turns_running", "Turns in progress", value=self.running
        )
        for name, doc, hist in (
            ("nexus_agent_time_to_first_token_seconds", "Provider call to first text", self.ttft),
            ("nexus_agent_turn_seconds", "Trigger to the reply's end", self.turn_seconds),
        ):
            counts = hist.cumulative()
            buckets = [(repr(b), c) for b, c in zip(hist.bounds(), counts, strict=False)]
            buckets.append(("+Inf", counts[-1]))
            yield HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.sum)
