"""What the HTTP API and the MCP server may ask of the skills registry, which lives in
extensions/skills and is wired in app.py: core and the edges never import it.

A skill's view is a dict with at least ``name``, ``description``, ``digest``, ``version``
and ``scope`` (``tenant``, ``room:<name>``, ``agent:<name>`` or ``server``).
"""

from __future__ import annotations

from typing import Any, Protocol

from ..auth import Principal


class SkillControl(Protocol):
    def visible(
        self, tenant: str, room: str | None = None, agent: str | None = None
    ) -> list[dict[str, Any]]:
        """The skills ``agent`` sees in ``room`` (first scope wins: agent, room, tenant,
        server), one per name, sorted by name. The caller checks it may see the room."""

    def load(
        self, tenant: str, name: str, room: str | None = None, agent: str | None = None
    ) -> dict[str, Any]:
        """The skill ``name`` as ``visible`` resolves it, with ``body`` (the SKILL.md
        instructions) and ``references`` (paths under references/); NotFound if none."""

    def prompt(
        self,
        tenant: str,
        name: str,
        args: str = "",
        room: str | None = None,
        agent: str | None = None,
        sender: str = "someone",
    ) -> str:
        """The text a ``/name args`` invocation gives the agent (the skill's instructions
        with the arguments), for an MCP prompt; NotFound if no such skill."""

    def installed(self, tenant: str) -> list[dict[str, Any]]:
        """The active version of every skill of the tenant in every scope, and the server's."""

    def versions(self, tenant: str, name: str, scope: str) -> list[dict[str, Any]]:
        """Every kept version of ``name`` in ``scope``, newest (active) first; NotFound if none."""

    def version(self, tenant: str, name: str, scope: str, digest: str) -> dict[str, Any]:
        """One kept version with its body and references; NotFound if none."""

    def read_file(self, tenant: str, name: str, scope: str, digest: str, path: str) -> bytes:
        """One file of a kept version; NotFound if none."""

    async def install(
        self, who: Principal, name: str, scope: str, archive: bytes
    ) -> tuple[dict[str, Any], bool]:
        """Install a zip or tar.gz archive as the active version of ``name`` in ``scope``
        of the caller's tenant: (view, new content?). BadRequest or TooLarge with the reason."""

    async def remove(self, tenant: str, name: str, scope: str) -> int:
        """Remove every version of ``name`` in ``scope``; how many. NotFound if none."""
