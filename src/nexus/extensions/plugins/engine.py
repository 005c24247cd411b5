"""One wasmtime Engine for every plugin: fuel and epoch interruption on, an epoch ticker
thread, and modules compiled once (cached on disk, keyed by digest and engine version).

The epoch advances every ``TICK_S`` on a daemon thread, so a call's wall-clock deadline
is ``ceil(deadline / TICK_S)`` ticks from its start (re-armed before every call: a
deadline, once passed, stays passed). Fuel bounds the instructions of one call.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import wasmtime

from ...errors import BadRequest

log = logging.getLogger(__name__)

TICK_S = 0.005  # epoch period: deadlines are honoured to within this (a wake-up costs the GIL)
CACHE_VERSION = "1"  # bump when the Config below changes


def _engine_config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.cranelift_opt_level = "speed"
    return config


class PluginEngine:
    def __init__(self, cache_dir: Path | None) -> None:
        self.engine = wasmtime.Engine(_engine_config())
        self._cache_dir = cache_dir
        self._modules: dict[str, wasmtime.Module] = {}
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.compiled = 0  # modules compiled (not found in the cache)

    # -- epochs ------------------------------------------------------------------------
    def start(self) -> None:
        if self._ticker is None:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, name="nexus-wasm-epoch", daemon=True)
            self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(1.0)
            self._ticker = None

    def _tick(self) -> None:
        increment = self.engine.increment_epoch
        wait = self._stop.wait
        while not wait(TICK_S):
            increment()

    @staticmethod
    def ticks(deadline_ms: float) -> int:
        return max(1, int(deadline_ms / 1000 / TICK_S + 0.999))

    # -- modules -----------------------------------------------------------------------
    def module(self, wasm: bytes, digest: str | None = None) -> wasmtime.Module:
        """The compiled module of ``wasm`` (memory, then disk cache, then compile)."""
        digest = digest or "sha256:" + hashlib.sha256(wasm).hexdigest()
        module = self._modules.get(digest)
        if module is not None:
            return module
        path = self._cached_path(digest)
        if path is not None and path.exists():
            try:
                module = wasmtime.Module.deserialize_file(self.engine, str(path))
            except wasmtime.WasmtimeError as exc:
                log.warning("plugin cache %s unusable (%s): compiling again", path.name, exc)
                module = None
        if module is None:
            try:
                module = wasmtime.Module(self.engine, wasm)
            except wasmtime.WasmtimeError as exc:
                raise BadRequest(f"not a valid WebAssembly module: {_first_line(exc)}") from None
            self.compiled += 1
            if path is not None:
                self._store_cached(path, module)
        self._modules[digest] = module
        return module

    def _cached_path(self, digest: str) -> Path | None:
        if self._cache_dir is None:
            return None
        key = f"{digest}-{wasmtime_version()}-{CACHE_VERSION}"
        return self._cache_dir / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".cwasm")

    def _store_cached(self, path: Path, module: wasmtime.Module) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(module.serialize())
            os.replace(tmp, path)  # readers never see half a file
        except OSError as exc:
            log.warning("plugin cache not written (%s): modules compile at each start", exc)


def wasmtime_version() -> str:
    from importlib.metadata import version

    return version("wasmtime")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
