"""Run what the image runs, the way the chart runs it: the wheel installed alone in a clean
venv, the Dockerfile's ENV and ENTRYPOINT (tini as PID 1 of its own PID namespace) and the
default chart's env, ConfigMap and Secrets laid out as files, as the image's non-root user.
Then the probes, the HEALTHCHECK, the NOTES' token and connection, and the two ways a pod
stops: SIGTERM alone (docker stop) and the chart's preStop hook followed by SIGTERM.

Deviations from a pod, each one needed on a shared test machine: the listeners bind
127.0.0.1 on ports the kernel picks (the server prints them), and the files sit under a
temporary root instead of /etc/nexus and /var/lib/nexus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets

from .chart import Helm
from .dockerfile import parse
from .image import image_venv
from .pod import Pod, materialize, server_environ
from .tools import cache_root
from .value_sets import HMAC

RUNTIME = parse().stage("runtime")
UID, GID = (int(x) for x in RUNTIME.last("USER").split(":"))
TINI = RUNTIME.exec_form("ENTRYPOINT")[0]
START_TIMEOUT = 60.0
# The first run builds the wheels and the venv (about 1.5 min on 2 cores, more under load).
pytestmark = pytest.mark.timeout(900)


def as_image_user(*cmd: str | Path) -> list[str]:
    return [
        "setpriv",
        f"--reuid={UID}",
        f"--regid={GID}",
        "--clear-groups",
        "--no-new-privs",
        "--",
        *map(str, cmd),
    ]


@pytest.fixture(scope="module")
def venv() -> Path:
    # switching to the image's user, chown and namespaces need root (as CI and these
    # machines run): fail loudly rather than test less
    assert os.geteuid() == 0, "tests/deploy/test_image_run.py must run as root"
    for tool in (TINI, "unshare", "nsenter", "setpriv"):
        assert shutil.which(tool), f"{tool} is required (Debian: tini, util-linux)"
    return image_venv()


@pytest.fixture
def pod(helm: Helm) -> Iterator[Pod]:
    docs = helm.template({"auth": {"hmacSecret": HMAC}})
    root = Path(tempfile.mkdtemp(prefix="pod-", dir=cache_root()))
    try:
        root.chmod(0o755)
        pod = materialize(docs, RUNTIME.env(), root)
        for path, volume in pod.mounts.items():
            where = root / path.lstrip("/")
            if "projected" in volume:  # Secret files: root-owned, readable by fsGroup only
                for item in [where, *where.rglob("*")]:
                    os.chown(item, 0, GID)
                    item.chmod(0o550 if item.is_dir() else 0o440)
            elif "configMap" not in volume:  # data and tmp: writable, owned via fsGroup
                os.chown(where, UID, GID)
        yield pod
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Container:
    proc: subprocess.Popen[str]
    lines: queue.Queue[str]
    output: list[str]
    ws_port: int
    http_port: int
    init_pid: int  # tini, PID 1 in the container's namespace

    def port(self, name: str) -> int:
        return {"ws": self.ws_port, "http": self.http_port}[name]

    def get(self, port: str, path: str) -> tuple[int, dict[str, object]]:
        url = f"http://127.0.0.1:{self.port(port)}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


def _start(venv: Path, pod: Pod) -> Container:
    env = server_environ(
        pod,
        PATH=f"{venv / 'bin'}:/usr/bin:/bin",
        NEXUS_HOST="127.0.0.1",
        NEXUS_HTTP_HOST="127.0.0.1",
        NEXUS_PORT="0",
        NEXUS_HTTP_PORT="0",
    )
    command = [*RUNTIME.exec_form("ENTRYPOINT"), *pod.container["args"]]
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", "--", *as_image_user(*command)],
        cwd=pod.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    ports: dict[str, int] = {}
    deadline = time.monotonic() + START_TIMEOUT
    while len(ports) < 2:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            raise AssertionError("no start lines:\n" + "".join(output)) from None
        if m := re.match(r"nexus listening on ws://[\d.]+:(\d+)/ws", line):
            ports["ws"] = int(m.group(1))
        elif m := re.match(r"nexus http api on http://[\d.]+:(\d+)", line):
            ports["http"] = int(m.group(1))
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    (init_pid,) = map(int, children)
    assert Path(f"/proc/{init_pid}/exe").resolve() == Path(TINI).resolve()
    status = Path(f"/proc/{init_pid}/status").read_text()
    assert re.search(rf"^Uid:\s+{UID}\s+{UID}\s+{UID}\s+{UID}$", status, re.M), status
    assert re.search(r"^NSpid:\s+\d+\s+1$", status, re.M), status  # PID 1 in its namespace
    return Container(proc, lines, output, ports["ws"], ports["http"], init_pid)


@pytest.fixture
def container(venv: Path, pod: Pod) -> Iterator[Container]:
    running = _start(venv, pod)
    yield running
    if running.proc.poll() is None:
        # tini first: PID 1 of the container's namespace takes everything in it along.
        # (Killing unshare alone leaves it running: --kill-child's parent-death signal
        # does not survive the switch to the image's user.)
        with contextlib.suppress(ProcessLookupError):
            os.kill(running.init_pid, signal.SIGKILL)
        running.proc.kill()
        running.proc.wait()


def _probe(c: Container, pod: Pod, name: str) -> int:
    get = pod.container[name]["httpGet"]
    return c.get(get["port"], get["path"])[0]


def _wait(c: Container, pod: Pod, probe: str, status: int) -> None:
    deadline = time.monotonic() + 10
    while _probe(c, pod, probe) != status:
        assert time.monotonic() < deadline, f"{probe} never answered {status}"
        time.sleep(0.02)


def _token(venv: Path, pod: Pod) -> str:
    """The NOTES' way: `nexus token` inside the pod, with the pod's configuration."""
    done = subprocess.run(
        as_image_user(
            venv / "bin/nexus",
            "token",
            "--user",
            "alice",
            "--tenant",
            "acme",
            "--roles",
            "admin,member",
        ),
        env=server_environ(pod, PATH=f"{venv / 'bin'}:/usr/bin:/bin"),
        cwd=pod.root,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


async def _connect(c: Container, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(f"ws://127.0.0.1:{c.ws_port}/ws", open_timeout=10)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert reply["type"] == "auth.ok", reply
    return ws


def test_probes_healthcheck_and_a_client(venv: Path, pod: Pod, container: Container) -> None:
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        _wait(container, pod, probe, 200)
    assert container.get("http", "/readyz")[1] == {"status": "ready", "checks": ["store"]}
    # the image's HEALTHCHECK command, as the image user, with the container's environment
    _, command = RUNTIME.healthcheck()
    env = server_environ(pod, PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    env["NEXUS_HTTP_PORT"] = str(container.http_port)
    subprocess.run(as_image_user(*command), env=env, timeout=10, check=True)
    env["NEXUS_HTTP_PORT"] = "1"
    assert subprocess.run(as_image_user(*command), env=env, timeout=10, check=False).returncode

    async def talk() -> None:
        ws = await _connect(container, _token(venv, pod))
        await ws.close()

    asyncio.run(talk())
    # the server made no secret of its own: the key came from the Secret file
    data = pod.root / pod.env["NEXUS_DATA_DIR"].removeprefix(str(pod.root)).lstrip("/")
    assert not list(data.glob("*secret*")), list(data.iterdir())
    owners = {p.stat().st_uid for p in data.rglob("*")}
    assert owners == {UID}, owners


def _stopped(c: Container, started: float) -> float:
    assert c.proc.wait(30) == 0, "".join(c.output)
    assert "nexus stopped\n" in c.output
    return time.monotonic() - started


def test_sigterm_drains_then_exits_0(pod: Pod, container: Container) -> None:
    """docker stop / a plain SIGTERM: readiness fails for drain_delay, then a clean exit."""
    drain = float(pod.env["NEXUS_DRAIN_DELAY"])
    _wait(container, pod, "readinessProbe", 200)
    started = time.monotonic()
    os.kill(container.init_pid, signal.SIGTERM)  # to tini, which forwards it
    _wait(container, pod, "readinessProbe", 503)
    assert container.get("http", "/readyz")[1] == {"status": "draining"}
    assert _probe(container, pod, "livenessProbe") == 200
    elapsed = _stopped(container, started)
    assert drain <= elapsed < drain + 10


def test_prestop_hook_then_sigterm(venv: Path, pod: Pod, container: Container) -> None:
    """A rollout: the chart's preStop command runs in the container (starts the drain and
    waits drain_delay while clients are still served), then SIGTERM closes at once."""
    drain = float(pod.env["NEXUS_DRAIN_DELAY"])
    _wait(container, pod, "readinessProbe", 200)
    token = _token(venv, pod)

    prestop = pod.container["lifecycle"]["preStop"]["exec"]["command"]
    # run inside the container's PID namespace, as its user: there `kill ... 1` is tini
    in_container = ["nsenter", f"--target={container.init_pid}", "--pid", "--"]

    async def rollout() -> None:
        ws = await _connect(container, token)
        hook = await asyncio.create_subprocess_exec(*in_container, *as_image_user(*prestop))
        started = time.monotonic()
        await asyncio.to_thread(_wait, container, pod, "readinessProbe", 503)
        assert _probe(container, pod, "livenessProbe") == 200
        await ws.send(json.dumps({"type": "ping", "id": "p1"}))  # still served while draining
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["id"] == "p1"
        with pytest.raises(websockets.InvalidStatus, match="503"):
            await websockets.connect(f"ws://127.0.0.1:{container.ws_port}/ws", open_timeout=10)
        assert await asyncio.wait_for(hook.wait(), drain + 10) == 0
        assert time.monotonic() - started >= drain
        sigterm = time.monotonic()
        os.kill(container.init_pid, signal.SIGTERM)
        await ws.wait_closed()
        assert ws.close_code == 1001
        # the drain delay already passed in the hook: SIGTERM does not wait it again
        assert await asyncio.to_thread(_stopped, container, sigterm) < drain

    asyncio.run(rollout())
