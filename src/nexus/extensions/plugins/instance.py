"""One running plugin: a wasmtime Store, its instance, and the cheap call path into it.

A call re-arms the store's fuel and epoch deadline, copies the JSON input into the
guest's input buffer, calls the hook through ``wasmtime_func_call_unchecked`` with a
cached argument array (the high-level ``Func.__call__`` re-reads the function type and
converts every value: ~40 µs a call here against ~3 µs; docs/plugins.md has the
figures), and copies the output out. Anything that goes wrong is a ``PluginFault``; after
a trap the instance is marked spent and the runtime builds a fresh one (a trap may leave
the guest's memory half-updated).

ABI (docs/plugins.md): exports ``memory``, ``nexus_input(len) -> ptr`` (asked only when
the input buffer must grow: it stays the input area for later calls), ``nexus_alloc(len)
-> ptr`` (host-function answers within a call), hooks ``(ptr, len) -> i64`` returning
``out_ptr << 32 | out_len`` (0: no output). Host functions are imported from ``nexus``.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any, Protocol

import orjson
import wasmtime
from wasmtime import _bindings as raw  # the unchecked call path (no public binding)
from wasmtime._ffi import dll as _wasmtime_dll

from ...errors import BadRequest
from .engine import PluginEngine
from .manifest import Manifest

log = logging.getLogger(__name__)

INPUT_MIN = 4096
OUTPUT_MAX = 1 << 20  # bytes a hook may answer
HOST_IN_MAX = 256 * 1024  # bytes a host-function argument may span
LOG_MAX = 1024
KEY_MAX = 256
VALUE_MAX = 64 * 1024
WASI = "wasi_snapshot_preview1"

I32 = wasmtime.ValType.i32()
I64 = wasmtime.ValType.i64()
HOOK_TYPE = ((I32, I32), (I64,))

# Host functions: name -> (capability, params, results).
HOST_FUNCTIONS: dict[
    str, tuple[str, tuple[wasmtime.ValType, ...], tuple[wasmtime.ValType, ...]]
] = {
    "log": ("log", (I32, I32, I32), ()),
    "post": ("post", (I32, I32), (I32,)),
    "history": ("history", (I32, I32), (I64,)),
    "kv_get": ("kv", (I32, I32), (I64,)),
    "kv_set": ("kv", (I32, I32, I32, I32), (I32,)),
    "kv_delete": ("kv", (I32, I32), (I32,)),
}
# Host-function error answers (negative results).
E_INPUT, E_DENIED, E_QUOTA, E_ALLOC = -1, -2, -3, -4


class PluginFault(Exception):
    """A call that did not produce a usable answer. ``kind``: trap, fuel, deadline,
    output, json, abi."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class HostApi(Protocol):
    """What the host functions do for one (tenant, plugin); the runtime implements it."""

    def log(self, level: int, text: str) -> None: ...
    def post(self, request: dict[str, Any]) -> int: ...
    def history(self, request: dict[str, Any]) -> bytes | int: ...
    def kv_get(self, key: bytes) -> bytes | None: ...
    def kv_set(self, key: bytes, value: bytes) -> int: ...
    def kv_delete(self, key: bytes) -> int: ...


def check_module(module: wasmtime.Module, manifest: Manifest, granted: frozenset[str]) -> None:
    """Refuse, with the reason, a module whose imports or exports do not fit its manifest."""
    for imp in module.imports:
        where = f"{imp.module}.{imp.name}"
        if imp.module == "nexus":
            spec = HOST_FUNCTIONS.get(imp.name or "")
            if spec is None:
                raise BadRequest(f"module imports {where}: no such host function")
            if spec[0] not in manifest.capabilities:
                raise BadRequest(
                    f"module imports {where}, which needs capability {spec[0]!r}:"
                    " the manifest does not declare it"
                )
            if spec[0] not in granted:
                raise BadRequest(
                    f"module imports {where}, which needs capability {spec[0]!r}:"
                    " this server does not allow it (plugins_capabilities)"
                )
            ty = imp.type
            if not isinstance(ty, wasmtime.FuncType) or (
                tuple(map(str, ty.params)),
                tuple(map(str, ty.results)),
            ) != (tuple(map(str, spec[1])), tuple(map(str, spec[2]))):
                raise BadRequest(f"module imports {where} with the wrong signature")
        elif imp.module != WASI:
            raise BadRequest(
                f"module imports {where}: only nexus.* host functions and {WASI} are provided"
            )
    exports = {e.name: e.type for e in module.exports}
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        raise BadRequest("module does not export its memory as 'memory'")
    _need_func(exports, "nexus_input", ((I32,), (I32,)))
    if {"kv", "history"} & set(manifest.capabilities):
        _need_func(exports, "nexus_alloc", ((I32,), (I32,)))
    for hook in manifest.hooks:
        _need_func(exports, hook, HOOK_TYPE)
    if "on_load" in exports:
        _need_func(exports, "on_load", HOOK_TYPE)


