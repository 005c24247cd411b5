"""The plugins on the write path: ``on_message`` before commit, ``on_event`` and
``on_command`` after it.

One interceptor serves every plugin with ``on_message``: the chain asks it once per write
whether the room concerns it (a cached list per room), then it runs the room's plugins in
name order, each seeing the body and meta as the plugins before it left them. Faults are
counted per (tenant, plugin) here, never raised into the chain: a fault of a fail-open
plugin skips it, of a fail-closed one refuses the write (``unavailable``).

One observer per plugin with ``on_event`` or ``on_command``, named
``plugin:<tenant>:<name>`` (``*`` for folder plugins): its durable cursor survives
reloads and restarts. A disabled plugin lets events pass (its cursor moves); a
quarantined one holds them (the runner retries with backoff) until it is reloaded or
enabled again, then catches up — except a folder plugin, whose one observer serves every
tenant: the quarantined tenant's events pass so the others' are not held.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ...core.hooks import ALLOW, CommittedEntry, Deny, PendingWrite, Replace, StartAt, Verdict
from ...core.rooms import Room
from ...errors import Unavailable
from ...store.keys import split_room_key
from .instance import PluginFault
from .runtime import ALL_TENANTS, EVENT_BYTES_PER_CALL, EVENTS_PER_CALL, Installed, PluginRuntime

DENY_CODES = frozenset({"forbidden", "rate_limited", "bad_request"})
COMMAND_MARK = b'"body":"/'


class Quarantined(Exception):
    """Raised to hold an observer's events while its plugin is quarantined."""


class PluginInterceptor:
    name = "plugins"
    kinds: frozenset[str] | None = frozenset({"message"})
    # Each plugin call has its own epoch deadline; this only guards the chain's clock.
    deadline = 60.0
    failure_policy = "open"  # faults never reach the chain: each plugin's policy applies

    def __init__(self, runtime: PluginRuntime) -> None:
        self._runtime = runtime

    def wants(self, room: Room) -> bool:
        return bool(self._runtime.message_plugins(room.tenant, room.name, room.key))

    def intercept(self, write: PendingWrite) -> Verdict:
        room = write.room
        runtime = self._runtime
        plugins = runtime.message_plugins(room.tenant, room.name, room.key)
        body, meta = write.body, write.meta
        changed = False
        principal = write.principal
        payload = b""  # built once, again only after a plugin changed body or meta
        for installed in plugins:
            if installed.manifest.kinds and write.kind not in installed.manifest.kinds:
                continue
            state = runtime.state(room.tenant, installed)
            if state.quarantined:
                if installed.manifest.failure_policy == "closed":
                    return _unavailable(installed, "quarantined")
                continue
            if not payload:
                payload = orjson.dumps(
                    {
                        "tenant": room.tenant,
                        "room": room.name,
                        "kind": write.kind,
                        "sender": principal.user_id,
                        "sender_kind": principal.kind,
                        "body": body,
                        "meta": meta,
                    }
                )
            try:
                verdict = _verdict(runtime.call(state, "on_message", payload), runtime.settings)
            except PluginFault as fault:
                if fault.kind == "json":  # the call itself went well: count the answer
                    runtime.fault(state, fault)
                if installed.manifest.failure_policy == "closed":
                    return _unavailable(installed, fault.kind)
                continue
            if verdict is None:
                state.consecutive = 0
                continue
            action = verdict["action"]
            if action == "deny":
                state.consecutive = 0
                state.denials += 1
                return Deny(verdict["reason"], verdict["code"])
            new_body, new_meta = body, meta
            if action == "replace":
                if verdict["body"] is not None:
                    new_body = verdict["body"]
                if verdict["meta"] is not None:
                    new_meta = verdict["meta"]
            else:  # annotate
                new_meta = {**(meta or {}), **verdict["meta"]}
            if (
                new_meta is not meta
                and len(orjson.dumps(new_meta)) > runtime.settings.max_meta_bytes
            ):
                runtime.fault(state, PluginFault("json", "left a meta over max_meta_bytes"))
                if installed.manifest.failure_policy == "closed":
                    return _unavailable(installed, "json")
                continue
            body, meta, changed = new_body, new_meta, True
            payload = b""
            state.consecutive = 0
        if changed:
            return Replace(body=body, meta=meta)
        return ALLOW


def _unavailable(installed: Installed, why: str) -> Deny:
    return Deny(f"write refused: plugin {installed.name} is unavailable ({why})", Unavailable.code)


def _verdict(out: bytes | None, settings: Any) -> dict[str, Any] | None:
    """A checked verdict from on_message output; None = allow. PluginFault('json') when the
    output is not a verdict."""
    if out is None:
        return None
    try:
        answer = orjson.loads(out)
    except orjson.JSONDecodeError:
        raise PluginFault("json", "on_message answered bytes that are not JSON") from None
    if not isinstance(answer, dict):
        raise PluginFault("json", "on_message answered JSON that is not an object")
    action = answer.get("action", "allow")
    if action == "allow":
        return None
    if action == "deny":
        reason = answer.get("reason")
        code = answer.get("code", "forbidden")
        if not isinstance(reason, str) or not reason or code not in DENY_CODES:
            raise PluginFault("json", "a deny needs a reason and a known code")
        return {"action": "deny", "reason": reason[:500], "code": code}
    if action == "replace":
        body, meta = answer.get("body"), answer.get("meta")
        if (body is None and meta is None) or (
            body is not None and (not isinstance(body, str) or not body)
        ):
            raise PluginFault("json", "a replace needs a non-empty body or a meta")
        if meta is not None and not isinstance(meta, dict):
            raise PluginFault("json", "replace meta must be an object")
        # Checked here, not by the chain: a chain fault would count against every plugin.
        if (
            body is not None
            and len(body.encode("utf-8", "surrogatepass")) > settings.max_body_bytes
        ):
            raise PluginFault(
                "json", f"replaced the body with more than {settings.max_body_bytes} bytes"
            )
        return {"action": "replace", "body": body, "meta": meta}
    if action == "annotate":
        if not isinstance(answer.get("meta"), dict):
            raise PluginFault("json", "an annotate needs a meta object")
        return {"action": "annotate", "meta": answer["meta"]}
    raise PluginFault("json", f"unknown action {str(action)[:40]!r}")


