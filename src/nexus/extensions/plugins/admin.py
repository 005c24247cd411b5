"""The plugin runtime as the HTTP API sees it (core.plugin_control.PluginControl): views of
installed plugins with their state, installs from an uploaded module and manifest."""

from __future__ import annotations

from typing import Any

from ...auth import Principal
from ...errors import BadRequest
from .manifest import manifest_schema, parse_manifest
from .runtime import ALL_TENANTS, Installed, PluginRuntime


class PluginAdmin:
    def __init__(self, runtime: PluginRuntime) -> None:
        self._runtime = runtime

    def view(self, tenant: str, installed: Installed) -> dict[str, Any]:
        manifest = installed.manifest
        state = self._runtime.state_of(tenant, installed)
        return {
            "name": manifest.name,
            "version": manifest.version,
            "description": manifest.description,
            "scope": "all-tenants" if installed.tenant == ALL_TENANTS else "tenant",
            "source": installed.source,
            "digest": installed.digest,
            "enabled": installed.enabled,
            "quarantined": bool(state and state.quarantined),
            "hooks": list(manifest.hooks),
            "rooms": list(manifest.rooms),
            "kinds": list(manifest.kinds),
            "commands": [c.model_dump() for c in manifest.commands],
            "capabilities": list(manifest.capabilities),
            "limits": manifest.limits.model_dump(),
            "failure_policy": manifest.failure_policy,
            "installed_at": installed.installed_at,
            "installed_by": installed.installed_by,
            "calls": dict(state.calls) if state else {},
            "faults": dict(state.faults) if state else {},
            "consecutive_faults": state.consecutive if state else 0,
            "denials": state.denials if state else 0,
            "last_error": state.last_error if state else "",
        }

    def list(self, tenant: str) -> list[dict[str, Any]]:
        return [self.view(tenant, i) for i in self._runtime.visible(tenant)]

    def get(self, tenant: str, name: str) -> dict[str, Any]:
        return self.view(tenant, self._runtime.get(tenant, name))

    async def install(
        self, who: Principal, name: str, manifest: Any, manifest_format: str, module: bytes
    ) -> tuple[dict[str, Any], bool]:
        if manifest_format == "toml":
            if not isinstance(manifest, str):
                raise BadRequest("a TOML manifest is a string")
            parsed = parse_manifest(manifest, toml=True)
        else:
            parsed = parse_manifest(manifest if isinstance(manifest, (dict, str)) else b"null")
        if parsed.name != name:
            raise BadRequest(f"the manifest names {parsed.name!r}, the path {name!r}")
        installed, created = await self._runtime.install(who, parsed, module)
        return self.view(who.tenant, installed), created

    async def set_enabled(self, tenant: str, name: str, enabled: bool) -> dict[str, Any]:
        return self.view(tenant, await self._runtime.set_enabled(tenant, name, enabled))

    async def reload(self, tenant: str, name: str) -> dict[str, Any]:
        return self.view(tenant, await self._runtime.reload(tenant, name))

    async def remove(self, tenant: str, name: str) -> None:
        await self._runtime.remove(tenant, name)

    def schema(self) -> dict[str, Any]:
        return manifest_schema()
