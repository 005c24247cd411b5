"""Loads the Python extensions named in the ``extensions`` setting (``module:function``)."""

from __future__ import annotations

import importlib

from ..core.extension_host import ExtensionHost
from ..errors import ConfigError


def load_extensions(paths: tuple[str, ...], host: ExtensionHost) -> list[str]:
    """Import each ``module:function`` and call ``function(host)``; returns their names.

    A path that cannot be imported or called stops the start with a ConfigError naming it.
    """
    loaded = []
    for path in paths:
        module_name, _, function_name = path.partition(":")
        if not module_name or not function_name:
            raise ConfigError("extensions", f"{path!r} is not 'module:function'")
        try:
            module = importlib.import_module(module_name)
            install = getattr(module, function_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError("extensions", f"cannot load {path}: {exc}") from None
        if not callable(install):
            raise ConfigError("extensions", f"{path} is not callable")
        install(host)
        loaded.append(path)
    return loaded
