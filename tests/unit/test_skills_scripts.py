"""Skill scripts in the plugins' Wasm sandbox: a module fitting the script ABI runs on its
JSON input; one that loops is stopped by its fuel; modules that do not fit are refused at
install with the script named."""

from __future__ import annotations

import orjson
import pytest
import wasmtime

from nexus.config import Settings
from nexus.errors import BadRequest
from nexus.extensions.plugins.instance import PluginFault
from nexus.extensions.skills.scripts import SkillScripts

ECHO = """(module
  (memory (export "memory") 1)
  (func (export "nexus_input") (param i32) (result i32) (i32.const 1024))
  (func (export "run") (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $n)))))"""
LOOP = """(module
  (memory (export "memory") 1)
  (func (export "nexus_input") (param i32) (result i32) (i32.const 1024))
  (func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0)))"""
NO_RUN = """(module
  (memory (export "memory") 1)
  (func (export "nexus_input") (param i32) (result i32) (i32.const 1024)))"""
POSTS = """(module
  (import "nexus" "post" (func (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "nexus_input") (param i32) (result i32) (i32.const 1024))
  (func (export "run") (param i32 i32) (result i64) (i64.const 0)))"""
TRAPS_AT_START = """(module
  (memory (export "memory") 1)
  (func $boom unreachable)
  (start $boom)
  (func (export "nexus_input") (param i32) (result i32) (i32.const 1024))
  (func (export "run") (param i32 i32) (result i64) (i64.const 0)))"""


def wasm(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


@pytest.fixture
def scripts() -> SkillScripts:
    return SkillScripts(Settings().replace(plugin_fuel_max=2_000_000))


async def test_a_script_runs_on_its_input(scripts: SkillScripts) -> None:
    module = wasm(ECHO)
    scripts.check("scripts/echo.wasm", module)
    payload = orjson.dumps({"skill": "s", "input": {"text": "hi"}})
    assert await scripts.run(module, payload) == payload
    assert scripts.runs == 1


async def test_a_looping_script_runs_out_of_fuel(scripts: SkillScripts) -> None:
    with pytest.raises(PluginFault) as fault:
        await scripts.run(wasm(LOOP), b"{}")
    assert fault.value.kind in ("fuel", "deadline")


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (b"#!/bin/sh\necho hi", "scripts/x.wasm: not a valid WebAssembly module"),
        (wasm(NO_RUN), "scripts/x.wasm: module does not export function run"),
        (wasm(POSTS), "scripts/x.wasm: module imports nexus.post, which needs capability"),
        (wasm(TRAPS_AT_START), "scripts/x.wasm: the script cannot start"),
    ],
)
def test_modules_that_do_not_fit_are_refused(
    scripts: SkillScripts, module: bytes, message: str
) -> None:
    with pytest.raises(BadRequest) as err:
        scripts.check("scripts/x.wasm", module)
    assert err.value.message.startswith(message), err.value.message
