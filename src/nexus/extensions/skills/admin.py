"""The skills registry as the HTTP API and the MCP server see it
(``core.skill_control.SkillControl``): views, loads, installs from an uploaded archive."""

from __future__ import annotations

import asyncio
from typing import Any

from ...auth import Principal
from ...core.agents import AgentRegistry
from ...core.rooms import RoomDirectory
from ...errors import BadRequest, Conflict, NotFound, TooLarge
from .archive import unpack
from .bundle import build_bundle, references
from .commands import prompt
from .registry import SERVER_SCOPE, TENANT_SCOPE, SkillRegistry, SkillVersion


class SkillAdmin:
    def __init__(
        self, registry: SkillRegistry, rooms: RoomDirectory, agents: AgentRegistry
    ) -> None:
        self.registry = registry
        self._rooms = rooms
        self._agents = agents

    # -- reads -------------------------------------------------------------------------
    def visible(
        self, tenant: str, room: str | None = None, agent: str | None = None
    ) -> list[dict[str, Any]]:
        return [self.registry.describe(v) for v in self.registry.effective(tenant, room, agent)]

    def load(
        self, tenant: str, name: str, room: str | None = None, agent: str | None = None
    ) -> dict[str, Any]:
        found = self.registry.resolve(tenant, name, room, agent)
        if found is None:
            raise NotFound(f"no skill {name}")
        return self._full(found)

    def prompt(
        self,
        tenant: str,
        name: str,
        args: str = "",
        room: str | None = None,
        agent: str | None = None,
        sender: str = "someone",
    ) -> str:
        found = self.registry.resolve(tenant, name, room, agent)
        if found is None:
            raise NotFound(f"no skill {name}")
        return prompt(sender, found, args)

    def installed(self, tenant: str) -> list[dict[str, Any]]:
        return [self.registry.describe(v) for v in self.registry.installed(tenant)]

    def versions(self, tenant: str, name: str, scope: str) -> list[dict[str, Any]]:
        found = self.registry.versions(tenant, self.check_scope(tenant, scope, read=True), name)
        if not found:
            raise NotFound(f"no skill {name} in scope {scope}")
        return [self.registry.describe(v) for v in reversed(found)]

    def version(self, tenant: str, name: str, scope: str, digest: str) -> dict[str, Any]:
        return self._full(self._version(tenant, name, scope, digest))

    def read_file(self, tenant: str, name: str, scope: str, digest: str, path: str) -> bytes:
        return self.registry.read(self._version(tenant, name, scope, digest), path)

    def _version(self, tenant: str, name: str, scope: str, digest: str) -> SkillVersion:
        scope = self.check_scope(tenant, scope, read=True)
        for v in self.registry.versions(tenant, scope, name):
            if v.digest == digest:
                return v
        raise NotFound(f"no version {digest[:80]} of skill {name} in scope {scope}")

    def _full(self, version: SkillVersion) -> dict[str, Any]:
        return {
            **self.registry.describe(version),
            "body": version.doc.body,
            "references": references(version.sizes),
            "scripts": version.scripts,
        }

    # -- changes -----------------------------------------------------------------------
    def check_scope(
        self, tenant: str, scope: str, *, read: bool = False, exists: bool = True
    ) -> str:
        """``scope`` if it is well formed and (``exists``) names a room or agent of the
        tenant; ``read``: the server scope too."""
        if scope == TENANT_SCOPE or (read and scope == SERVER_SCOPE):
            return scope
        kind, _, target = scope.partition(":")
        if kind == "room" and target:
            if exists and self._rooms.find(tenant, target) is None:
                raise NotFound(f"scope {scope}: no room {target}")
            return scope
        if kind == "agent" and target:
            if exists and self._agents.get(tenant, target) is None:
                raise NotFound(f"scope {scope}: no agent {target}")
            return scope
        if scope == SERVER_SCOPE:
            raise Conflict("server skills come from the skills_dir folder: change them there")
        raise BadRequest(f"scope must be tenant, room:<name> or agent:<name>, got {scope[:80]!r}")

    async def install(
        self, who: Principal, name: str, scope: str, archive: bytes
    ) -> tuple[dict[str, Any], bool]:
        limit = self.registry.host.settings.skill_archive_max_bytes
        if len(archive) > limit:
            raise TooLarge(f"the archive is over {limit} bytes (skill_archive_max_bytes)")
        if not archive:
            raise BadRequest("the request body must be the skill's zip or tar.gz archive")
        scope = self.check_scope(who.tenant, scope)
        # Decompressing and hashing up to the caps takes a while: off the loop.
        unpacked = await asyncio.to_thread(unpack, archive, self.registry.limits)
        bundle = await asyncio.to_thread(build_bundle, unpacked, name)
        await asyncio.to_thread(self.registry.check_scripts, bundle)  # compiles the modules
        version, created = await self.registry.install(who.tenant, scope, bundle, who.user_id)
        return self.registry.describe(version), created

    async def remove(self, tenant: str, name: str, scope: str) -> int:
        # Not checked against the rooms and agents: a deleted room's skills can still go.
        scope = self.check_scope(tenant, scope, exists=False)
        return await self.registry.remove(tenant, scope, name)
