"""One plugin instance on real wasmtime, modules written in WAT here: the call path, each
limit (fuel, deadline, memory, output size), traps, the install-time import and export
checks, host functions through their capabilities, and the manifest's schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from nexus.errors import BadRequest
from nexus.extensions.plugins.engine import PluginEngine
from nexus.extensions.plugins.instance import PluginFault, PluginInstance, check_module
from nexus.extensions.plugins.manifest import Manifest, manifest_schema, parse_manifest

PRELUDE = """
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "nexus_input") (param i32) (result i32) (i32.const 1024))
  (func (export "nexus_alloc") (param $n i32) (result i32)
    (local $p i32) (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n))) (local.get $p))
  (func $out (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $n))))
"""


def wat(body: str, imports: str = "") -> bytes:
    return bytes(wasmtime.wat2wasm(f"(module {imports} {PRELUDE} {body})"))


def manifest(**fields: Any) -> Manifest:
    base: dict[str, Any] = {"name": "t", "version": "1", "hooks": ["on_message"]}
    base.update(fields)
    return parse_manifest(base)


class FakeHost:
    def __init__(self) -> None:
        self.logs: list[tuple[int, str]] = []
        self.posts: list[dict[str, Any]] = []
        self.kv: dict[bytes, bytes] = {}

    def log(self, level: int, text: str) -> None:
        self.logs.append((level, text))

    def post(self, request: dict[str, Any]) -> int:
        self.posts.append(request)
        return 0

    def history(self, request: dict[str, Any]) -> bytes | int:
        return b'{"events":[]}'

    def kv_get(self, key: bytes) -> bytes | None:
        return self.kv.get(key)

    def kv_set(self, key: bytes, value: bytes) -> int:
        self.kv[key] = value
        return 0

    def kv_delete(self, key: bytes) -> int:
        self.kv.pop(key, None)
        return 0


@pytest.fixture(scope="module")
def engine() -> PluginEngine:
    e = PluginEngine(None)
    e.start()
    yield e
    e.stop()


def instance(
    engine: PluginEngine, module: bytes, m: Manifest, host: FakeHost | None = None
) -> PluginInstance:
    compiled = engine.module(module)
    check_module(compiled, m, frozenset({"log", "kv", "post", "history"}))
    limits = m.limits
    return PluginInstance(
        engine,
        compiled,
        m,
        host or FakeHost(),  # type: ignore[arg-type]
        fuel=limits.fuel,
        deadline_ms=limits.deadline_ms,
        memory_pages=limits.memory_pages,
    )


ECHO = """(func (export "on_message") (param $p i32) (param $n i32) (result i64)
  (call $out (local.get $p) (local.get $n)))"""


def test_a_call_returns_the_guest_output_and_nothing_for_zero(engine: PluginEngine) -> None:
    inst = instance(engine, wat(ECHO), manifest())
    assert inst.call("on_message", b'{"a":1}') == b'{"a":1}'
    big = b'{"x":"' + b"y" * 10_000 + b'"}'  # past the first input buffer: it grows
    assert inst.call("on_message", big) == big
    zero = instance(
        engine,
        wat('(func (export "on_message") (param i32 i32) (result i64) (i64.const 0))'),
        manifest(),
    )
    assert zero.call("on_message", b"{}") is None
    assert inst.calls == 2


@pytest.mark.parametrize(
    ("body", "limits", "kind"),
    [
        (  # an endless loop: stopped by the epoch deadline when fuel is plentiful
            "(loop $l (br $l)) (i64.const 0)",
            {"fuel": 10_000_000_000, "deadline_ms": 30},
            "deadline",
        ),
        ("(loop $l (br $l)) (i64.const 0)", {"fuel": 100_000, "deadline_ms": 5000}, "fuel"),
        ("unreachable", {}, "trap"),
        (  # an output that claims 64 MiB
            "(call $out (i32.const 0) (i32.const 67108864))",
            {},
            "output",
        ),
        ("(call $out (i32.const 65000) (i32.const 1000))", {}, "output"),  # past memory
    ],
)
def test_each_limit_holds(
    engine: PluginEngine, body: str, limits: dict[str, Any], kind: str
) -> None:
    module = wat(f'(func (export "on_message") (param i32 i32) (result i64) {body})')
    inst = instance(engine, module, manifest(limits=limits))
    with pytest.raises(PluginFault) as caught:
        inst.call("on_message", b"{}")
    assert caught.value.kind == kind


def test_a_memory_bomb_is_capped_and_the_guest_sees_it_fail(engine: PluginEngine) -> None:
    # Grows a page at a time until memory.grow says -1, answers how many pages it got.
    body = """(func (export "on_message") (param i32 i32) (result i64)
      (local $n i32)
      (block $done (loop $more
        (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $more)))
      (i32.store (i32.const 8) (i32.add (local.get $n) (i32.const 48)))
      (call $out (i32.const 8) (i32.const 1)))"""
    inst = instance(engine, wat(body), manifest(limits={"memory_pages": 4}))
    # 1 page at start, 3 more allowed: the byte is "3"
    assert inst.call("on_message", b"{}") == b"3"


def test_after_a_trap_the_instance_is_spent(engine: PluginEngine) -> None:
    inst = instance(
        engine,
        wat('(func (export "on_message") (param i32 i32) (result i64) unreachable)'),
        manifest(),
    )
    with pytest.raises(PluginFault):
        inst.call("on_message", b"{}")
    assert inst.spent
    with pytest.raises(PluginFault) as caught:
        inst.call("on_message", b"{}")
    assert caught.value.kind == "abi"


def test_a_deadline_is_rearmed_for_every_call(engine: PluginEngine) -> None:
    # Each call spins ~half its deadline: without the re-arm the second would be stopped.
    body = """(func (export "on_message") (param i32 i32) (result i64)
      (local $i i32)
      (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 200000))))
      (i64.const 0))"""
    inst = instance(engine, wat(body), manifest(limits={"deadline_ms": 200}))
    for _ in range(20):
        assert inst.call("on_message", b"{}") is None


@pytest.mark.parametrize(
    ("imports", "caps", "problem"),
    [
        ('(import "nexus" "post" (func (param i32 i32) (result i32)))', [], "capability 'post'"),
        ('(import "nexus" "launch" (func))', [], "no such host function"),
        ('(import "env" "abort" (func))', [], "only nexus.* host functions"),
        (
            '(import "nexus" "post" (func (param i32) (result i32)))',
            ["post"],
            "wrong signature",
        ),
    ],
)
def test_imports_are_checked_against_the_capabilities(
    engine: PluginEngine, imports: str, caps: list[str], problem: str
) -> None:
    module = engine.module(wat(ECHO, imports))
    with pytest.raises(BadRequest, match=problem):
        check_module(module, manifest(capabilities=caps), frozenset({"log", "kv", "post"}))


def test_a_capability_the_server_does_not_allow_is_refused(engine: PluginEngine) -> None:
    module = engine.module(wat(ECHO, '(import "nexus" "post" (func (param i32 i32) (result i32)))'))
    with pytest.raises(BadRequest, match="does not allow"):
        check_module(module, manifest(capabilities=["post"]), frozenset({"log"}))


def test_exports_are_checked(engine: PluginEngine) -> None:
    no_hook = engine.module(
        wasmtime.wat2wasm(
            '(module (memory (export "memory") 1)'
            ' (func (export "nexus_input") (param i32) (result i32) (i32.const 0)))'
        )
    )
    with pytest.raises(BadRequest, match="does not export function on_message"):
        check_module(no_hook, manifest(), frozenset())
    wrong = engine.module(
        wat('(func (export "on_message") (param i32) (result i64) (i64.const 0))')
    )
    with pytest.raises(BadRequest, match="wrong signature"):
        check_module(wrong, manifest(), frozenset())
    with pytest.raises(BadRequest, match="not a valid WebAssembly module"):
        engine.module(b"\x00asm garbage")


def test_host_functions_reach_the_host(engine: PluginEngine) -> None:
    imports = """
      (import "nexus" "log" (func $log (param i32 i32 i32)))
      (import "nexus" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
      (import "nexus" "kv_get" (func $kv_get (param i32 i32) (result i64)))
      (import "nexus" "post" (func $post (param i32 i32) (result i32)))"""
    body = """
      (data (i32.const 100) "hello")
      (data (i32.const 200) "k")
      (data (i32.const 300) "{\\"room\\":\\"general\\",\\"body\\":\\"hi\\"}")
      (func (export "on_message") (param i32 i32) (result i64)
        (call $log (i32.const 1) (i32.const 100) (i32.const 5))
        (drop (call $kv_set (i32.const 200) (i32.const 1) (i32.const 100) (i32.const 5)))
        (drop (call $post (i32.const 300) (i32.const 30)))
        (call $kv_get (i32.const 200) (i32.const 1)))"""
    host = FakeHost()
    inst = instance(engine, wat(body, imports), manifest(capabilities=["log", "kv", "post"]), host)
    assert inst.call("on_message", b"{}") == b"hello"  # kv_get's answer, via nexus_alloc
    assert host.logs == [(1, "hello")]
    assert host.kv == {b"k": b"hello"}
    assert host.posts == [{"room": "general", "body": "hi"}]


def test_manifest_errors_name_the_field() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_manifest({"name": "Bad Name", "version": "1", "hooks": ["on_mesage"], "limit": {}})
    text = caught.value.message
    assert "name:" in text and "hooks.0" in text and "limit: Extra inputs" in text
    with pytest.raises(BadRequest, match="on_command needs at least one entry in commands"):
        parse_manifest({"name": "p", "version": "1", "hooks": ["on_command"]})
    with pytest.raises(BadRequest, match="not valid TOML"):
        parse_manifest("name = ", toml=True)
    toml = 'name = "p"\nversion = "1"\nhooks = ["on_tick"]\n[limits]\nfuel = 2000\n'
    assert parse_manifest(toml, toml=True).limits.fuel == 2000


def test_the_shipped_schema_is_the_models() -> None:
    shipped = Path(__file__).resolve().parents[2] / "src/nexus/extensions/plugins"
    on_disk = json.loads((shipped / "manifest.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest_schema())), (
        "regenerate manifest.schema.json from the model (docs/plugins.md)"
    )
