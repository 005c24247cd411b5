"""Settings: one object, loaded once at start and passed explicitly.

Sources, later wins: defaults < TOML file < ``NEXUS_*`` environment < command-line
flags. A TOML table flattens into its prefix (``[auth] issuer`` is ``auth_issuer``).
Any invalid value stops the start with one line naming the setting.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import orjson

from .errors import ConfigError

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
MIN_SECRET_CHARS = 32  # an HMAC key shorter than the SHA-256 output weakens HS256
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
LOG_FORMATS = ("console", "json")
# full: fsync data and meta each commit; data: skip the meta fsync (the last commit may be
# undone by a power cut, never by a process crash); none: no fsync (survives kill -9 only).
DURABILITY_MODES = ("full", "data", "none")
CLUSTER_ENGINES = ("lmdb", "nats")
LOG_LEVELS = ("debug", "info", "warning", "error")
TRACE_EXPORTERS = ("none", "console", "otlp")
PLUGIN_CAPABILITIES = ("log", "kv", "post", "history", "wasi")


def _setting(default: Any, doc: str) -> Any:
    """A settings field with its one-line documentation (shown by ``nexus serve --help``)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable of the server. See docs/configuration.md for each one."""

    host: str = _setting("127.0.0.1", "WebSocket listen address (also /healthz, /readyz)")
    port: int = _setting(8765, "WebSocket port; 0 picks a free port")
    data_dir: str = _setting("./data", "LMDB files and the development secret")
    http_host: str = _setting("127.0.0.1", "HTTP API listen address")
    http_port: int = _setting(8766, "HTTP API port; 0 picks a free port")
    metrics_token: str | None = _setting(
        None, "when set, /metrics needs 'Authorization: Bearer <it>'"
    )
    http_max_body_bytes: int = _setting(
        65536, "largest HTTP request body (413 beyond it; checked before reading)"
    )
    mcp_enabled: bool = _setting(True, "serve the Model Context Protocol at /mcp (docs/mcp.md)")
    mcp_session_idle_timeout: float = _setting(
        1800.0, "seconds an idle MCP session (protocol 2025-11-25) is kept"
    )

    auth_algorithms: tuple[str, ...] = _setting(("HS256",), "JWT algorithms accepted (pinned)")
    auth_secret: str | None = _setting(None, "HMAC secret for HS*, 32+ characters")
    auth_secret_file: str | None = _setting(None, "file holding the HMAC secret")
    auth_public_key_file: str | None = _setting(None, "PEM public key for RS*/PS*/ES*/EdDSA")
    auth_jwks_file: str | None = _setting(None, "JWKS file; the token's kid picks the key")
    auth_issuer: str = _setting("nexus", "required iss claim")
    auth_audience: str = _setting("nexus", "required aud claim")
    auth_leeway: float = _setting(0.0, "seconds of clock skew allowed for exp/nbf/iat")
    auth_timeout: float = _setting(10.0, "seconds to authenticate after the upgrade (4001)")

    room_create_roles: tuple[str, ...] = _setting(
        ("admin", "member"), "roles that may create rooms"
    )
    max_rooms_per_connection: int = _setting(64, "rooms one connection may be in")
    max_frame_bytes: int = _setting(65536, "largest inbound message payload (close 1009)")
    max_body_bytes: int = _setting(16384, "largest message body, UTF-8 bytes (too_large)")
    max_meta_bytes: int = _setting(4096, "largest message meta, JSON bytes (too_large)")
    outbound_limit_bytes: int = _setting(
        1 << 20, "bytes queued for one connection before it is closed (4002)"
    )
    read_buffer_bytes: int = _setting(2048, "initial read buffer per connection")
    listen_backlog: int = _setting(2048, "listen() backlog of the WebSocket listener")
    frames_per_tick: int = _setting(
        64, "work units one connection may use per loop iteration (1 a frame + 1 a 4 KiB)"
    )
    flood_backlog_frames: int = _setting(
        4096, "frames held back past frames_per_tick before the reader is closed (4004)"
    )
    rate_conn_per_s: float = _setting(50.0, "per-connection request refill rate")
    rate_conn_burst: int = _setting(100, "per-connection bucket size")
    rate_user_per_s: float = _setting(100.0, "per-user refill rate (WebSocket and HTTP writes)")
    rate_user_burst: int = _setting(200, "per-user bucket size")
    refused_per_s: float = _setting(10.0, "refill rate of a connection's refused-frame allowance")
    refused_burst: int = _setting(
        100, "refused frames (errors, rate limits, binary, pings over the rate) before 4004"
    )
    heartbeat_interval: float = _setting(20.0, "seconds of silence before a server PING")
    heartbeat_timeout: float = _setting(10.0, "seconds after the PING before closing (1001)")
    history_max_limit: int = _setting(100, "largest history page (WebSocket and HTTP)")
    presence_broadcast_max: int = _setting(
        1000, "rooms with more present users get no presence events"
    )
    presence_list_max: int = _setting(200, "most users listed in room.joined")

    store_map_size: int = _setting(64 << 30, "LMDB map size in bytes (address space)")
    store_durability: str = _setting("full", "fsync per commit: full, data or none")
    commit_max_batch: int = _setting(1024, "most log entries in one group commit")
    idempotency_window: float = _setting(86400.0, "seconds a client_msg_id is remembered")
    retention_max_count: int = _setting(0, "entries kept per room; 0 = all")
    retention_max_age: float = _setting(0.0, "seconds entries are kept; 0 = forever")
    retention_interval: float = _setting(60.0, "seconds between retention sweeps")
    replay_page: int = _setting(256, "entries per page of a since catch-up")

    # cluster: many nodes share rooms through NATS JetStream (docs/cluster.md)
    cluster_engine: str = _setting("lmdb", "lmdb (one node) or nats (JetStream: many nodes)")
    cluster_nats_url: str = _setting("nats://127.0.0.1:4222", "NATS server(s), comma-separated")
    cluster_nats_stream: str = _setting("NEXUS_ROOMS", "JetStream stream of the room logs")
    cluster_nats_credentials_file: str | None = _setting(None, "NATS credentials (.creds) file")
    cluster_replicas: int = _setting(1, "JetStream replicas of the stream and buckets (1, 3, 5)")
    cluster_node_id: str | None = _setting(None, "this node's id (default: a random one)")
    cluster_heartbeat_interval: float = _setting(1.0, "seconds between node heartbeats")
    cluster_node_timeout: float = _setting(
        5.0, "seconds without a heartbeat after which a node's present users are gone"
    )
    cluster_publish_timeout: float = _setting(
        5.0, "seconds a JetStream publish may take before the write fails as unavailable"
    )

    drain_delay: float = _setting(0.0, "seconds /readyz says draining before clients close")
    shutdown_timeout: float = _setting(10.0, "seconds to finish commits and close clients")
    log_level: str = _setting("info", "debug, info, warning or error")
    log_format: str = _setting("console", "console or json")
    trace_exporter: str = _setting("none", "none, console or otlp")
    trace_endpoint: str | None = _setting(None, "OTLP/HTTP endpoint (implies otlp)")
    service_name: str = _setting("nexus", "OpenTelemetry service.name")
    print_dev_token: bool = _setting(True, "print a development token at start")
    extensions: tuple[str, ...] = _setting(
        (), "Python extensions to load at start, as module:function (docs/extending.md)"
    )
    search_enabled: bool = _setting(
        True, "index room history for search and keep memory records (docs/memory.md)"
    )

    ai_providers: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={"doc": "AI model providers by name ([ai.providers.NAME] tables; env: JSON)"},
    )
    agent_queue_max: int = _setting(4, "triggers an agent keeps waiting per room (then refused)")
    agent_delta_interval: float = _setting(
        0.04,
        "seconds between streamed reply deltas (30-50 ms is smooth and cheap; 0 sends every"
        " provider part as it arrives)",
    )
    agent_history_max: int = _setting(200, "recent room entries read for an agent's context")
    agent_turn_timeout: float = _setting(300.0, "seconds an agent's turn may take in all")

    plugins_dir: str | None = _setting(
        None, "folder of Wasm plugins installed for every tenant at start (docs/plugins.md)"
    )
    plugins_capabilities: tuple[str, ...] = _setting(
        ("log", "kv", "post", "history"),
        "capabilities plugins may be granted (add wasi for a private files folder)",
    )
    plugin_fuel_max: int = _setting(100_000_000, "largest limits.fuel a plugin may ask per call")
    plugin_deadline_ms_max: float = _setting(
        1000.0, "largest limits.deadline_ms a plugin may ask per call"
    )
    plugin_memory_pages_max: int = _setting(
        1024, "largest limits.memory_pages (64 KiB each) a plugin may ask"
    )
    plugin_module_max_bytes: int = _setting(4 << 20, "largest plugin module, bytes")
    plugin_quarantine_after: int = _setting(5, "plugin faults in a row that quarantine it")

    # skills
    skills_dir: str | None = _setting(
        None, "folder of skill folders installed for every tenant at start (docs/skills.md)"
    )
    skills_catalog_tokens: int = _setting(
        400, "tokens the skills catalog (names and descriptions) may take in an agent's context"
    )
    skill_archive_max_bytes: int = _setting(2 << 20, "largest skill archive upload, bytes")
    skill_file_max_bytes: int = _setting(512 << 10, "largest file of a skill, bytes (unpacked)")
    skill_files_max: int = _setting(200, "most files a skill may hold")
    skill_total_max_bytes: int = _setting(8 << 20, "largest skill in all, bytes (unpacked)")
    # MCP client: the servers agents may use (docs/mcp.md)
    mcp_servers: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={
            "doc": "MCP servers agents may use, by name ([mcp.servers.NAME] tables; env: JSON)"
        },
    )
    mcp_approval_timeout: float = _setting(
        300.0, "seconds a destructive MCP tool call waits for a room member's approval"
    )

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """Settings without secrets, for logs and the server-info endpoint."""
        out = dataclasses.asdict(self)
        for secret in ("auth_secret", "metrics_token"):
            if out.get(secret):
                out[secret] = "***"
        for provider in out.get("ai_providers", {}).values():
            if provider.get("api_key"):
                provider["api_key"] = "***"  # an inline key is never shown
            if isinstance(provider.get("headers"), dict):
                # extra headers often carry credentials (an org key, a gateway token)
                provider["headers"] = dict.fromkeys(provider["headers"], "***")
        for server in out.get("mcp_servers", {}).values():
            for key in ("headers", "env"):  # credentials as often as not
                if isinstance(server.get(key), dict):
                    server[key] = dict.fromkeys(server[key], "***")
        return out


_HINTS = get_type_hints(Settings)
FIELD_NAMES = tuple(f.name for f in fields(Settings))
FIELD_DOCS = {f.name: str(f.metadata["doc"]) for f in fields(Settings)}


def _coerce(name: str, raw: Any) -> Any:
    """Turn a raw value (TOML value or string from env/flags) into the field's type."""
    hint = _HINTS[name]
    text = isinstance(raw, str)
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            if text and raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if text and raw.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError
            return int(raw) if text or isinstance(raw, int) else _fail()
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw) if text or isinstance(raw, (int, float)) else _fail()
            if not math.isfinite(value):
                # NaN passes every "< 0" / "<= 0" check; a NaN leeway disables expiry checks.
                raise ValueError
            return value
        if hint == tuple[str, ...]:
            items = raw.split(",") if text else raw
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValueError
            return tuple(i.strip() for i in items if i.strip())
        if hint in (str, str | None):
            if raw is None or isinstance(raw, str):
                return raw
            raise ValueError
        if hint == dict[str, dict[str, Any]]:
            table = orjson.loads(raw) if text else raw  # JSON in the environment
            if not isinstance(table, dict) or not all(
                isinstance(k, str) and isinstance(v, dict) for k, v in table.items()
            ):
                raise ValueError
            return table
    except (ValueError, orjson.JSONDecodeError):
        pass
    expected = {bool: "a boolean", int: "an integer", float: "a number"}.get(hint, "a string")
    if hint == dict[str, dict[str, Any]]:
        expected = "a table of tables (TOML) or a JSON object of objects (environment)"
    if hint == tuple[str, ...]:
        expected = "a list of strings"
    raise ConfigError(name, f"expected {expected}, got {raw!r}")


