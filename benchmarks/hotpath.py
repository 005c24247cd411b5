"""`python -m benchmarks.hotpath [--rounds N] [--callgrind]`: the per-message cost of the
server's own code, without sockets, in a way that can be repeated exactly.

An in-process server (real LMDB file, `store_durability = "none"`, rate limits raised)
gets `message.send` frames through `Connection.on_ws_frame` (picows test frames, fake
transports), 16 connections each alone in its room, 8 frames per connection per loop
iteration; every message is decoded, sequenced, committed, fanned out and acknowledged.

It prints µs of CPU per message (`time.process_time`, noisy on a shared machine) and, with
`--callgrind`, **instructions per message**: the difference of two runs under
`valgrind --tool=callgrind` (50 and 150 rounds of 128 messages), so start-up cancels out.
Instruction counts repeat to about 0.5 % whatever else the machine does; they are what
docs/decisions/0007-hot-path-levers.md quotes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from nexus.app import build
from nexus.auth import Principal
from nexus.config import load_settings
from nexus.gateway.connection import Connection

CONNS = 16
PER_TICK = 8
WARM_ROUNDS = 200
RAISED = "1000000000"


class _Raw:
    """The socket transport under picows: takes writes, answers the few questions asked."""

    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _WsTransport:
    is_close_frame_sent = False

    def __init__(self) -> None:
        self.underlying_transport = _Raw()


async def _run(rounds: int, plugin: bool = False) -> tuple[float, int]:
    data = tempfile.mkdtemp(prefix="nexus-hotpath-")
    extra: dict[str, str] = {}
    if plugin:  # the trivial on_message plugin on every room (benchmarks/targets.py)
        import wasmtime

        from .targets import TRIVIAL_WAT

        folder = Path(data) / "plugins" / "trivial"
        folder.mkdir(parents=True)
        (folder / "trivial.wasm").write_bytes(bytes(wasmtime.wat2wasm(TRIVIAL_WAT)))
        manifest = '{"name": "trivial", "version": "1", "hooks": ["on_message"]}'
        (folder / "manifest.json").write_text(manifest)
        extra["plugins_dir"] = str(folder.parent)
    try:
        settings = load_settings(
            environ={},
            overrides={
                "data_dir": data,
                "store_durability": "none",
                "auth_secret": "hotpath-secret-0123456789-0123456789",
                "print_dev_token": "false",
                "store_map_size": str(1 << 30),  # valgrind cannot map 64 GiB
                "rate_conn_per_s": RAISED,
                "rate_conn_burst": RAISED,
                "rate_user_per_s": RAISED,
                "rate_user_burst": RAISED,
                **extra,
            },
        )
        app = build(settings, asyncio.get_running_loop())
        ctx = app.gateway.context
        conns = []
        for i in range(CONNS):
            who = Principal(f"u{i}", "bench", frozenset({"member"}), expires_at=1e12)
            conn, transport = Connection(ctx, who), _WsTransport()
            conn.on_ws_connected(transport)  # type: ignore[arg-type]
            join = b'{"type":"room.join","room":"echo-%d"}' % i
            conn.on_ws_frame(transport, _make_test_ws_frame(WSMsgType.TEXT, join, True, False))  # type: ignore[arg-type]
            conns.append((conn, transport))
        await asyncio.sleep(0.05)
        frames = [
            _make_test_ws_frame(
                WSMsgType.TEXT,
                b'{"type":"message.send","room":"echo-%d","body":"%s"}' % (i, b"x" * 64),
                True,
                False,
            )
            for i in range(CONNS)
        ]
        gc.collect()
        gc.freeze()
        elapsed, sent = 0.0, 0
        for count in (WARM_ROUNDS, rounds):
            started, sent = time.process_time(), 0
            for _ in range(count):
                for (conn, transport), frame in zip(conns, frames, strict=True):
                    for _ in range(PER_TICK):
                        conn.on_ws_frame(transport, frame)  # type: ignore[arg-type]
                        sent += 1
                await asyncio.sleep(0)  # the commit batch
                await asyncio.sleep(0)  # the flush
            elapsed = time.process_time() - started
        return elapsed, sent
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _instructions(rounds: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.hotpath",
            "--rounds",
            str(rounds),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    match = re.search(r"refs:\s+([\d,]+)", out.stderr)
    if match is None:
        raise RuntimeError(out.stderr[-2000:])
    return int(match.group(1).replace(",", ""))


def main() -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.hotpath",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument(
        "--plugin", action="store_true", help="with the trivial Wasm plugin on every room"
    )
    p.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions per message under valgrind (a few minutes)",
    )
    args = p.parse_args()
    if args.callgrind:
        if shutil.which("valgrind") is None:
            print("valgrind not found (Debian package valgrind)", file=sys.stderr)
            return 2
        low, high = _instructions(50), _instructions(150)
        per = (high - low) / (100 * CONNS * PER_TICK)
        print(f"{per:,.0f} instructions per message (callgrind, 2 runs)")
        return 0
    elapsed, sent = uvloop.run(_run(args.rounds, args.plugin))
    print(f"{elapsed / sent * 1e6:.2f} us of CPU per message over {sent:,} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