class PluginObserver:
    start_at: StartAt = "end"  # a new plugin sees what happens from now on
    timeout = 60.0

    def __init__(self, runtime: PluginRuntime, installed: Installed) -> None:
        self._runtime = runtime
        self.installed = installed
        self.name = f"plugin:{installed.tenant}:{installed.name}"
        hooks = installed.manifest.hooks
        self._events = "on_event" in hooks
        self._commands = (
            {c.name for c in installed.manifest.commands} if "on_command" in hooks else set()
        )

    def wants(self, room_key: str) -> bool:
        tenant, name = split_room_key(room_key)
        return self.installed.serves(tenant) and self.installed.manifest.matches(name)

    def trimmed(self, room_key: str, first_seq: int) -> None:
        return None

    async def observe(self, entries: Sequence[CommittedEntry]) -> None:
        installed = self.installed
        if not installed.enabled:
            return  # disabled: events pass
        by_tenant: dict[str, list[CommittedEntry]] = {}
        for entry in entries:
            by_tenant.setdefault(split_room_key(entry.room_key)[0], []).append(entry)
        for tenant, group in by_tenant.items():
            state = self._runtime.state(tenant, installed)
            if state.quarantined:
                if installed.tenant == ALL_TENANTS:
                    continue  # one observer serves every tenant: the others go on
                raise Quarantined(f"plugin {installed.name} is quarantined for tenant {tenant}")
            if self._commands:
                self._run_commands(tenant, state, group)
            if self._events:
                self._run_events(tenant, state, group)

    def _run_events(self, tenant: str, state: Any, group: list[CommittedEntry]) -> None:
        kinds = self.installed.manifest.kinds
        chunk: list[bytes] = []
        size = 0
        last_id = ""
        for entry in group:
            if entry.kind not in kinds:
                continue
            chunk.append(entry.record)
            size += len(entry.record)
            last_id = f"{entry.room_key}:{entry.seq}"
            if len(chunk) >= EVENTS_PER_CALL or size >= EVENT_BYTES_PER_CALL:
                self._call_events(tenant, state, chunk, last_id)
                chunk, size = [], 0
        if chunk:
            self._call_events(tenant, state, chunk, last_id)

    def _call_events(self, tenant: str, state: Any, chunk: list[bytes], last_id: str) -> None:
        payload = b'{"tenant":' + orjson.dumps(tenant) + b',"events":[' + b",".join(chunk) + b"]}"
        out = self._runtime.call(state, "on_event", payload)  # a fault raises: redelivered
        answer = self._answer(state, "on_event", out)
        if answer.get("error"):
            fault = PluginFault("refused", f"on_event: {str(answer['error'])[:300]}")
            self._runtime.fault(state, fault)
            raise fault
        state.consecutive = 0
        self._runtime.submit_posts(state, f"ev.{self.installed.name}.{last_id}")

    def _answer(self, state: Any, hook: str, out: bytes | None) -> dict[str, Any]:
        """A hook's JSON object answer ({} for none); a fault (counted, raised) otherwise."""
        if out is None:
            return {}
        try:
            answer = orjson.loads(out)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            fault = PluginFault("json", f"{hook} answered something that is not a JSON object")
            self._runtime.fault(state, fault)
            raise fault
        return answer

    def _run_commands(self, tenant: str, state: Any, group: list[CommittedEntry]) -> None:
        for entry in group:
            if entry.kind != "message" or COMMAND_MARK not in entry.record:
                continue
            record = entry.event()
            body = record.get("body")
            if record.get("sender_kind") != "human" or not isinstance(body, str):
                continue
            word, _, args = body[1:].partition(" ")
            if not body.startswith("/") or word not in self._commands:
                continue
            payload = orjson.dumps(
                {
                    "tenant": tenant,
                    "room": record.get("room"),
                    "command": word,
                    "args": args.strip(),
                    "sender": record.get("sender"),
                    "message_id": record.get("id"),
                    "seq": record.get("seq"),
                }
            )
            out = self._runtime.call(state, "on_command", payload)  # a fault raises
            reply = self._answer(state, "on_command", out).get("reply")
            state.consecutive = 0
            if isinstance(reply, str) and reply:
                state.api.posts.insert(
                    0,
                    {
                        "room": record.get("room"),
                        "body": reply[:16_384],
                        "meta": {"command": word, "reply_to_message": record.get("id")},
                        "client_msg_id": f"cmd.{self.installed.name}.{record.get('id')}"[:128],
                    },
                )
            self._runtime.submit_posts(state, f"cmd.{self.installed.name}.{record.get('id')}")
