"""Skill scripts: WebAssembly modules under a skill's ``scripts/`` folder, run in the
plugins' sandbox (``extensions.plugins``: the same engine configuration, fuel, epoch
deadline and memory cap per call) and nothing else: a script cannot be Python, shell or
a binary.

A script is a plugin with one hook and no capabilities: it exports ``memory``,
``nexus_input(len) -> ptr`` and ``run(ptr, len) -> i64`` (``out_ptr << 32 | out_len``),
the plugins' bytes ABI (docs/plugins.md). It imports no ``nexus.*`` host function (WASI
imports link, with no files, environment, arguments or stdio): JSON in, bytes out, no
side effects. Every run gets a fresh instance, so runs share no state. Limits are the
server's plugin maxima: ``plugin_fuel_max``, ``plugin_deadline_ms_max``,
``plugin_memory_pages_max``. Runs go to a worker thread, so the loop never waits on one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...config import Settings
from ...errors import BadRequest
from ..plugins.engine import PluginEngine
from ..plugins.instance import PluginFault, PluginInstance, check_module
from ..plugins.manifest import Manifest

HOOK = "run"
SUFFIX = ".wasm"
# The plugin manifest's hooks are the plugin hooks: a script's one hook is its own, so the
# manifest is built without validation (it never leaves this module).
MANIFEST = Manifest.model_construct(
    name="skill-script", version="1", hooks=(HOOK,), capabilities=()
)


class NoHost:
    """The host API of a script: it has no capabilities, so none of these is linked."""

    def log(self, level: int, text: str) -> None:
        return None

    def post(self, request: dict[str, Any]) -> int:
        return -2

    def history(self, request: dict[str, Any]) -> bytes | int:
        return -2

    def kv_get(self, key: bytes) -> bytes | None:
        return None

    def kv_set(self, key: bytes, value: bytes) -> int:
        return -2

    def kv_delete(self, key: bytes) -> int:
        return -2


class SkillScripts:
    def __init__(self, settings: Settings) -> None:
        self.engine = PluginEngine(None)  # its own epoch ticker, running only during runs
        self.fuel = settings.plugin_fuel_max
        self.deadline_ms = settings.plugin_deadline_ms_max
        self.memory_pages = settings.plugin_memory_pages_max
        self._running = 0
        self.runs = 0

    def check(self, path: str, wasm: bytes) -> None:
        """Refuse, naming ``path``, a script that is not a module fitting the script ABI or
        that cannot start (its start function runs once, under the limits)."""
        try:
            module = self.engine.module(wasm)
            check_module(module, MANIFEST, frozenset())
            self._instance(wasm)
        except BadRequest as exc:
            raise BadRequest(f"{path}: {exc.message}") from None
        except PluginFault as fault:
            raise BadRequest(f"{path}: the script cannot start: {fault.message}") from None

    def _instance(self, wasm: bytes) -> PluginInstance:
        return PluginInstance(
            self.engine,
            self.engine.module(wasm),
            MANIFEST,
            NoHost(),
            fuel=self.fuel,
            deadline_ms=self.deadline_ms,
            memory_pages=self.memory_pages,
        )

    def _call(self, wasm: bytes, payload: bytes) -> bytes | None:
        return self._instance(wasm).call(HOOK, payload)

    async def run(self, wasm: bytes, payload: bytes) -> bytes | None:
        """Run a script once on ``payload``: its output, None for none; PluginFault when
        it traps, runs out of fuel or time, or answers badly."""
        self._running += 1
        self.engine.start()  # deadlines advance only while the ticker runs
        try:
            self.runs += 1
            return await asyncio.to_thread(self._call, wasm, payload)
        finally:
            self._running -= 1
            if not self._running:
                self.engine.stop()

    def stop(self) -> None:
        self.engine.stop()
