"""MCP server settings: the operator's ``mcp_servers`` tables, checked into ``ServerConfig``.

```toml
[mcp.servers.files]
transport = "stdio"                  # run a command, talk over its stdin/stdout
command = "/usr/local/bin/files-mcp"
args = ["--root", "/srv/shared"]
env = {LOG_LEVEL = "warning"}        # over a minimal inherited environment (PATH, HOME...)
env_files = {API_TOKEN = "/run/secrets/files-token"}
cwd = "/srv"
destructive = ["delete_file"]        # each call needs a room member's approval
tenants = ["acme"]                   # only these tenants' agents may use it (all if absent)

[mcp.servers.tickets]
transport = "http"                   # Streamable HTTP
url = "https://tickets.internal/mcp"
headers_files = {Authorization = "/run/secrets/tickets-auth"}
timeout = 20                         # seconds per call
output_max_chars = 4000
```

Only the operator defines servers (tenant admins pick among them per agent): an agent
definition can never make the server run a command. Secret files are read once, at
start; their values are never logged nor written into a room.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ...errors import ConfigError

Transport = Literal["stdio", "http"]
TRANSPORTS = ("stdio", "http")
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # leaves room in a 64-character tool name
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token
OUTPUT_MAX_CHARS = 8_000  # what a tool result may hold in the room (tools.RESULT_MAX_CHARS)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    name: str
    transport: Transport
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)  # incl. env_files' values
    cwd: str | None = None
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # incl. headers_files'
    timeout: float = 30.0  # seconds per call (an approval's wait is not counted)
    connect_timeout: float = 10.0  # seconds to start the server and list its tools
    output_max_chars: int = OUTPUT_MAX_CHARS
    destructive: frozenset[str] = frozenset()
    tenants: frozenset[str] | None = None  # None: every tenant
    backoff: float = 0.5  # seconds before the first reconnect, doubled per failure
    backoff_max: float = 30.0
    # Values read from secret files and header values: scrubbed from anything the server
    # sends back before it reaches a room or a model.
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def allows(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants


_COMMON = {
    "transport",
    "timeout",
    "connect_timeout",
    "output_max_chars",
    "destructive",
    "tenants",
    "backoff",
    "backoff_max",
}
_KNOWN = {
    "stdio": _COMMON | {"command", "args", "env", "env_files", "cwd"},
    "http": _COMMON | {"url", "headers", "headers_files"},
}
_POSITIVE = ("timeout", "connect_timeout", "backoff", "backoff_max")


def parse_servers(tables: dict[str, dict[str, Any]]) -> dict[str, ServerConfig]:
    """Check the ``mcp_servers`` tables; every problem is a ConfigError naming the field."""
    return {name: _server(name, table) for name, table in tables.items()}


def _server(name: str, table: dict[str, Any]) -> ServerConfig:
    where = f"mcp.servers.{name}"
    if not SERVER_NAME.fullmatch(name):
        raise ConfigError(where, "server names are 1-32 letters, digits, - and _")
    transport = table.get("transport")
    if transport not in TRANSPORTS:
        raise ConfigError(f"{where}.transport", f"must be one of {', '.join(TRANSPORTS)}")
    unknown = set(table) - _KNOWN[transport]
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}", f"unknown field for {transport}")
    values: dict[str, Any] = {}
    for key in _POSITIVE:
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{where}.{key}", "must be a positive number")
            values[key] = float(value)
    if "output_max_chars" in table:
        value = table["output_max_chars"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}.output_max_chars", "must be a positive integer")
        values["output_max_chars"] = min(value, OUTPUT_MAX_CHARS)
    values["destructive"] = frozenset(_strings(table, "destructive", where))
    if "tenants" in table:
        values["tenants"] = frozenset(_strings(table, "tenants", where))
    if transport == "stdio":
        command = table.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ConfigError(f"{where}.command", "a stdio server needs a command")
        env = _table(table, "env", where)
        for key in env:
            if not ENV_NAME.fullmatch(key):
                raise ConfigError(f"{where}.env.{key}", "not an environment variable name")
        secrets = []
        for key, path in _table(table, "env_files", where).items():
            if not ENV_NAME.fullmatch(key):
                raise ConfigError(f"{where}.env_files.{key}", "not an environment variable name")
            env[key] = _secret(f"{where}.env_files.{key}", path)
            secrets.append(env[key])
        cwd = table.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not Path(cwd).is_dir()):
            raise ConfigError(f"{where}.cwd", "must name an existing folder")
        return ServerConfig(
            name,
            "stdio",
            command=command,
            args=tuple(_strings(table, "args", where)),
            env=env,
            cwd=cwd,
            secrets=tuple(secrets),
            **values,
        )
    url = table.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.url", "must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ConfigError(f"{where}.url", "credentials go in headers_files, not in the URL")
    headers = _table(table, "headers", where)
    for key, path in _table(table, "headers_files", where).items():
        headers[key] = _secret(f"{where}.headers_files.{key}", path)
    for key, value in headers.items():
        if not HEADER_NAME.fullmatch(key) or any(c in value for c in "\r\n\0"):
            raise ConfigError(f"{where}.headers.{key}", "not a valid HTTP header")
    # A header's value, and its credential alone ("Bearer <credential>").
    credentials = {v for value in headers.values() for v in (value, *value.split()[-1:])}
    return ServerConfig(
        name,
        "http",
        url=str(url),
        headers=headers,
        secrets=tuple(sorted(credentials, key=len, reverse=True)),  # the longest first
        **values,
    )


def _strings(table: dict[str, Any], key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}.{key}", "must be a list of non-empty strings")
    return list(value)


def _table(table: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value = table.get(key, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{where}.{key}", "must be a table of strings")
    return dict(value)


def _secret(where: str, path: str) -> str:
    try:
        value = Path(path).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        # The error names the file, never its content.
        raise ConfigError(where, f"cannot read {path}: {exc.__class__.__name__}") from None
    if not value:
        raise ConfigError(where, f"{path} is empty")
    return value
