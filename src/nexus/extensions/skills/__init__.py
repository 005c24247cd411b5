"""Agent Skills: folders with a SKILL.md, installed per tenant and scope, shown to agents
as a catalog, loaded by a tool call or a ``/skill-name`` message (docs/skills.md)."""

from __future__ import annotations

from ...core.agents import AgentConfig
from ...core.context import counter_for
from ...core.rooms import Room
from ..ai.runtime import AgentRuntime
from .admin import SkillAdmin
from .catalog import catalog_block
from .commands import SkillCommands
from .registry import SkillRegistry
from .tools import SkillTools

__all__ = ["SkillAdmin", "SkillRegistry", "install_skills"]


def install_skills(runtime: AgentRuntime) -> SkillAdmin:
    """The registry (installs read now), the catalog as a pinned block of every agent
    turn, the skill tools, and the ``/skill-name`` observer; returns the API's control."""
    host = runtime.host
    registry = SkillRegistry(host)
    registry.load()
    budget = host.settings.skills_catalog_tokens

    def catalog(agent: AgentConfig, room: Room) -> list[str]:
        if not registry.has_any(agent.tenant):
            return []
        skills = registry.effective(agent.tenant, room.name, agent.name)
        # The turn has loaded its model's counter before it asks for pinned blocks: this
        # is the cached one, counting as context assembly will.
        model = runtime.model_of(agent, runtime.providers.get(agent.provider))
        count = counter_for(model).count
        block = catalog_block([(v.name, v.doc.description) for v in skills], budget, count)
        return [block] if block else []

    runtime.pinned.append(catalog)
    runtime.tool_registry.add_source(SkillTools(registry))
    commands = SkillCommands(registry, runtime)
    host.add_observer(commands)
    host.add_service("skill-scripts", lambda: None, registry.scripts.stop)
    runtime.claims.append(commands.claims)
    return SkillAdmin(registry, host.rooms, runtime.agents)
