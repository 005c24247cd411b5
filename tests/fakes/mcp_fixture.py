"""The example MCP server (examples/mcp/fixture_server.py, built with the official SDK)
as the tests run it: over stdio as a command, or over Streamable HTTP as a process on a
loopback port that a test can kill and start again on the same port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[2] / "examples" / "mcp" / "fixture_server.py"
START_TIMEOUT_S = 20.0


def stdio_table(**fields: Any) -> dict[str, Any]:
    """An ``mcp_servers`` table running the fixture over stdio."""
    return {"transport": "stdio", "command": sys.executable, "args": [str(FIXTURE)], **fields}


class HttpFixture:
    """``with HttpFixture(header="Authorization=Bearer x") as http``: ``http.url``,
    ``kill()`` (SIGKILL), ``start()`` again on the same port."""

    def __init__(self, header: str | None = None) -> None:
        self.header = header
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        args = [sys.executable, str(FIXTURE), "--http", "--port", str(self.port)]
        if self.header:
            args += ["--require-header", self.header]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the URL line, printed once the port is bound
        if not line.startswith("mcp fixture on "):
            self.proc.kill()
            raise RuntimeError(f"the MCP fixture did not start: {line!r}")
        self.url = line.split(" on ", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> HttpFixture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipe()
