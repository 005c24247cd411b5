"""What the HTTP API may ask of the Wasm plugin runtime, which lives in
extensions/plugins and is wired in app.py: core and the edges never import it."""

from __future__ import annotations

from typing import Any, Protocol

from ..auth import Principal


class PluginControl(Protocol):
    def list(self, tenant: str) -> list[dict[str, Any]]:
        """The plugins that run for ``tenant`` (its own and the plugins folder's), with state."""

    def get(self, tenant: str, name: str) -> dict[str, Any]:
        """One plugin with its state and figures (NotFound if none)."""

    async def install(
        self, who: Principal, name: str, manifest: Any, manifest_format: str, module: bytes
    ) -> tuple[dict[str, Any], bool]:
        """Install or replace ``name`` for the caller's tenant: (view, created)."""

    async def set_enabled(self, tenant: str, name: str, enabled: bool) -> dict[str, Any]: ...

    async def reload(self, tenant: str, name: str) -> dict[str, Any]:
        """Fresh instances and out of quarantine."""

    async def remove(self, tenant: str, name: str) -> None: ...

    def schema(self) -> dict[str, Any]:
        """The manifest's JSON Schema."""
