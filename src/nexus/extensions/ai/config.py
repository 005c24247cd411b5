"""Provider settings: the ``ai_providers`` tables, checked into ``ProviderConfig`` objects.

```toml
[ai.providers.openai]
type = "openai"                 # openai (any OpenAI-compatible chat completions API),
                                # anthropic, or offline (built in, no model)
base_url = "https://api.openai.com/v1"
api_key_file = "/run/secrets/openai"   # or api_key_env = "OPENAI_API_KEY" (or api_key)
model = "gpt-4o-mini"           # the default model of agents using this provider
fallback = "local"              # tried when this one fails before the reply starts
```

A key is read from its file or environment variable once, at start, and never logged.
The built-in ``offline`` provider always exists, whatever is configured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from ...errors import ConfigError

ProviderType = Literal["openai", "anthropic", "offline"]
PROVIDER_TYPES = ("openai", "anthropic", "offline")
OFFLINE = "offline"
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    type: ProviderType
    base_url: str = ""
    api_key: str = field(default="", repr=False)  # resolved from api_key_file/_env
    model: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    # timeouts, seconds
    connect_timeout: float = 10.0
    first_token_timeout: float = 60.0  # request sent -> first part
    idle_timeout: float = 60.0  # between two parts
    total_timeout: float = 600.0
    # before the first delta only: retries of this provider, then the fallback
    retries: int = 2
    backoff: float = 0.5  # seconds, doubled per retry (a Retry-After wins when longer)
    backoff_max: float = 20.0
    fallback: str | None = None
    # after this many failed requests in a row, skip the provider for `cooldown` seconds
    cooldown_after: int = 5
    cooldown: float = 30.0
    anthropic_version: str = "2023-06-01"
    part_delay: float = 0.0  # offline only: seconds between streamed parts (demos, tests)


_FLOATS = (
    "connect_timeout",
    "first_token_timeout",
    "idle_timeout",
    "total_timeout",
    "backoff",
    "backoff_max",
    "cooldown",
    "part_delay",
)
_INTS = ("retries", "cooldown_after")
_STRS = (
    "base_url",
    "model",
    "fallback",
    "anthropic_version",
    "api_key",
    "api_key_file",
    "api_key_env",
)
_KNOWN = {f.name for f in fields(ProviderConfig)} | {"api_key_file", "api_key_env"}


def parse_providers(
    tables: dict[str, dict[str, Any]], environ: dict[str, str] | None = None
) -> dict[str, ProviderConfig]:
    """Check the ``ai_providers`` tables; every problem is a ConfigError naming the field."""
    environ = dict(os.environ) if environ is None else environ
    out: dict[str, ProviderConfig] = {OFFLINE: ProviderConfig(OFFLINE, "offline", model=OFFLINE)}
    for name, table in tables.items():
        where = f"ai.providers.{name}"
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigError(where, "provider names are letters, digits, - and _")
        unknown = set(table) - _KNOWN - {"type"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}", "unknown field")
        kind = table.get("type")
        if kind not in PROVIDER_TYPES:
            raise ConfigError(f"{where}.type", f"must be one of {', '.join(PROVIDER_TYPES)}")
        values: dict[str, Any] = {}
        for key in _FLOATS:
            if key in table:
                value = table[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ConfigError(f"{where}.{key}", "must be a non-negative number")
                values[key] = float(value)
        for key in _INTS:
            if key in table:
                value = table[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"{where}.{key}", "must be a non-negative integer")
                values[key] = value
        for key in _STRS:
            if key in table and not isinstance(table[key], str):
                raise ConfigError(f"{where}.{key}", "must be a string")
        headers = table.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ConfigError(f"{where}.headers", "must be a table of strings")
        key = _api_key(where, table, environ)
        if kind in ("openai", "anthropic") and not table.get("base_url") and not key:
            raise ConfigError(
                f"{where}.api_key_file",
                "a hosted provider needs a key (api_key_file or api_key_env)",
            )
        out[name] = ProviderConfig(
            name,
            kind,
            base_url=str(table.get("base_url") or DEFAULT_BASE_URLS.get(kind, "")).rstrip("/"),
            api_key=key,
            model=str(table.get("model", "")),
            headers=dict(headers),
            fallback=table.get("fallback"),
            anthropic_version=str(table.get("anthropic_version", "2023-06-01")),
            **values,
        )
    for config in out.values():
        if config.fallback is not None and config.fallback not in out:
            raise ConfigError(
                f"ai.providers.{config.name}.fallback", f"no provider named {config.fallback}"
            )
    _no_fallback_cycles(out)
    return out


def _api_key(where: str, table: dict[str, Any], environ: dict[str, str]) -> str:
    if table.get("api_key_file"):
        path = Path(table["api_key_file"])
        try:
            return path.read_text("utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}.api_key_file", f"cannot read: {exc}") from None
    if table.get("api_key_env"):
        value = environ.get(table["api_key_env"], "")
        if not value:
            raise ConfigError(
                f"{where}.api_key_env", f"environment variable {table['api_key_env']} is not set"
            )
        return value
    return str(table.get("api_key", ""))


def _no_fallback_cycles(configs: dict[str, ProviderConfig]) -> None:
    for start in configs:
        seen = {start}
        current = configs[start].fallback
        while current is not None:
            if current in seen:
                raise ConfigError(f"ai.providers.{start}.fallback", "fallbacks form a cycle")
            seen.add(current)
            current = configs[current].fallback
