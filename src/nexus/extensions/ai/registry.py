"""The hosted providers, built from their settings: one adapter per configured provider,
with its own connection pool, wrapped in the failure policy with fallbacks resolved by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .anthropic import AnthropicProvider
from .config import OFFLINE, ProviderConfig
from .offline import OfflineProvider
from .openai_compat import OpenAICompatProvider
from .provider import Provider
from .resilient import PolicyEvent, ResilientProvider

ADAPTERS: dict[str, Callable[[ProviderConfig], Provider]] = {
    "openai": OpenAICompatProvider,
    "anthropic": AnthropicProvider,
}


def build_providers(
    hosted: dict[str, ProviderConfig],
    offline: OfflineProvider,
    on_event: Callable[[PolicyEvent], None] | None = None,
    local: Mapping[str, Provider] | None = None,
) -> dict[str, Provider]:
    """A ``ResilientProvider`` per hosted config, by name. A fallback is another of them
    or ``offline`` (or one of ``local``: more offline providers, by name); ``close()`` on
    each closes its adapter and connection pool.

    Raises:
        ValueError: a config of an unknown type, or a fallback naming no provider
            (``parse_providers`` already refuses both).
    """
    providers: dict[str, Provider] = {}

    local = {OFFLINE: offline, **(local or {})}

    def resolve(name: str) -> Provider:
        return local[name] if name in local else providers[name]

    for name, config in hosted.items():
        if config.type not in ADAPTERS:
            raise ValueError(f"provider {name}: no hosted adapter for type {config.type}")
        if config.fallback is not None and config.fallback not in (*hosted, *local):
            raise ValueError(f"provider {name}: no fallback named {config.fallback}")
    for name, config in hosted.items():
        adapter = ADAPTERS[config.type](config)
        providers[name] = ResilientProvider(adapter, config, resolve, on_event=on_event)
    return providers
