"""Start a `nexus serve` process for a benchmark run and read its URL line."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

SECRET = "benchmark-secret-0123456789-abcdefghij"


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    data_dir: tempfile.TemporaryDirectory[str]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.data_dir.cleanup()


def start(**settings: object) -> Server:
    data = tempfile.TemporaryDirectory(prefix="nexus-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    env.update(
        {
            "NEXUS_AUTH_SECRET": SECRET,
            "NEXUS_LOG_LEVEL": "warning",
            "NEXUS_PRINT_DEV_TOKEN": "false",
            "NEXUS_HTTP_PORT": "0",
        }
    )
    env.update({f"NEXUS_{k.upper()}": str(v) for k, v in settings.items()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus", "serve", "--port", "0", "--data-dir", data.name],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("nexus listening on "):
            return Server(proc, line.split()[-1], data)
    raise RuntimeError("server did not start")