def _need_func(
    exports: dict[str, Any], name: str, sig: tuple[tuple[Any, ...], tuple[Any, ...]]
) -> None:
    ty = exports.get(name)
    want = (tuple(map(str, sig[0])), tuple(map(str, sig[1])))
    if not isinstance(ty, wasmtime.FuncType):
        raise BadRequest(f"module does not export function {name}")
    if (tuple(map(str, ty.params)), tuple(map(str, ty.results))) != want:
        raise BadRequest(
            f"module exports {name} with the wrong signature (want {want[0]} -> {want[1]})"
        )


class PluginInstance:
    """A module instantiated in its own Store with the manifest's limits."""

    def __init__(
        self,
        engine: PluginEngine,
        module: wasmtime.Module,
        manifest: Manifest,
        host: HostApi,
        *,
        fuel: int,
        deadline_ms: float,
        memory_pages: int,
        files_dir: str | None = None,
    ) -> None:
        self.manifest = manifest
        self._host = host
        self._fuel = fuel
        self._ticks = engine.ticks(deadline_ms)
        self.spent = False  # trapped: the runtime replaces it before the next call
        store = self._store = wasmtime.Store(engine.engine)
        store.set_limits(memory_size=memory_pages * 65536, instances=1, tables=4, memories=1)
        wasi = wasmtime.WasiConfig()  # nothing inherited: no files, env, args or stdio
        if files_dir is not None:
            wasi.preopen_dir(files_dir, "/data")
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine.engine)
        linker.define_wasi()
        for name, (capability, params, results) in HOST_FUNCTIONS.items():
            if capability in manifest.capabilities:
                linker.define_func(
                    "nexus",
                    name,
                    wasmtime.FuncType(list(params), list(results)),
                    getattr(self, f"_host_{name}"),
                    access_caller=True,
                )
        self._arm()
        try:
            instance = linker.instantiate(store, module)
        except wasmtime.Trap as exc:
            raise PluginFault("trap", f"at start: {_trap_text(exc)}") from None
        except wasmtime.WasmtimeError as exc:
            raise PluginFault("abi", f"cannot instantiate: {_text(exc)}") from None
        exports = instance.exports(store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self._memory = memory
        self._funcs: dict[str, wasmtime.Func] = {}
        for name in ("nexus_input", "nexus_alloc", "on_load", *manifest.hooks):
            func = exports.get(name)
            if isinstance(func, wasmtime.Func):
                self._funcs[name] = func
        self._ctx = store._context()
        self._mem_ref = ctypes.byref(memory._memory)
        self._length = _memory_size(self._ctx, self._mem_ref)
        self._base = _memory_base(self._ctx, self._mem_ref) or 0
        self._func_refs = {name: ctypes.byref(f._func) for name, f in self._funcs.items()}
        self._args = (raw.wasmtime_val_raw_t * 2)()
        self._trap = ctypes.POINTER(raw.wasm_trap_t)()
        self._trap_ref = ctypes.byref(self._trap)
        self._input_ptr = 0
        self._input_cap = 0
        self.calls = 0

    def has(self, hook: str) -> bool:
        return hook in self._funcs

    # -- the call path ---------------------------------------------------------------
    def _arm(self) -> None:
        store = self._store
        store.set_fuel(self._fuel)
        store.set_epoch_deadline(self._ticks)

    def call(self, hook: str, payload: bytes) -> bytes | None:
        """Run ``hook`` on ``payload``; its output bytes, or None when it answered nothing."""
        if self.spent:
            raise PluginFault("abi", "instance is spent after an earlier trap")
        size = len(payload)
        if size > self._input_cap:
            self._grow_input(size)
        ptr = self._input_ptr
        if ptr + size > self._length:  # memory is as the last call left it
            self.spent = True
            raise PluginFault("abi", "input buffer lies outside memory")
        ctypes.memmove(self._base + ptr, payload, size)
        args = self._args
        args[0].i32 = ptr
        args[1].i32 = size
        result = self._invoke(hook, args)
        self.calls += 1
        if result == 0:
            return None
        out_ptr = (result >> 32) & 0xFFFFFFFF
        out_len = result & 0xFFFFFFFF
        if out_len == 0:
            return None
        if out_len > OUTPUT_MAX:
            raise PluginFault("output", f"{hook} answered {out_len} bytes (limit {OUTPUT_MAX})")
        if out_ptr + out_len > self._length:
            raise PluginFault("output", f"{hook} answered bytes outside its memory")
        return ctypes.string_at(self._base + out_ptr, out_len)

    def call_json(self, hook: str, payload: Any) -> dict[str, Any] | None:
        out = self.call(hook, orjson.dumps(payload))
        if out is None:
            return None
        try:
            answer = orjson.loads(out)
        except orjson.JSONDecodeError:
            raise PluginFault("json", f"{hook} answered bytes that are not JSON") from None
        if not isinstance(answer, dict):
            raise PluginFault("json", f"{hook} answered JSON that is not an object")
        return answer

    def _invoke(self, name: str, args: Any) -> int:
        ctx = self._ctx
        # Fuel and deadline re-armed before every call (a passed deadline stays passed).
        if _set_fuel(ctx, self._fuel):  # an error only when fuel is not enabled
            raise PluginFault("abi", "fuel could not be set")
        _set_deadline(ctx, self._ticks)
        trap = self._trap
        error = raw._wasmtime_func_call_unchecked(
            self._ctx, self._func_refs[name], args, 2, self._trap_ref
        )
        if error:
            self.spent = True
            raise PluginFault("abi", _text(wasmtime.WasmtimeError._from_ptr(error)))
        if trap:
            caught = wasmtime.Trap._from_ptr(trap)
            self._trap = ctypes.POINTER(raw.wasm_trap_t)()
            self._trap_ref = ctypes.byref(self._trap)
            self.spent = True
            raise _fault_of(caught, name)
        # Memory only changes inside a call: look once after it. It never shrinks, and
        # its base moves only when it grows.
        length = _memory_size(ctx, self._mem_ref)
        if length != self._length:
            self._length = length
            self._base = _memory_base(ctx, self._mem_ref) or 0
        return int(args[0].i64)

    def _grow_input(self, size: int) -> None:
        cap = max(INPUT_MIN, 1 << (size - 1).bit_length())
        args = self._args
        args[0].i32 = cap
        ptr = self._invoke("nexus_input", args) & 0xFFFFFFFF
        if ptr == 0:
            raise PluginFault("abi", f"nexus_input({cap}) returned 0")
        self._input_ptr, self._input_cap = ptr, cap

    # -- host functions (called from inside a hook) ------------------------------------
    def _read(self, caller: wasmtime.Caller, ptr: int, size: int, limit: int) -> bytes | None:
        if size < 0 or size > limit or ptr < 0:
            return None
        length = self._memory.data_len(caller)
        if ptr + size > length:
            return None
        address = ctypes.cast(self._memory.data_ptr(caller), ctypes.c_void_p).value or 0
        return ctypes.string_at(address + ptr, size)

    def _give(self, caller: wasmtime.Caller, data: bytes) -> int:
        """Copy ``data`` into memory from the guest's nexus_alloc: ``ptr << 32 | len``."""
        alloc = self._funcs.get("nexus_alloc")
        if alloc is None:
            return E_ALLOC
        ptr = int(alloc(caller, len(data))) & 0xFFFFFFFF
        if ptr == 0 or ptr + len(data) > self._memory.data_len(caller):
            return E_ALLOC
        address = ctypes.cast(self._memory.data_ptr(caller), ctypes.c_void_p).value or 0
        ctypes.memmove(address + ptr, data, len(data))
        return (ptr << 32) | len(data)

    def _json_arg(self, caller: wasmtime.Caller, ptr: int, size: int) -> dict[str, Any] | None:
        data = self._read(caller, ptr, size, HOST_IN_MAX)
        if data is None:
            return None
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def _host_log(self, caller: wasmtime.Caller, level: int, ptr: int, size: int) -> None:
        data = self._read(caller, ptr, min(size, LOG_MAX), LOG_MAX)
        if data is not None:
            self._host.log(level, data.decode("utf-8", "replace"))

    def _host_post(self, caller: wasmtime.Caller, ptr: int, size: int) -> int:
        request = self._json_arg(caller, ptr, size)
        return E_INPUT if request is None else self._host.post(request)

    def _host_history(self, caller: wasmtime.Caller, ptr: int, size: int) -> int:
        request = self._json_arg(caller, ptr, size)
        if request is None:
            return E_INPUT
        answer = self._host.history(request)
        return answer if isinstance(answer, int) else self._give(caller, answer)

    def _host_kv_get(self, caller: wasmtime.Caller, ptr: int, size: int) -> int:
        key = self._read(caller, ptr, size, KEY_MAX)
        if not key:
            return E_INPUT
        value = self._host.kv_get(key)
        return -1 if value is None else self._give(caller, value)

    def _host_kv_set(
        self, caller: wasmtime.Caller, kptr: int, klen: int, vptr: int, vlen: int
    ) -> int:
        key = self._read(caller, kptr, klen, KEY_MAX)
        value = self._read(caller, vptr, vlen, VALUE_MAX)
        if not key or value is None:
            return E_INPUT
        return self._host.kv_set(key, value)

    def _host_kv_delete(self, caller: wasmtime.Caller, ptr: int, size: int) -> int:
        key = self._read(caller, ptr, size, KEY_MAX)
        return E_INPUT if not key else self._host.kv_delete(key)


# Prototypes of our own for the small calls made around every hook call: they return
# plain integers (no pointer object to cast) and, as PYFUNCTYPE, keep the GIL (wasmtime's
# bindings let it go and take it back on each call, a hand-over to any busy thread). Only
# the hook call itself lets the GIL go: the epoch thread must be able to run to stop it.
_VOID = ctypes.c_void_p
_set_fuel = ctypes.PYFUNCTYPE(_VOID, _VOID, ctypes.c_uint64)(
    ("wasmtime_context_set_fuel", _wasmtime_dll)
)
_set_deadline = ctypes.PYFUNCTYPE(None, _VOID, ctypes.c_uint64)(
    ("wasmtime_context_set_epoch_deadline", _wasmtime_dll)
)
_memory_base = ctypes.PYFUNCTYPE(_VOID, _VOID, _VOID)(("wasmtime_memory_data", _wasmtime_dll))
_memory_size = ctypes.PYFUNCTYPE(ctypes.c_size_t, _VOID, _VOID)(
    ("wasmtime_memory_data_size", _wasmtime_dll)
)


def _fault_of(trap: wasmtime.Trap, hook: str) -> PluginFault:
    code = trap.trap_code
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return PluginFault("fuel", f"{hook} ran out of fuel")
    if code == wasmtime.TrapCode.INTERRUPT:
        return PluginFault("deadline", f"{hook} ran past its deadline")
    return PluginFault("trap", f"{hook} trapped: {_trap_text(trap)}")


def _trap_text(trap: wasmtime.Trap) -> str:
    code = trap.trap_code
    lines = [line.strip() for line in trap.message.strip().splitlines() if line.strip()]
    detail = next((line for line in lines if not line.startswith("error while executing")), "")
    name = code.name.lower().replace("_", " ") if code is not None else "trap"
    return f"{name} ({detail[:200]})" if detail else name


def _text(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
