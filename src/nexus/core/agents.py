"""Agent definitions: what a tenant's AI agents are, stored in LMDB through the write path.

An agent is a principal of kind ``agent`` (its user id is its name) that the server runs
for a tenant. This module keeps only the definitions (created and changed over the HTTP
API by tenant admins); running them is the agent runtime's job (extensions/ai), which
listens for changes here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson

from ..auth.principal import ID_PATTERN
from ..errors import BadRequest, Conflict, NotFound
from ..store.keys import user_key
from .pipeline import MessagePipeline

MAX_PROMPT_CHARS = 32_000
MAX_TOOLS = 64
MAX_MCP_SERVERS = 16
MCP_TOOL_NAME_MAX = 128
MCP_ALL = "*"  # every tool the server lists
TRIGGER_MODES = ("mention", "direct", "rooms")


@dataclass(frozen=True, slots=True)
class Triggers:
    """When the agent answers: a mention ``@name``, any message in a direct room (the
    agent and one person), every message in the listed rooms."""

    mention: bool = True
    direct: bool = True
    rooms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentConfig:
    tenant: str
    name: str  # also the agent's user id
    provider: str = "offline"
    model: str = ""  # empty: the provider's default model
    system_prompt: str = "You are a helpful assistant in a team chat."
    triggers: Triggers = field(default_factory=Triggers)
    max_output_tokens: int = 1024
    daily_token_budget: int = 0  # input + output tokens per UTC day; 0 = no budget
    tools: tuple[str, ...] = ()  # tool names the agent may call
    context_window: int = 16_000  # tokens of prompt + reply the model accepts
    # MCP server -> the tools of it the agent may call (["*"]: all it lists); the servers
    # are the operator's (setting mcp_servers), docs/mcp.md
    mcp: dict[str, tuple[str, ...]] = field(default_factory=dict)
    created_by: str = ""
    created_at: int = 0
    updated_at: int = 0

    def to_json(self) -> bytes:
        data = asdict(self)
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> AgentConfig:
        data = orjson.loads(raw)
        data["triggers"] = Triggers(
            **{
                **data.get("triggers", {}),
                "rooms": tuple(data.get("triggers", {}).get("rooms", ())),
            }
        )
        data["tools"] = tuple(data.get("tools", ()))
        data["mcp"] = {k: tuple(v) for k, v in data.get("mcp", {}).items()}
        return cls(**data)

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out["triggers"]["rooms"] = list(self.triggers.rooms)
        out["tools"] = list(self.tools)
        out["mcp"] = {k: list(v) for k, v in self.mcp.items()}
        return out


def agent_key(tenant: str, name: str) -> bytes:
    return user_key(tenant, name)


def check(
    config: AgentConfig,
    providers: set[str],
    tools: set[str],
    mcp_servers: Mapping[str, frozenset[str] | None] | None = None,
) -> None:
    """Refuse a definition that cannot work, naming the field (BadRequest).

    ``mcp_servers``: the configured MCP servers, each with the tenants that may use it
    (None: all)."""
    if not ID_PATTERN.fullmatch(config.name):
        raise BadRequest("name must be 1-128 characters of A-Z a-z 0-9 _ . @ : + -")
    if config.provider not in providers:
        raise BadRequest(
            f"provider: no provider named {config.provider!r} "
            f"(configured: {', '.join(sorted(providers))})"
        )
    if len(config.system_prompt) > MAX_PROMPT_CHARS:
        raise BadRequest(f"system_prompt is longer than {MAX_PROMPT_CHARS} characters")
    if not 1 <= config.max_output_tokens <= 200_000:
        raise BadRequest("max_output_tokens must be 1-200000")
    if config.daily_token_budget < 0:
        raise BadRequest("daily_token_budget must not be negative")
    if not 256 <= config.context_window <= 10_000_000:
        raise BadRequest("context_window must be 256-10000000")
    if config.max_output_tokens >= config.context_window:
        raise BadRequest("max_output_tokens must be smaller than context_window")
    unknown = set(config.tools) - tools
    if unknown:
        raise BadRequest(
            f"tools: unknown {', '.join(sorted(unknown))} (available: {', '.join(sorted(tools))})"
        )
    if len(config.tools) > MAX_TOOLS:
        raise BadRequest(f"at most {MAX_TOOLS} tools")
    _check_mcp(config, mcp_servers or {})


def _check_mcp(config: AgentConfig, servers: Mapping[str, frozenset[str] | None]) -> None:
    if len(config.mcp) > MAX_MCP_SERVERS:
        raise BadRequest(f"mcp: at most {MAX_MCP_SERVERS} servers")
    usable = sorted(
        n for n, tenants in servers.items() if tenants is None or config.tenant in tenants
    )
    for server, names in config.mcp.items():
        # A server of another tenant is reported like an absent one: the operator's
        # settings are not every tenant's to read.
        if server not in usable:
            raise BadRequest(
                f"mcp: no MCP server named {server[:64]!r} "
                f"(configured: {', '.join(usable) or 'none'})"
            )
        if not 1 <= len(names) <= MAX_TOOLS:
            raise BadRequest(f'mcp.{server}: list 1-{MAX_TOOLS} tool names (or ["*"])')
        if MCP_ALL in names and len(names) > 1:
            raise BadRequest(f'mcp.{server}: "*" stands alone (it allows every tool)')
        for name in names:
            if not isinstance(name, str) or not 1 <= len(name) <= MCP_TOOL_NAME_MAX:
                raise BadRequest(f"mcp.{server}: tool names are 1-{MCP_TOOL_NAME_MAX} characters")


Listener = Callable[[str, str, AgentConfig | None], None]  # (tenant, name, config or None)


class AgentRegistry:
    """The tenants' agents: read from the store at start, changed through the pipeline."""

    def __init__(
        self, store: Any, pipeline: MessagePipeline, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        self._clock = clock
        self._agents: dict[tuple[str, str], AgentConfig] = {}
        # of_tenant() answers, rebuilt after a change: the agents' observer asks per batch.
        self._by_tenant: dict[str, list[AgentConfig]] = {}
        self._listeners: list[Listener] = []
        self.providers: set[str] = {"offline"}
        self.tools: set[str] = set()
        self.mcp_servers: dict[str, frozenset[str] | None] = {}  # set by the MCP extension
        for raw in store.agents():
            config = AgentConfig.from_json(raw)
            self._agents[(config.tenant, config.name)] = config

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def get(self, tenant: str, name: str) -> AgentConfig | None:
        return self._agents.get((tenant, name))

    def require(self, tenant: str, name: str) -> AgentConfig:
        config = self.get(tenant, name)
        if config is None:
            raise NotFound(f"no agent {name}")
        return config

    def of_tenant(self, tenant: str) -> list[AgentConfig]:
        agents = self._by_tenant.get(tenant)
        if agents is None:
            agents = sorted(
                (c for (t, _), c in self._agents.items() if t == tenant), key=lambda c: c.name
            )
            self._by_tenant[tenant] = agents
        return agents

    def all(self) -> list[AgentConfig]:
        return list(self._agents.values())

    async def create(self, config: AgentConfig) -> AgentConfig:
        if (config.tenant, config.name) in self._agents:
            raise Conflict(f"agent {config.name} exists")
        if self._store.user(config.tenant, config.name) is not None:
            raise Conflict(f"{config.name} is already a user of the tenant")
        now = int(self._clock() * 1000)
        config = replace(config, created_at=now, updated_at=now)
        check(config, self.providers, self.tools, self.mcp_servers)
        await self._write(config)
        return config

    async def update(self, tenant: str, name: str, changes: dict[str, Any]) -> AgentConfig:
        current = self.require(tenant, name)
        if "triggers" in changes and isinstance(changes["triggers"], dict):
            changes["triggers"] = Triggers(**{**asdict(current.triggers), **changes["triggers"]})
        config = replace(current, **changes, updated_at=int(self._clock() * 1000))
        check(config, self.providers, self.tools, self.mcp_servers)
        await self._write(config)
        return config

    async def delete(self, tenant: str, name: str) -> None:
        self.require(tenant, name)

        def gone() -> None:
            self._agents.pop((tenant, name), None)
            self._by_tenant.pop(tenant, None)
            for listener in self._listeners:
                listener(tenant, name, None)

        await self._pipeline.submit_meta([("agent", agent_key(tenant, name), None)], gone)

    def apply_remote(self, key: bytes, raw: bytes | None) -> None:
        """Cluster mode: another node created, changed or deleted an agent (its record is
        in this node's store already)."""
        tenant, _, name = key.decode().partition("\x1f")
        if raw is None:
            if self._agents.pop((tenant, name), None) is None:
                return
            config = None
        else:
            config = AgentConfig.from_json(raw)
            self._agents[(config.tenant, config.name)] = config
        self._by_tenant.pop(tenant, None)
        for listener in self._listeners:
            listener(tenant, name, config)

    async def _write(self, config: AgentConfig) -> None:
        def committed() -> None:
            self._agents[(config.tenant, config.name)] = config
            self._by_tenant.pop(config.tenant, None)
            for listener in self._listeners:
                listener(config.tenant, config.name, config)

        await self._pipeline.submit_meta(
            [("agent", agent_key(config.tenant, config.name), config.to_json())], committed
        )
