"""The chart's ``config`` schema, derived from nexus.config.Settings.

values.schema.json lists every Nexus setting a user may put under ``config`` with its type
(and its choices, where the server has a fixed list), so helm refuses a typo'd name or a
wrong type before anything reaches a cluster. The settings the chart itself sets from
``server``/``auth``/``metricsToken``/``providers`` are left out. A test keeps the file equal
to what this module derives; after adding a setting, refresh it with

    PYTHONPATH=src python tests/deploy/settings_schema.py
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

from nexus.config import (
    DURABILITY_MODES,
    FIELD_DOCS,
    LOG_FORMATS,
    LOG_LEVELS,
    PLUGIN_CAPABILITIES,
    TRACE_EXPORTERS,
    Settings,
)

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "helm/nexus/values.schema.json"

# Set by the chart from its own values: the pod spec, Secrets and mounts must agree with them.
CHART_OWNED = {
    "host": "the chart listens on 0.0.0.0",
    "http_host": "the chart listens on 0.0.0.0",
    "port": "server.port",
    "http_port": "server.httpPort",
    "data_dir": "the data volume's mount path",
    "drain_delay": "server.drainDelay",
    "shutdown_timeout": "server.shutdownTimeout",
    "log_format": "server.logFormat",
    "print_dev_token": "never in a cluster",
    "auth_secret": "auth (a Secret, mounted as a file)",
    "auth_secret_file": "auth.type hmac",
    "auth_public_key_file": "auth.type publicKey",
    "auth_jwks_file": "auth.type jwks",
    "metrics_token": "metricsToken",
    "ai_providers": "providers",
}

CHOICES: dict[str, tuple[str, ...]] = {
    "log_level": LOG_LEVELS,
    "store_durability": DURABILITY_MODES,
    "trace_exporter": TRACE_EXPORTERS,
}
ITEM_CHOICES: dict[str, tuple[str, ...]] = {"plugins_capabilities": PLUGIN_CAPABILITIES}
assert set(CHART_OWNED) <= set(FIELD_DOCS)
assert LOG_FORMATS  # server.logFormat's enum in the schema; checked by the tests


def _type(name: str, hint: Any) -> dict[str, Any]:
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint in (str, str | None):
        out: dict[str, Any] = {"type": "string"}
        if name in CHOICES:
            out["enum"] = list(CHOICES[name])
        return out
    if hint == tuple[str, ...]:
        items: dict[str, Any] = {"type": "string"}
        if name in ITEM_CHOICES:
            items["enum"] = list(ITEM_CHOICES[name])
        return {"type": "array", "items": items}
    if hint == dict[str, dict[str, Any]]:  # tables by name (mcp_servers): checked by the server
        return {"type": "object", "additionalProperties": {"type": "object"}}
    raise TypeError(f"setting {name}: no schema for {hint!r}; teach settings_schema.py")


def config_schema() -> dict[str, Any]:
    hints = get_type_hints(Settings)
    props = {
        f.name: {"description": FIELD_DOCS[f.name], **_type(f.name, hints[f.name])}
        for f in fields(Settings)
        if f.name not in CHART_OWNED
    }
    return {
        "type": "object",
        "description": "Nexus settings by flat name (docs/configuration.md), rendered to the "
        "ConfigMap's nexus.toml; those the chart sets itself are refused here.",
        "additionalProperties": False,
        "properties": props,
    }


def main() -> int:
    schema = json.loads(SCHEMA_FILE.read_text("utf-8"))
    schema["properties"]["config"] = config_schema()
    SCHEMA_FILE.write_text(json.dumps(schema, indent=2) + "\n", "utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
