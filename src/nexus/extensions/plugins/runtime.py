"""The plugin runtime: installed plugins, their running instances, faults and quarantine.

Two kinds of installs: per tenant over the HTTP API (persisted in LMDB, database
``plugin``: the record under ``p\\x1f<tenant>\\x1f<name>``, the module under
``w\\x1f<digest>``), and from the ``plugins_dir`` folder at start (every tenant; not
persisted: the folder is the source). A plugin runs as one ``PluginState`` per tenant
that uses it: its own Store and instance, its own host API (key-value state is per
tenant), its own fault count and quarantine.

Seams (core/hooks.py): ``on_message`` through one interceptor, registered only while an
enabled plugin has that hook (no plugin, no cost: the chain stays inactive); ``on_event``
and ``on_command`` through one observer per plugin (its durable cursor is what makes a
restart, a reload or ``kill -9`` lose and double nothing); ``on_tick`` on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import wasmtime
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ...auth import Principal
from ...core.extension_host import ExtensionHost
from ...core.observers import ObserverRunner
from ...errors import BadRequest, Conflict, NexusError, NotFound
from ...protocol.requests import MessageSend
from .engine import PluginEngine
from .hostapi import PluginHostApi
from .instance import PluginFault, PluginInstance, check_module
from .manifest import Manifest, parse_manifest

log = logging.getLogger(__name__)

ALL_TENANTS = "*"  # the tenant scope of a folder plugin
DB = "plugin"
AUDIT_ROOM = "plugin-audit"  # per tenant, private: quarantine notices
EVENTS_PER_CALL = 256
EVENT_BYTES_PER_CALL = 512 * 1024
POST_RATE = 20.0  # posts a second per (tenant, plugin), burst POST_BURST
POST_BURST = 100.0
FAULT_WINDOW_S = 60.0  # also quarantined: quarantine_after x FAULT_WINDOW_FACTOR faults in it
FAULT_WINDOW_FACTOR = 4


def record_key(tenant: str, name: str) -> bytes:
    return f"p\x1f{tenant}\x1f{name}".encode()


def module_key(digest: str) -> bytes:
    return f"w\x1f{digest}".encode()


@dataclass
class Installed:
    """One plugin definition: a tenant's (API) or every tenant's (folder)."""

    tenant: str  # or ALL_TENANTS
    manifest: Manifest
    digest: str
    wasm: bytes
    module: wasmtime.Module
    enabled: bool = True
    source: str = "api"  # api | folder
    installed_at: int = 0
    installed_by: str = ""
    generation: int = 0  # bumped by a reload: running instances are rebuilt

    @property
    def name(self) -> str:
        return self.manifest.name

    def record(self) -> bytes:
        return orjson.dumps(
            {
                "tenant": self.tenant,
                "manifest": self.manifest.model_dump(mode="json", exclude_none=True),
                "digest": self.digest,
                "enabled": self.enabled,
                "installed_at": self.installed_at,
                "installed_by": self.installed_by,
            }
        )

    def serves(self, tenant: str) -> bool:
        return self.tenant == ALL_TENANTS or self.tenant == tenant


@dataclass
class PluginState:
    """One plugin running for one tenant."""

    installed: Installed
    tenant: str
    api: PluginHostApi
    principal: Principal
    instance: PluginInstance | None = None
    generation: int = -1
    consecutive: int = 0
    quarantined: bool = False
    last_error: str = ""
    calls: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    denials: int = 0
    tick: asyncio.TimerHandle | None = None
    post_tokens: float = POST_BURST
    post_at: float = 0.0
    recent_faults: deque[float] = field(default_factory=deque)  # monotonic times


class _Quiet:
    """A caller for the plugin's own writes: answers are logged when they are errors."""

    def __init__(self, principal: Principal, what: str) -> None:
        self.principal = principal
        self._what = what

    def send(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"error"'):
            log.warning("%s was refused: %s", self._what, payload[:300].decode("utf-8", "replace"))


class PluginRuntime:
    def __init__(
        self, host: ExtensionHost, engine: PluginEngine, *, granted: frozenset[str]
    ) -> None:
        self.host = host
        self.engine = engine
        self.settings = host.settings
        self.granted = granted
        self._installed: dict[tuple[str, str], Installed] = {}
        self._states: dict[tuple[str, str], PluginState] = {}
        self._observers: dict[tuple[str, str], ObserverRunner] = {}
        self._by_room: dict[str, list[Installed]] = {}  # on_message plugins per room key
        self._interceptor: Any = None  # seams.PluginInterceptor, while registered
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}  # observer changes per key
        self._started = False
        self.quarantines = 0

    # -- start and stop --------------------------------------------------------------
    def load(self) -> None:
        """Read the API installs from LMDB and the folder installs (before serving)."""
        store = self.host.store
        for key, raw in store.records(DB, b"p\x1f"):
            try:
                rec = orjson.loads(raw)
                manifest = parse_manifest(rec["manifest"])
                wasm = store.record(DB, module_key(rec["digest"]))
                if wasm is None:
                    raise BadRequest("its module is missing")
                installed = self._build(
                    rec["tenant"], manifest, wasm, source="api", enabled=bool(rec["enabled"])
                )
            except (NexusError, KeyError, ValueError) as exc:
                log.error("plugin %s not loaded: %s", key.decode(errors="replace"), exc)
                continue
            installed.installed_at = int(rec.get("installed_at", 0))
            installed.installed_by = str(rec.get("installed_by", ""))
            self._installed[(installed.tenant, installed.name)] = installed
        folder = self.settings.plugins_dir
        if folder:
            for installed in self._from_folder(Path(folder)):
                self._installed[(ALL_TENANTS, installed.name)] = installed
        self._changed()

    def start(self) -> None:
        self._started = True
        for installed in self._installed.values():
            self._attach(installed)
        self._changed()

    async def stop(self) -> None:
        self._started = False
        for state in self._states.values():
            if state.tick is not None:
                state.tick.cancel()
        for key in list(self._observers):
            await self._detach_observer(key)
        self.engine.stop()

    def _from_folder(self, folder: Path) -> Iterator[Installed]:
        if not folder.is_dir():
            log.error("plugins_dir %s is not a folder: no folder plugins", folder)
            return
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            try:
                yield self._folder_plugin(sub)
            except (NexusError, OSError) as exc:
                message = exc.message if isinstance(exc, NexusError) else str(exc)
                log.error("plugin folder %s not loaded: %s", sub, message)

    def _folder_plugin(self, sub: Path) -> Installed:
        for name, toml in (("manifest.json", False), ("manifest.toml", True)):
            path = sub / name
            if path.exists():
                manifest = parse_manifest(path.read_bytes(), toml=toml)
                break
        else:
            raise BadRequest("no manifest.json or manifest.toml")
        module_name = manifest.module or f"{manifest.name}.wasm"
        path = sub / module_name
        if path.exists():
            wasm = path.read_bytes()
        elif path.with_suffix(".wat").exists():
            wasm = bytes(wasmtime.wat2wasm(path.with_suffix(".wat").read_text()))
        else:
            raise BadRequest(f"module {module_name} not found")
        return self._build(ALL_TENANTS, manifest, wasm, source="folder", enabled=True)

    def _build(
        self, tenant: str, manifest: Manifest, wasm: bytes, *, source: str, enabled: bool
    ) -> Installed:
        """Check and compile a plugin (nothing registered yet)."""
        if len(wasm) > self.settings.plugin_module_max_bytes:
            raise BadRequest(
                f"module is {len(wasm)} bytes (limit {self.settings.plugin_module_max_bytes})"
            )
        digest = manifest.digest_of(wasm)
        if manifest.digest is not None and manifest.digest != digest:
            raise BadRequest(f"module digest is {digest}, the manifest says {manifest.digest}")
        self._check_limits(manifest)
        module = self.engine.module(wasm, digest)
        check_module(module, manifest, self.granted)
        return Installed(
            tenant,
            manifest,
            digest,
            wasm,
            module,
            enabled=enabled,
            source=source,
            installed_at=int(time.time() * 1000),
        )

    def _trial(self, installed: Installed) -> None:
        """Instantiate once under the manifest's limits (its start function included), so
        a module that cannot start is refused now rather than faulting on first use."""
        limits = installed.manifest.limits
        try:
            PluginInstance(
                self.engine,
                installed.module,
                installed.manifest,
                PluginHostApi(self.host, "-", installed.manifest),
                fuel=limits.fuel,
                deadline_ms=limits.deadline_ms,
                memory_pages=limits.memory_pages,
            )
        except PluginFault as fault:
            raise BadRequest(f"module cannot start: {fault.message}") from None

    def _check_limits(self, manifest: Manifest) -> None:
        s, limits = self.settings, manifest.limits
        if limits.fuel > s.plugin_fuel_max:
            raise BadRequest(f"limits.fuel {limits.fuel} is over this server's {s.plugin_fuel_max}")
        if limits.deadline_ms > s.plugin_deadline_ms_max:
            raise BadRequest(
                f"limits.deadline_ms {limits.deadline_ms} is over this server's"
                f" {s.plugin_deadline_ms_max}"
            )
        if limits.memory_pages > s.plugin_memory_pages_max:
            raise BadRequest(
                f"limits.memory_pages {limits.memory_pages} is over this server's"
                f" {s.plugin_memory_pages_max}"
            )
        for cap in manifest.capabilities:
            if cap not in self.granted:
                raise BadRequest(
                    f"capability {cap!r} is not allowed on this server (plugins_capabilities)"
                )

    # -- administration (HTTP API) -----------------------------------------------------
    def visible(self, tenant: str) -> list[Installed]:
        """The plugins that run for ``tenant``: its own and the folder's."""
        return sorted(
            (i for i in self._installed.values() if i.serves(tenant)), key=lambda i: i.name
        )

    def get(self, tenant: str, name: str) -> Installed:
        installed = self._installed.get((tenant, name)) or self._installed.get((ALL_TENANTS, name))
        if installed is None:
            raise NotFound(f"no plugin {name}")
        return installed

    def state_of(self, tenant: str, installed: Installed) -> PluginState | None:
        return self._states.get((tenant, installed.name))

    async def install(
        self, who: Principal, manifest: Manifest, wasm: bytes
    ) -> tuple[Installed, bool]:
        """Install or replace (a hot reload) a tenant's plugin; (plugin, created)."""
        if (ALL_TENANTS, manifest.name) in self._installed:
            raise Conflict(f"plugin {manifest.name} is installed from the plugins folder")
        if len(wasm) <= self.settings.plugin_module_max_bytes:
            # Compiling a large module takes a while: on a worker thread, not on the loop.
            await asyncio.to_thread(self.engine.module, wasm, manifest.digest_of(wasm))
        installed = self._build(who.tenant, manifest, wasm, source="api", enabled=True)
        self._trial(installed)
        installed.installed_by = who.user_id
        key = (who.tenant, manifest.name)
        old = self._installed.get(key)
        if old is not None:
            installed.enabled = old.enabled
            installed.generation = old.generation + 1
        ops: list[tuple[str, bytes, bytes | None]] = [
            (DB, module_key(installed.digest), wasm),
            (DB, record_key(who.tenant, manifest.name), installed.record()),
        ]
        if (
            old is not None
            and old.digest != installed.digest
            and not self._digest_used(old.digest, but=key)
        ):
            ops.append((DB, module_key(old.digest), None))
        await self.host.pipeline.submit_meta(ops)
        self._replace(key, installed)
        await self._reattach(key, installed)
        return installed, old is None

    async def set_enabled(self, tenant: str, name: str, enabled: bool) -> Installed:
        installed = self._own(tenant, name)
        installed.enabled = enabled
        await self.host.pipeline.submit_meta([(DB, record_key(tenant, name), installed.record())])
        if enabled:
            self._release(tenant, name)
            await self._reattach((tenant, name), installed)  # held events flow at once
        self._changed()
        return installed

    async def reload(self, tenant: str, name: str) -> Installed:
        """Fresh instances (on_load again) and out of quarantine for ``tenant``; the
        observer resumes from its durable cursor. A folder plugin is not re-read: its
        folder changes with a restart."""
        installed = self.get(tenant, name)
        if installed.tenant == ALL_TENANTS:
            self._release(tenant, name)
        else:
            installed.generation += 1
            self._release(tenant, name)
        await self._reattach((installed.tenant, name), installed)
        return installed

    async def remove(self, tenant: str, name: str) -> None:
        installed = self._own(tenant, name)
        key = (tenant, name)
        ops: list[tuple[str, bytes, bytes | None]] = [(DB, record_key(tenant, name), None)]
        if not self._digest_used(installed.digest, but=key):
            ops.append((DB, module_key(installed.digest), None))
        await self.host.pipeline.submit_meta(ops)
        del self._installed[key]
        await self._reattach(key, None)
        state = self._states.pop(key, None)
        if state is not None and state.tick is not None:
            state.tick.cancel()
        self._changed()

    def _own(self, tenant: str, name: str) -> Installed:
        installed = self.get(tenant, name)
        if installed.tenant != tenant:
            raise Conflict(f"plugin {name} comes from the plugins folder: change it there")
        return installed

    def _digest_used(self, digest: str, *, but: tuple[str, str]) -> bool:
        return any(i.digest == digest for k, i in self._installed.items() if k != but)

    def _replace(self, key: tuple[str, str], installed: Installed) -> None:
        """Swap a definition in between two calls: no call sees half of each."""
        self._installed[key] = installed
        for (tenant, name), state in list(self._states.items()):
            if name == installed.name and installed.serves(tenant):
                state.installed = installed
                state.api.manifest = installed.manifest
                state.quarantined = False
                state.consecutive = 0
                state.recent_faults.clear()
                if state.tick is not None:
                    state.tick.cancel()
                    state.tick = None
        self._changed()

    async def _reattach(self, key: tuple[str, str], installed: Installed | None) -> None:
        """Stop the key's observer and start one for ``installed`` (None: none), one change
        at a time per key: a successor reads its cursors only once the predecessor's last
        ones are durable (else it would start at the head and skip what was queued)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            await self._detach_observer(key)
            if installed is not None and self._started and self._installed.get(key) is installed:
                self._attach(installed)

    def _release(self, tenant: str, name: str) -> None:
        state = self._states.get((tenant, name))
        if state is not None:
            state.quarantined = False
            state.consecutive = 0
            state.recent_faults.clear()
            state.instance = None
            self._schedule_tick(state)

    # -- seams -----------------------------------------------------------------------
    def _changed(self) -> None:
        """Recompute which seams are needed after any install, change or removal."""
        from .seams import PluginInterceptor  # the seams import this module

        self._by_room.clear()
        wanted = [
            i for i in self._installed.values() if i.enabled and "on_message" in i.manifest.hooks
        ]
        chain = self.host.interceptors
        if wanted and self._interceptor is None:
            self._interceptor = PluginInterceptor(self)
            chain.add(self._interceptor)
        elif not wanted and self._interceptor is not None:
            chain.remove(self._interceptor.name)
            self._interceptor = None
        if self._interceptor is not None:
            self._interceptor.kinds = frozenset(k for i in wanted for k in i.manifest.kinds)
        for state in self._states.values():
            self._schedule_tick(state)
        # The epoch ticker (a thread waking every few ms) runs only while plugins exist.
        if self._started and self._installed:
            self.engine.start()
        else:
            self.engine.stop()

    def message_plugins(self, tenant: str, room_name: str, rkey: str) -> list[Installed]:
        """Enabled on_message plugins of a room, in name order (cached until a change)."""
        found = self._by_room.get(rkey)
        if found is None:
            found = [
                i
                for i in sorted(self._installed.values(), key=lambda i: i.name)
                if i.enabled
                and "on_message" in i.manifest.hooks
                and i.serves(tenant)
                and i.manifest.matches(room_name)
            ]
            if len(self._by_room) > 100_000:
                self._by_room.clear()
            self._by_room[rkey] = found
        return found

    def _attach(self, installed: Installed) -> None:
        hooks = installed.manifest.hooks
        if "on_event" not in hooks and "on_command" not in hooks:
            self._ensure_ticks(installed)
            return
        from .seams import PluginObserver

        key = (installed.tenant, installed.name)
        if key in self._observers:
            return
        runner = self.host.add_observer(PluginObserver(self, installed))
        self._observers[key] = runner
        if self.host.observers.started:
            runner.start()
        self._ensure_ticks(installed)

    async def _detach_observer(self, key: tuple[str, str]) -> None:
        runner = self._observers.pop(key, None)
        if runner is not None:
            await self.host.observers.remove(runner.name)

    def _ensure_ticks(self, installed: Installed) -> None:
        if installed.tenant != ALL_TENANTS and "on_tick" in installed.manifest.hooks:
            self.state(installed.tenant, installed)  # ticks start with the state

    # -- states and calls ------------------------------------------------------------
    def state(self, tenant: str, installed: Installed) -> PluginState:
        key = (tenant, installed.name)
        state = self._states.get(key)
        if state is None:
            principal = Principal(
                f"plugin:{installed.name}", tenant, frozenset({"member"}), kind="plugin"
            )
            state = PluginState(
                installed, tenant, PluginHostApi(self.host, tenant, installed.manifest), principal
            )
            self._states[key] = state
            self._schedule_tick(state)
        return state

    def instance(self, state: PluginState) -> PluginInstance:
        """The state's instance, built (and ``on_load`` run) when missing, spent or old."""
        instance = state.instance
        installed = state.installed
        if instance is not None and not instance.spent and state.generation == installed.generation:
            return instance
        state.instance = None
        manifest, limits = installed.manifest, installed.manifest.limits
        files = None
        if "wasi" in manifest.capabilities:
            files_path = self.settings.data_path / "plugin-files" / state.tenant / manifest.name
            files_path.mkdir(parents=True, exist_ok=True)
            files = str(files_path)
        instance = PluginInstance(
            self.engine,
            installed.module,
            manifest,
            state.api,
            fuel=limits.fuel,
            deadline_ms=limits.deadline_ms,
            memory_pages=limits.memory_pages,
            files_dir=files,
        )
        if instance.has("on_load"):
            state.api.begin_call()
            answer = instance.call_json(
                "on_load",
                {"tenant": state.tenant, "plugin": manifest.name, "config": manifest.config},
            )
            if answer is not None and answer.get("error"):
                raise PluginFault("load", f"on_load refused: {str(answer['error'])[:300]}")
            self.submit_posts(state)
        state.instance = instance
        state.generation = installed.generation
        return instance

    def call(self, state: PluginState, hook: str, payload: bytes) -> bytes | None:
        """One hook call with fault accounting; raises PluginFault after counting it."""
        state.api.begin_call()
        try:
            out = self.instance(state).call(hook, payload)
        except PluginFault as fault:
            self.fault(state, fault)
            raise
        except Exception as exc:  # a bug on our side: charged to this plugin, not to all
            log.exception("plugin %s: %s failed in the host", state.installed.name, hook)
            state.instance = None
            host_fault = PluginFault("host", f"{hook}: {exc!r}"[:300])
            self.fault(state, host_fault)
            raise host_fault from None
        state.calls[hook] += 1
        return out  # the caller resets ``consecutive`` once it has checked the answer

    def fault(self, state: PluginState, fault: PluginFault) -> None:
        state.faults[fault.kind] += 1
        state.consecutive += 1
        state.last_error = fault.message
        log.warning(
            "plugin %s (tenant %s) fault %d in a row: %s",
            state.installed.name,
            state.tenant,
            state.consecutive,
            fault,
        )
        # In a row, or often: a plugin that faults every other call never has five in a
        # row, yet could hold the loop for its deadline on every second message.
        now = time.monotonic()
        recent = state.recent_faults
        recent.append(now)
        while recent and now - recent[0] > FAULT_WINDOW_S:
            recent.popleft()
        limit = self.settings.plugin_quarantine_after
        if not state.quarantined and (
            state.consecutive >= limit or len(recent) >= limit * FAULT_WINDOW_FACTOR
        ):
            self._quarantine(state)

    def _quarantine(self, state: PluginState) -> None:
        state.quarantined = True
        self.quarantines += 1
        log.error(
            "plugin %s (tenant %s) quarantined after %d faults in a row: %s",
            state.installed.name,
            state.tenant,
            state.consecutive,
            state.last_error,
        )
        rooms, writes = self.host.rooms, self.host.writes
        room = rooms.find(state.tenant, AUDIT_ROOM)
        if room is None:
            room = rooms.create(
                state.principal,
                AUDIT_ROOM,
                private=True,
                created_by="",
                topic="plugin quarantines and other plugin notices",
            )
            writes.persist_room(room)
        try:
            writes.append(
                _Quiet(state.principal, "the quarantine notice"),
                room,
                "plugin.quarantined",
                {
                    "plugin": state.installed.name,
                    "faults": state.consecutive,
                    "reason": state.last_error[:500],
                },
            )
        except NexusError as exc:
            log.warning("quarantine notice not written: %s", exc.message)

    def submit_posts(self, state: PluginState, default_id: str | None = None) -> None:
        """Post what the last call queued, as the plugin, into its tenant's rooms."""
        posts = state.api.posts
        if not posts:
            return
        state.api.posts = []
        now = time.monotonic()
        state.post_tokens = min(POST_BURST, state.post_tokens + (now - state.post_at) * POST_RATE)
        state.post_at = now
        for n, post in enumerate(posts):
            if state.post_tokens < 1:
                log.warning("plugin %s over its post rate: post dropped", state.installed.name)
                continue
            state.post_tokens -= 1
            room = self.host.rooms.find(state.tenant, post["room"])
            if room is None:
                continue
            cmid = post["client_msg_id"]
            if cmid is None and default_id is not None:
                cmid = f"{default_id}.{n}"[:128]
            caller = _Quiet(state.principal, f"plugin {state.installed.name}'s post")
            try:
                self.host.writes.post(
                    caller,
                    room,
                    MessageSend(None, room.name, post["body"], cmid, None, post["meta"]),
                )
            except NexusError as exc:
                log.warning("plugin %s's post refused: %s", state.installed.name, exc.message)

    # -- ticks -------------------------------------------------------------------------
    def _schedule_tick(self, state: PluginState) -> None:
        installed = state.installed
        want = (
            self._started
            and installed.enabled
            and "on_tick" in installed.manifest.hooks
            and self._installed.get((installed.tenant, installed.name)) is installed
        )
        if not want:
            if state.tick is not None:
                state.tick.cancel()
                state.tick = None
            return
        if state.tick is None:
            loop = asyncio.get_running_loop()
            state.tick = loop.call_later(installed.manifest.tick_seconds, self._tick, state)

    def _tick(self, state: PluginState) -> None:
        state.tick = None
        if not state.quarantined:
            payload = orjson.dumps({"tenant": state.tenant, "now_ms": int(time.time() * 1000)})
            try:
                self.call(state, "on_tick", payload)
            except PluginFault:
                pass
            else:
                state.consecutive = 0
                self.submit_posts(state, f"tick.{int(time.time())}")
        self._schedule_tick(state)

    # -- figures -----------------------------------------------------------------------
    def collect(self) -> Iterator[object]:
        calls = CounterMetricFamily(
            "nexus_plugin_calls", "Plugin hook calls", labels=["tenant", "plugin", "hook"]
        )
        faults = CounterMetricFamily(
            "nexus_plugin_faults",
            "Plugin faults by kind (trap, fuel, deadline, output, json, load, refused)",
            labels=["tenant", "plugin", "kind"],
        )
        denials = CounterMetricFamily(
            "nexus_plugin_denials", "Writes denied by on_message", labels=["tenant", "plugin"]
        )
        quarantined = GaugeMetricFamily(
            "nexus_plugin_quarantined",
            "1 while the plugin is quarantined for the tenant",
            labels=["tenant", "plugin"],
        )
        for (tenant, name), state in sorted(self._states.items()):
            for hook, n in sorted(state.calls.items()):
                calls.add_metric([tenant, name, hook], n)
            for kind, n in sorted(state.faults.items()):
                faults.add_metric([tenant, name, kind], n)
            denials.add_metric([tenant, name], state.denials)
            quarantined.add_metric([tenant, name], int(state.quarantined))
        yield calls
        yield faults
        yield denials
        yield quarantined
        yield GaugeMetricFamily(
            "nexus_plugins_installed", "Plugins installed (all tenants)", value=len(self._installed)
        )
