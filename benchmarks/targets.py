"""The servers under test, each started by the suite, and how to speak to each one."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nexus.auth import mint_token

from .server import SECRET

HERE = Path(__file__).parent
NODE_CACHE = Path(os.environ.get("NEXUS_BENCH_CACHE", Path.home() / ".cache" / "nexus-bench"))
MESSAGE_PREFIX = b'{"type":"message"'
JOINED_PREFIX = b'{"type":"joined"'


class Unavailable(Exception):
    """The target cannot run on this machine (e.g. no npm); the reason is shown."""


@dataclass
class Running:
    proc: subprocess.Popen[str]
    port: int
    tmp: tempfile.TemporaryDirectory[str] | None = None
    http_port: int = 0  # Nexus' HTTP API (/metrics); 0 for the peers

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.tmp is not None:
            self.tmp.cleanup()


def _wait_port(proc: subprocess.Popen[str], marker: str) -> int:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(marker):
            return int(line.split()[-1].rsplit(":", 1)[-1].split("/")[0])
    raise RuntimeError(f"{proc.args} exited before listening")


@dataclass
class Target:
    name: str
    path: str = "/"
    prefix: bytes = MESSAGE_PREFIX
    # The answer to a join: the generator waits for one per member before measuring.
    joined_prefix: bytes = JOINED_PREFIX
    settings: dict[str, str] = field(default_factory=dict)

    def start(self) -> Running:
        raise NotImplementedError

    def headers(self, user: int) -> dict[str, str]:
        return {}

    def join(self, room: str) -> bytes:
        return b'{"type":"join","room":"%s"}' % room.encode()

    def send(self, room: str, body: bytes) -> bytes:
        return b'{"type":"send","room":"%s","body":"%s"}' % (room.encode(), body)


# Benchmarks measure capacity, not the per-client abuse limits.
RAISED_RATE_LIMITS = {
    "rate_conn_per_s": "1e9",
    "rate_conn_burst": "1000000000",
    "rate_user_per_s": "1e9",
    "rate_user_burst": "1000000000",
}
CAPACITY_SETTINGS = {
    **RAISED_RATE_LIMITS,
    "outbound_limit_bytes": str(64 << 20),
    "max_rooms_per_connection": "100000",
}


@dataclass
class Nexus(Target):
    path: str = "/ws"
    joined_prefix: bytes = b'{"type":"room.joined"'
    # False: the server's own defaults (plus ``settings``), e.g. for abuse measurements.
    capacity_limits: bool = True

    def start(self) -> Running:
        tmp = tempfile.TemporaryDirectory(prefix="nexus-bench-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
        env.update(
            {
                "NEXUS_AUTH_SECRET": SECRET,
                "NEXUS_LOG_LEVEL": "warning",
                "NEXUS_PRINT_DEV_TOKEN": "false",
                "NEXUS_HTTP_PORT": "0",
            }
        )
        settings = {**CAPACITY_SETTINGS, **self.settings} if self.capacity_limits else self.settings
        env.update({f"NEXUS_{k.upper()}": v for k, v in settings.items()})
        proc = subprocess.Popen(
            [sys.executable, "-m", "nexus", "serve", "--port", "0", "--data-dir", tmp.name],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        port = _wait_port(proc, "nexus listening on")
        return Running(proc, port, tmp, http_port=_wait_port(proc, "nexus http api on"))

    def headers(self, user: int, ttl: float = 3600.0) -> dict[str, str]:
        tok = mint_token(SECRET, user=f"u{user}", tenant="bench", roles=["member"], ttl=ttl)
        return {"Authorization": f"Bearer {tok}"}

    def join(self, room: str) -> bytes:
        return b'{"type":"room.join","room":"%s"}' % room.encode()

    def send(self, room: str, body: bytes) -> bytes:
        return b'{"type":"message.send","room":"%s","body":"%s"}' % (room.encode(), body)


TRIVIAL_WAT = """(module (memory (export "memory") 1)
  (func (export "nexus_input") (param i32) (result i32) (i32.const 1024))
  (func (export "on_message") (param i32 i32) (result i64) (i64.const 0))
  (func (export "on_event") (param i32 i32) (result i64) (i64.const 0)))"""


@dataclass
class NexusPlugin(Nexus):
    """``nexus-nosync`` with one Wasm plugin on every room, installed from a plugins
    folder: ``trivial`` (on_message answering nothing, or on_event doing nothing) or the
    example ``redactor`` (built from its C source by examples/plugins/build.py)."""

    plugin: str = "trivial"
    hook: str = "on_message"

    def start(self) -> Running:
        folder = Path(tempfile.mkdtemp(prefix="nexus-bench-plugins-"))
        sub = folder / self.plugin
        sub.mkdir()
        manifest: dict[str, object]
        if self.plugin == "trivial":
            import wasmtime

            (sub / "trivial.wasm").write_bytes(bytes(wasmtime.wat2wasm(TRIVIAL_WAT)))
            manifest = {"name": "trivial", "version": "1", "hooks": [self.hook]}
        else:
            built = _example(self.plugin)
            for item in built.iterdir():
                shutil.copy(item, sub / item.name)
            manifest = json.loads((sub / "manifest.json").read_text())
            manifest.pop("digest", None)
            manifest["config"] = {"words": ["darn", "heck", "idiot"]}
        (sub / "manifest.json").write_text(json.dumps(manifest))
        self.settings = {**self.settings, "plugins_dir": str(folder)}
        return super().start()


def _example(name: str) -> Path:
    """An example plugin built from source (cached for the run)."""
    spec = importlib.util.spec_from_file_location(
        "nexus_plugin_examples", HERE.parent / "examples" / "plugins" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = NODE_CACHE / "plugins"
    built: dict[str, Path] = module.build(out, [name], log=None)
    return built[name]


@dataclass
class PythonPeer(Target):
    module: str = ""
    args: tuple[str, ...] = ()

    def start(self) -> Running:
        proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "0", *self.args],
            stdout=subprocess.PIPE,
            text=True,
            cwd=HERE.parent,
        )
        return Running(proc, _wait_port(proc, "listening"))


@dataclass
class NodeWs(Target):
    def start(self) -> Running:
        npm, node = shutil.which("npm"), shutil.which("node")
        if npm is None or node is None:
            raise Unavailable("node/npm not found: install Node.js to compare with ws")
        app = NODE_CACHE / "node_ws"
        if not (app / "node_modules" / "ws").is_dir():
            app.mkdir(parents=True, exist_ok=True)
            shutil.copy(HERE / "peers" / "node_ws" / "package.json", app / "package.json")
            result = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--silent"],
                cwd=app,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise Unavailable(f"npm install ws failed: {result.stderr.strip()[:200]}")
        shutil.copy(HERE / "peers" / "node_ws" / "server.js", app / "server.js")
        proc = subprocess.Popen(
            [node, str(app / "server.js"), "0"], stdout=subprocess.PIPE, text=True
        )
        return Running(proc, _wait_port(proc, "listening"))


def all_targets() -> list[Target]:
    return [
        Nexus("nexus"),
        # The same server without fsync per commit: the gateway's own cost, comparable
        # with peers that store nothing.
        Nexus("nexus-nosync", settings={"store_durability": "none"}),
        # nexus-nosync with a trivial interceptor and observer on every room: the seams' cost.
        Nexus(
            "nexus-hooks",
            settings={"store_durability": "none", "extensions": "benchmarks.trivial_hooks:install"},
        ),
        # nexus-nosync with one Wasm plugin on every room (docs/plugins.md): its cost.
        NexusPlugin("nexus-plugin-trivial", settings={"store_durability": "none"}),
        NexusPlugin(
            "nexus-plugin-redactor", settings={"store_durability": "none"}, plugin="redactor"
        ),
        NexusPlugin("nexus-plugin-events", settings={"store_durability": "none"}, hook="on_event"),
        # Three picows + uvloop room servers (orjson, the peers' protocol), differing only in
        # how a broadcast reaches the members: picows' send per member; frames collected
        # per member and written once per tick in pure Python (no nexus code: the baseline
        # of the targets); Nexus' Cython frame-once outbox and router.
        PythonPeer("picows-naive", module="benchmarks.peers.picows_naive"),
        PythonPeer("picows-coalesced", module="benchmarks.peers.picows_coalesced"),
        PythonPeer("picows-nexus-outbox", module="benchmarks.peers.picows_nexus_outbox"),
        PythonPeer("websockets", module="benchmarks.peers.websockets_room", args=("uvloop",)),
        # The same server on the stock asyncio loop, as many users run it.
        PythonPeer(
            "websockets-asyncio", module="benchmarks.peers.websockets_room", args=("asyncio",)
        ),
        PythonPeer("aiohttp", module="benchmarks.peers.aiohttp_room"),
        NodeWs("node-ws"),
    ]
