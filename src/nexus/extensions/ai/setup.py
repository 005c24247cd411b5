"""Builds the agent runtime from the settings (called by app.py)."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.trace import Tracer

from ...core.agents import AgentRegistry
from ...core.extension_host import ExtensionHost
from ...core.memory import Memory
from ...core.streams import LiveStreams
from .config import parse_providers
from .memory_tools import memory_tools
from .metrics import AgentMetrics
from .offline import OfflineProvider
from .provider import Provider
from .registry import build_providers as build_hosted
from .resilient import PolicyEvent
from .runtime import AgentRuntime
from .tools import ToolRegistry


def build_providers(
    host: ExtensionHost, on_event: Callable[[PolicyEvent], None] | None = None
) -> dict[str, Provider]:
    configs = parse_providers(host.settings.ai_providers)
    offline = OfflineProvider(part_delay=configs["offline"].part_delay)
    providers: dict[str, Provider] = {"offline": offline}
    for name, config in configs.items():  # more offline ones, e.g. a slow one for demos
        if config.type == "offline" and name != "offline":
            providers[name] = OfflineProvider(part_delay=config.part_delay, name=name)
    hosted = {n: c for n, c in configs.items() if c.type != "offline"}
    if hosted:
        providers.update(build_hosted(hosted, offline, on_event=on_event, local=providers))
    return providers


def build_runtime(
    host: ExtensionHost,
    agents: AgentRegistry,
    streams: LiveStreams,
    tracer: Tracer | None = None,
    memory: Memory | None = None,
) -> AgentRuntime:
    """The runtime, registered as an observer and a service of ``host``; with ``memory``,
    agents get the memory tools and relevant memories in their context."""
    metrics = AgentMetrics()
    providers = build_providers(host, metrics.policy_event)
    tools = ToolRegistry()
    if memory is not None:
        for tool in memory_tools(memory):
            tools.add(tool)
    runtime = AgentRuntime(
        host,
        agents,
        providers,
        tools,
        streams,
        tracer,
        metrics,
        retriever=memory.retrieve if memory is not None else None,
    )
    host.add_observer(runtime)
    host.add_service("agents", runtime.start, runtime.stop)
    return runtime
