"""`python -m benchmarks.plugin_calls [--calls N]`: what one call into a Wasm plugin costs
from Python, by call path (docs/plugins.md, "Cost").

A trivial module (``on_message`` answering nothing) is called with a 150-byte JSON input:

- ``Func.__call__``: wasmtime's high-level call (looks the function type up, converts each
  argument and result to and from ``Val``);
- ``unchecked``: ``wasmtime_func_call_unchecked`` with a cached raw argument array, fuel
  and deadline re-armed (what ``PluginInstance`` does, without the input copy);
- ``PluginInstance.call``: the whole call as the runtime makes it: re-arm, copy the input
  into guest memory, call, read the answer;
- ``redactor``: the example redactor (C) on a clean 64-byte body, through
  ``PluginInstance.call`` (its fast path answers nothing).

µs per call are wall-clock medians of 5 runs: compare them within one run.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime
from wasmtime import _bindings as raw

from nexus.extensions.plugins.engine import PluginEngine
from nexus.extensions.plugins.instance import PluginInstance
from nexus.extensions.plugins.manifest import parse_manifest

from .targets import TRIVIAL_WAT

PAYLOAD = (
    b'{"tenant":"acme","room":"general","kind":"message","sender":"u1",'
    b'"sender_kind":"human","body":"' + b"x" * 64 + b'","meta":null}'
)


def _per_call(fn: Callable[[], None], calls: int) -> float:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(runs)


def _instance(engine: PluginEngine, wasm: bytes, config: dict[str, object]) -> PluginInstance:
    manifest = parse_manifest(
        {"name": "b", "version": "1", "hooks": ["on_message"], "config": config}
    )
    inst = PluginInstance(
        engine,
        engine.module(wasm),
        manifest,
        None,  # type: ignore[arg-type]
        fuel=5_000_000,
        deadline_ms=20,
        memory_pages=16,
    )
    if inst.has("on_load"):
        inst.call_json("on_load", {"tenant": "acme", "plugin": "b", "config": config})
    return inst


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plugin_calls", description=__doc__)
    p.add_argument("--calls", type=int, default=20_000)
    args = p.parse_args()
    engine = PluginEngine(None)
    engine.start()
    wasm = bytes(wasmtime.wat2wasm(TRIVIAL_WAT))
    inst = _instance(engine, wasm, {})
    store = inst._store
    func = inst._funcs["on_message"]
    rows: list[tuple[str, float]] = []
    store.set_fuel(10**15)  # the high-level path measured without any re-arm
    store.set_epoch_deadline(10**9)
    rows.append(("Func.__call__", _per_call(lambda: func(store, 1024, len(PAYLOAD)), args.calls)))
    ctx, ref = store._context(), ctypes.byref(func._func)
    argv = (raw.wasmtime_val_raw_t * 2)()
    trap = ctypes.POINTER(raw.wasm_trap_t)()
    trap_ref = ctypes.byref(trap)

    def unchecked() -> None:
        raw._wasmtime_context_set_fuel(ctx, 5_000_000)
        raw._wasmtime_context_set_epoch_deadline(ctx, 4)
        argv[0].i32 = 1024
        argv[1].i32 = len(PAYLOAD)
        raw._wasmtime_func_call_unchecked(ctx, ref, argv, 2, trap_ref)

    rows.append(("unchecked (re-armed)", _per_call(unchecked, args.calls)))
    rows.append(
        ("PluginInstance.call", _per_call(lambda: inst.call("on_message", PAYLOAD), args.calls))
    )
    build = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "build.py"
    if build.exists():
        spec = importlib.util.spec_from_file_location("nexus_plugin_examples", build)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out = module.build(Path(tempfile.mkdtemp()), ["redactor"])["redactor"]
        red = _instance(engine, (out / "redactor.wasm").read_bytes(), {"words": ["darn"]})
        rows.append(
            (
                "redactor (clean body)",
                _per_call(lambda: red.call("on_message", PAYLOAD), args.calls),
            )
        )
    engine.stop()
    width = max(len(name) for name, _ in rows)
    print(f"{'call path':<{width}}  us/call")
    for name, us in rows:
        print(f"{name:<{width}}  {us:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
