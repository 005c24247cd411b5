"""What a plugin may do from inside a hook, for one (tenant, plugin): log, post, read
history, keep key-value state. Each is reached only through an import its manifest's
capability allowed (instance.check_module).

Nothing here re-enters a plugin: posts are queued during the call and submitted by the
runtime after it returns (a post runs the interceptors, which may call this very plugin).
Key-value writes go to an overlay read first by ``kv_get`` and are committed with the
next group commit (metadata database ``plugin_kv``): a batch of events handled by
``on_event`` and the state it wrote commit together, or the state first.
"""

from __future__ import annotations

import logging
from typing import Any

from ...core.extension_host import ExtensionHost
from ...store.keys import room_key
from .instance import E_DENIED, E_INPUT, E_QUOTA, KEY_MAX, VALUE_MAX
from .manifest import Manifest

log = logging.getLogger("nexus.plugin")

POSTS_PER_CALL = 256  # one per event of a full on_event batch
KV_SETS_PER_CALL = 64
LOGS_PER_CALL = 32
HISTORY_MAX = 100
BODY_MAX_CHARS = 16_384
CLIENT_ID_MAX = 128
LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)


def kv_prefix(tenant: str, plugin: str) -> bytes:
    return f"{tenant}\x1f{plugin}\x1f".encode()


class PluginHostApi:
    def __init__(self, host: ExtensionHost, tenant: str, manifest: Manifest) -> None:
        self._host = host
        self.tenant = tenant
        self.manifest = manifest
        self._prefix = kv_prefix(tenant, manifest.name)
        self._overlay: dict[bytes, bytes | None] = {}  # written, maybe not yet committed
        self.posts: list[dict[str, Any]] = []  # queued during a call, taken after it
        self._kv_sets = 0
        self._logs = 0

    def begin_call(self) -> None:
        self.posts = []
        self._kv_sets = 0
        self._logs = 0

    def _room_allowed(self, name: Any) -> bool:
        if not isinstance(name, str) or not self.manifest.matches(name):
            return False
        return self._host.rooms.find(self.tenant, name) is not None

    # -- HostApi -------------------------------------------------------------------------
    def log(self, level: int, text: str) -> None:
        self._logs += 1
        if self._logs > LOGS_PER_CALL:
            return
        log.log(
            LEVELS[min(max(level, 0), 3)],
            "plugin %s (tenant %s): %s",
            self.manifest.name,
            self.tenant,
            text,
        )

    def post(self, request: dict[str, Any]) -> int:
        if len(self.posts) >= POSTS_PER_CALL:
            return E_QUOTA
        room, body = request.get("room"), request.get("body")
        meta, cmid = request.get("meta"), request.get("client_msg_id")
        if (
            not isinstance(body, str)
            or not body
            or len(body) > BODY_MAX_CHARS
            or (meta is not None and not isinstance(meta, dict))
            or (
                cmid is not None
                and (not isinstance(cmid, str) or not 0 < len(cmid) <= CLIENT_ID_MAX)
            )
        ):
            return E_INPUT
        if not self._room_allowed(room):
            return E_DENIED
        self.posts.append({"room": room, "body": body, "meta": meta, "client_msg_id": cmid})
        return 0

    def history(self, request: dict[str, Any]) -> bytes | int:
        room, limit, before = request.get("room"), request.get("limit", 20), request.get("before")
        if (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 1 <= limit <= HISTORY_MAX
            or (before is not None and (not isinstance(before, int) or before < 1))
        ):
            return E_INPUT
        if not isinstance(room, str) or not self._room_allowed(room):
            return E_DENIED
        rkey = room_key(self.tenant, room)
        upto = before if before is not None else self._host.rooms.head(rkey) + 1
        records = self._host.store.read_before(rkey, upto, limit)
        return b'{"events":[' + b",".join(records) + b"]}"

    def kv_get(self, key: bytes) -> bytes | None:
        full = self._prefix + key
        if full in self._overlay:
            return self._overlay[full]
        value: bytes | None = self._host.store.record("plugin_kv", full)
        return value

    def kv_set(self, key: bytes, value: bytes) -> int:
        if len(key) > KEY_MAX or len(value) > VALUE_MAX:
            return E_INPUT
        self._kv_sets += 1
        if self._kv_sets > KV_SETS_PER_CALL:
            return E_QUOTA
        self._write(self._prefix + key, value)
        return 0

    def kv_delete(self, key: bytes) -> int:
        if len(key) > KEY_MAX:
            return E_INPUT
        self._write(self._prefix + key, None)
        return 0

    def _write(self, full: bytes, value: bytes | None) -> None:
        self._overlay[full] = value

        def committed() -> None:
            # The store has it now; a later write of the same key keeps its own entry.
            if self._overlay.get(full, b"\x00missing") is value:
                del self._overlay[full]

        self._host.pipeline.submit_meta([("plugin_kv", full, value)], committed)