def _fail() -> Any:
    raise ValueError


# Settings that are tables themselves: their TOML table is kept whole, not flattened.
TABLE_SETTINGS = ("ai_providers", "mcp_servers")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}".replace("-", "_")
        if isinstance(value, dict) and name not in TABLE_SETTINGS:
            flat.update(_flatten(value, f"{name}_"))
        else:
            flat[name] = value
    return flat


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build and validate Settings from a TOML file, environment and explicit overrides."""
    values: dict[str, Any] = {}
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("NEXUS_CONFIG") or None
    if config_file:
        path = Path(config_file)
        try:
            table = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
        for name, raw in _flatten(table).items():
            if name not in _HINTS:
                raise ConfigError(name, f"unknown setting in {path}")
            values[name] = _coerce(name, raw)
    for key, raw in environ.items():
        if not key.startswith("NEXUS_") or key == "NEXUS_CONFIG":
            continue
        name = key[len("NEXUS_") :].lower()
        if name not in _HINTS:
            raise ConfigError(key, "unknown setting")
        values[name] = _coerce(name, raw)
    for name, raw in (overrides or {}).items():
        if raw is None:
            continue
        if name not in _HINTS:
            raise ConfigError(name, "unknown setting")
        values[name] = _coerce(name, raw)
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Reject settings that cannot work, naming the first bad one."""
    for name in ("port", "http_port"):
        if not 0 <= getattr(s, name) <= 65535:
            raise ConfigError(name, f"must be 0..65535, got {getattr(s, name)}")
    if s.trace_exporter not in TRACE_EXPORTERS:
        raise ConfigError("trace_exporter", f"must be one of {', '.join(TRACE_EXPORTERS)}")
    for name in (
        "max_rooms_per_connection",
        "max_frame_bytes",
        "max_body_bytes",
        "max_meta_bytes",
        "outbound_limit_bytes",
        "read_buffer_bytes",
        "rate_conn_burst",
        "rate_user_burst",
        "listen_backlog",
        "presence_list_max",
        "http_max_body_bytes",
        "frames_per_tick",
        "flood_backlog_frames",
        "refused_burst",
        "agent_queue_max",
        "agent_history_max",
        "history_max_limit",
        "store_map_size",
        "commit_max_batch",
        "replay_page",
        "plugin_fuel_max",
        "plugin_memory_pages_max",
        "plugin_module_max_bytes",
        "plugin_quarantine_after",
        "skills_catalog_tokens",
        "skill_archive_max_bytes",
        "skill_file_max_bytes",
        "skill_files_max",
        "skill_total_max_bytes",
    ):
        if getattr(s, name) <= 0:
            raise ConfigError(name, f"must be positive, got {getattr(s, name)}")
    for name in (
        "auth_timeout",
        "agent_turn_timeout",
        "rate_conn_per_s",
        "rate_user_per_s",
        "refused_per_s",
        "heartbeat_interval",
        "heartbeat_timeout",
        "shutdown_timeout",
        "idempotency_window",
        "retention_interval",
        "plugin_deadline_ms_max",
        "mcp_session_idle_timeout",
        "mcp_approval_timeout",
    ):
        if getattr(s, name) <= 0:
            raise ConfigError(name, f"must be positive, got {getattr(s, name)}")
    for name in (
        "retention_max_count",
        "retention_max_age",
        "drain_delay",
        "presence_broadcast_max",
        "agent_delta_interval",
    ):
        if getattr(s, name) < 0:
            raise ConfigError(name, f"must not be negative, got {getattr(s, name)}")
    unknown = set(s.plugins_capabilities) - set(PLUGIN_CAPABILITIES)
    if unknown:
        raise ConfigError(
            "plugins_capabilities",
            f"unknown {', '.join(sorted(unknown))}; known: {', '.join(PLUGIN_CAPABILITIES)}",
        )
    if s.store_durability not in DURABILITY_MODES:
        raise ConfigError("store_durability", f"must be one of {', '.join(DURABILITY_MODES)}")
    if s.cluster_engine not in CLUSTER_ENGINES:
        raise ConfigError("cluster_engine", f"must be one of {', '.join(CLUSTER_ENGINES)}")
    if s.cluster_replicas not in (1, 3, 5):
        raise ConfigError("cluster_replicas", "must be 1, 3 or 5")
    for name in ("cluster_heartbeat_interval", "cluster_node_timeout", "cluster_publish_timeout"):
        if getattr(s, name) <= 0:
            raise ConfigError(name, f"must be positive, got {getattr(s, name)}")
    if s.cluster_node_timeout <= s.cluster_heartbeat_interval:
        raise ConfigError("cluster_node_timeout", "must be longer than cluster_heartbeat_interval")
    if s.cluster_node_id is not None and not s.cluster_node_id.replace("-", "").isalnum():
        raise ConfigError("cluster_node_id", "letters, digits and - only")
    if s.agent_delta_interval > 1.0:
        raise ConfigError("agent_delta_interval", "must be at most 1 s (replies would stutter)")
    if s.auth_leeway < 0:
        raise ConfigError("auth_leeway", "must not be negative")
    if s.heartbeat_timeout > s.heartbeat_interval:
        raise ConfigError("heartbeat_timeout", "must not exceed heartbeat_interval")
    if s.max_body_bytes + s.max_meta_bytes > s.max_frame_bytes:
        raise ConfigError("max_frame_bytes", "must be at least max_body_bytes + max_meta_bytes")
    if s.log_format not in LOG_FORMATS:
        raise ConfigError("log_format", f"must be one of {', '.join(LOG_FORMATS)}")
    if s.log_level not in LOG_LEVELS:
        raise ConfigError("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    algs = set(s.auth_algorithms)
    if not algs:
        raise ConfigError("auth_algorithms", "must name at least one algorithm")
    unknown = algs - HMAC_ALGORITHMS - ASYMMETRIC_ALGORITHMS
    if unknown:
        raise ConfigError("auth_algorithms", f"unsupported: {', '.join(sorted(unknown))}")
    if algs & HMAC_ALGORITHMS and algs & ASYMMETRIC_ALGORITHMS:
        # Accepting both families is what algorithm-confusion attacks exploit.
        raise ConfigError("auth_algorithms", "must not mix HMAC (HS*) and public-key algorithms")
    if algs & ASYMMETRIC_ALGORITHMS:
        if not (s.auth_public_key_file or s.auth_jwks_file):
            raise ConfigError(
                "auth_public_key_file", "required (or auth_jwks_file) for public-key algorithms"
            )
        for name in ("auth_public_key_file", "auth_jwks_file"):
            path = getattr(s, name)
            if path and not Path(path).is_file():
                raise ConfigError(name, f"file not found: {path}")
    if s.auth_secret is not None and len(s.auth_secret) < MIN_SECRET_CHARS:
        raise ConfigError("auth_secret", f"must be at least {MIN_SECRET_CHARS} characters")
    if s.auth_secret_file:
        if not Path(s.auth_secret_file).is_file():
            raise ConfigError("auth_secret_file", f"file not found: {s.auth_secret_file}")
        try:
            held = read_secret_file(s.auth_secret_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("auth_secret_file", f"cannot read: {exc}") from None
        if len(held) < MIN_SECRET_CHARS:
            raise ConfigError(
                "auth_secret_file", f"must hold a secret of at least {MIN_SECRET_CHARS} characters"
            )


def read_secret_file(path: str | Path) -> str:
    """The secret a file holds: its text without surrounding whitespace."""
    return Path(path).read_text("utf-8").strip()
