"""Builds the agent runtime from the settings (called by app.py)."""

from __future__ import annotations

from opentelemetry.trace import Tracer

from ...core.agents import AgentRegistry
from ...core.extension_host import ExtensionHost
from ...core.streams import LiveStreams
from .config import parse_providers
from .offline import OfflineProvider
from .provider import Provider
from .runtime import AgentRuntime
from .tools import ToolRegistry


def build_providers(host: ExtensionHost) -> dict[str, Provider]:
    configs = parse_providers(host.settings.ai_providers)
    offline = OfflineProvider(part_delay=configs["offline"].part_delay)
    providers: dict[str, Provider] = {"offline": offline}
    hosted = {n: c for n, c in configs.items() if c.type != "offline"}
    if hosted:
        from .registry import build_providers as build_hosted  # type: ignore[import-not-found]

        providers.update(build_hosted(hosted, offline))
    return providers


def build_runtime(
    host: ExtensionHost, agents: AgentRegistry, streams: LiveStreams, tracer: Tracer | None = None
) -> AgentRuntime:
    """The runtime, registered as an observer and a service of ``host``."""
    runtime = AgentRuntime(host, agents, build_providers(host), ToolRegistry(), streams, tracer)
    host.add_observer(runtime)
    host.add_service("agents", runtime.start, runtime.stop)
    return runtime
