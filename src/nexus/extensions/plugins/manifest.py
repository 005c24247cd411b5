"""A plugin's manifest: what it is, which hooks it runs where, what it may do, its limits.

JSON or TOML, checked strictly (unknown fields refused) against the model below, whose
JSON Schema ships as ``manifest.schema.json`` beside this file (``nexus plugin schema``
prints it; a test keeps the two equal). docs/plugins.md describes every field.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ...errors import BadRequest

NAME = r"^[a-z0-9][a-z0-9-]{0,63}$"
COMMAND = r"^[a-z][a-z0-9_-]{0,31}$"
# on_load is called whenever it is exported; listing it makes the export required.
Hook = Literal["on_load", "on_message", "on_event", "on_command", "on_tick"]
Capability = Literal["log", "kv", "post", "history", "wasi"]
MANIFEST_MAX_BYTES = 64 * 1024


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fuel: int = Field(5_000_000, ge=1_000, description="wasm fuel per call (~instructions)")
    deadline_ms: float = Field(20.0, gt=0, le=10_000, description="wall-clock limit per call")
    memory_pages: int = Field(16, ge=1, le=65_536, description="linear memory cap, 64 KiB pages")


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=COMMAND, description="typed as /name at the start of a message")
    description: str = Field("", max_length=200)


class Manifest(BaseModel):
    """Everything the runtime needs to know about a plugin before running any of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=NAME, description="unique per tenant; the plugin's user id is plugin:<name>"
    )
    version: str = Field(pattern=r"^[0-9A-Za-z.+-]{1,32}$")
    description: str = Field("", max_length=500)
    module: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,128}\.wasm$", description="module file (folder installs)"
    )
    digest: str | None = Field(
        None, pattern=r"^sha256:[0-9a-f]{64}$", description="checked against the module when set"
    )
    hooks: tuple[Hook, ...] = Field(min_length=1, description="hooks the runtime calls")
    rooms: tuple[str, ...] = Field(("*",), min_length=1, description="glob patterns of room names")
    kinds: tuple[str, ...] = Field(
        ("message",), min_length=1, description="entry kinds for on_message and on_event"
    )
    commands: tuple[Command, ...] = ()
    tick_seconds: float = Field(60.0, ge=1.0, le=86_400.0)
    capabilities: tuple[Capability, ...] = ()
    limits: Limits = Field(default_factory=lambda: Limits.model_validate({}))
    failure_policy: Literal["open", "closed"] = Field(
        "open", description="on_message faults: open allows the write, closed refuses it"
    )
    config: dict[str, Any] = Field(default_factory=dict, description="given to on_load")

    @field_validator("hooks", "capabilities", "rooms", "kinds")
    @classmethod
    def _unique(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(set(value)) != len(value):
            raise ValueError("listed twice")
        return value

    @field_validator("rooms")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not 1 <= len(pattern) <= 128 or not re.fullmatch(
                r"[A-Za-z0-9_.:@*?\[\]!-]+", pattern
            ):
                raise ValueError(f"{pattern!r} is not a room name pattern")
        return value

    def model_post_init(self, _: Any) -> None:
        if "on_command" in self.hooks and not self.commands:
            raise ValueError("on_command needs at least one entry in commands")
        if self.commands and "on_command" not in self.hooks:
            raise ValueError("commands are declared but on_command is not in hooks")
        names = [c.name for c in self.commands]
        if len(set(names)) != len(names):
            raise ValueError("a command is declared twice")
        if len(orjson.dumps(self.config)) > MANIFEST_MAX_BYTES // 2:
            raise ValueError("config is over 32 KiB")

    # -- what the runtime asks -----------------------------------------------------------
    def matches(self, room: str) -> bool:
        return any(fnmatch.fnmatchcase(room, p) for p in self.rooms)

    def digest_of(self, module: bytes) -> str:
        return "sha256:" + hashlib.sha256(module).hexdigest()


def parse_manifest(raw: bytes | str | dict[str, Any], *, toml: bool = False) -> Manifest:
    """A manifest from JSON (or TOML) text or an already-decoded object; BadRequest with
    every problem listed (field path and reason) when it does not fit the schema."""
    if isinstance(raw, (bytes, str)):
        if len(raw) > MANIFEST_MAX_BYTES:
            raise BadRequest(f"manifest is over {MANIFEST_MAX_BYTES} bytes")
        try:
            if toml:
                obj = tomllib.loads(raw.decode() if isinstance(raw, bytes) else raw)
            else:
                obj = orjson.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"manifest is not valid {'TOML' if toml else 'JSON'}: {exc}") from None
    else:
        obj = raw
    if not isinstance(obj, dict):
        raise BadRequest("manifest must be an object")
    try:
        return Manifest.model_validate(obj)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(f"invalid manifest: {problems}") from None


def manifest_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://nexus.dev/schemas/plugin-manifest-v1.json"
    return schema
