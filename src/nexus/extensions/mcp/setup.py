"""Gives agents the tools of the operator's MCP servers (called by app.py)."""

from __future__ import annotations

from ...core.agents import AgentConfig, AgentRegistry
from ...core.approvals import Approvals
from ...core.extension_host import ExtensionHost
from ..ai.runtime import AgentRuntime
from .config import parse_servers
from .metrics import McpMetrics
from .pool import ConnectionPool
from .runner import ToolRunner
from .source import McpToolSource


def install_mcp(
    host: ExtensionHost, runtime: AgentRuntime, agents: AgentRegistry, approvals: Approvals
) -> McpMetrics:
    """Check the ``mcp_servers`` settings (ConfigError naming the field), add the MCP tool
    source to the runtime's registry and the pool's lifecycle to the host's services."""
    configs = parse_servers(host.settings.mcp_servers)
    pool = ConnectionPool(configs)
    metrics = McpMetrics(pool.all)
    runner = ToolRunner(pool, approvals, host.settings.mcp_approval_timeout, metrics)
    runtime.tool_registry.add_source(McpToolSource(pool, runner))
    agents.mcp_servers = {name: c.tenants for name, c in configs.items()}

    def changed(tenant: str, name: str, config: AgentConfig | None) -> None:
        if config is not None:
            pool.warm(config.mcp)

    async def start() -> None:
        # Servers some agent may use are reached in the background from the start, so a
        # first turn already sees their tools; the others only once an agent needs them.
        agents.listen(changed)
        pool.warm({server for agent in agents.all() for server in agent.mcp})

    host.add_service("mcp", start, pool.close)
    return metrics
