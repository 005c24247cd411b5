"""Wasm plugins: sandboxed extensions on the write path (docs/plugins.md)."""

from __future__ import annotations

from ...core.extension_host import ExtensionHost
from .engine import PluginEngine
from .runtime import PluginRuntime

__all__ = ["PluginRuntime", "install_plugins"]


def install_plugins(host: ExtensionHost) -> PluginRuntime:
    """The plugin runtime of this server: installs read now, seams attached at start."""
    settings = host.settings
    engine = PluginEngine(settings.data_path / "plugin-cache")
    runtime = PluginRuntime(host, engine, granted=frozenset(settings.plugins_capabilities))
    runtime.load()
    host.add_service("plugins", runtime.start, runtime.stop)
    return runtime
