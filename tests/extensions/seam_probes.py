"""Small real extensions that exercise the two seams from inside a real server.

Loaded with ``NEXUS_EXTENSIONS=seam_probes:install`` (``tests/extensions`` on PYTHONPATH):
- ``Recorder`` (observer): appends ``room_key seq kind`` for rooms named ``recorded*`` to
  the file named by ``SEAM_RECORD_FILE``, fsynced before it returns, so what it was handed
  survives a kill -9 of the server; ``SEAM_RECORD_DELAY`` seconds per batch make it slow.
- ``Flaky`` (observer): fails on rooms named ``flaky*`` until ``SEAM_FLAKY_FIXED`` names
  an existing file; meanwhile the recorder and the fan-out are unaffected.
- ``Censor`` (interceptor, fail-open) on rooms ``guarded*``: denies "forbidden", replaces
  "darn", raises on "boom", overruns its deadline on "slow", else annotates meta.
- ``Remote`` (asynchronous interceptor, fail-closed) on rooms ``remote*``: answers after
  ``SEAM_REMOTE_DELAY`` seconds (default 0.3); denies bodies starting with "no".
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence

from nexus.core.extension_host import ExtensionHost
from nexus.core.hooks import ALLOW, Annotate, CommittedEntry, Deny, PendingWrite, Replace, Verdict
from nexus.core.rooms import Room


class Recorder:
    name = "recorder"
    start_at = "beginning"
    timeout = 5.0

    def __init__(self, path: str, delay: float) -> None:
        self._path = path
        self._delay = delay  # a slow observer: what it was handed at a crash lags behind

    def wants(self, room_key: str) -> bool:
        return room_key.split("\x1f", 1)[1].startswith("recorded")

    async def observe(self, entries: Sequence[CommittedEntry]) -> None:
        if self._delay:
            await asyncio.sleep(self._delay)
        lines = "".join(f"{e.room_key}\t{e.seq}\t{e.kind}\n" for e in entries)
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def trimmed(self, room_key: str, first_seq: int) -> None:
        with open(self._path, "a") as fh:
            fh.write(f"{room_key}\t{first_seq}\ttrimmed\n")


class Flaky:
    name = "flaky"
    start_at = "end"
    timeout = 1.0

    def __init__(self, fixed_marker: str) -> None:
        self._fixed = fixed_marker
        self.seen: list[int] = []

    def wants(self, room_key: str) -> bool:
        return room_key.split("\x1f", 1)[1].startswith("flaky")

    async def observe(self, entries: Sequence[CommittedEntry]) -> None:
        if not os.path.exists(self._fixed):  # noqa: ASYNC240 - one stat, in a test probe
            raise RuntimeError("flaky observer is down")

    def trimmed(self, room_key: str, first_seq: int) -> None:
        pass


class Censor:
    name = "censor"
    kinds = frozenset({"message", "message.edited"})
    deadline = 0.2
    failure_policy = "open"

    def wants(self, room: Room) -> bool:
        return room.name.startswith("guarded")

    def intercept(self, write: PendingWrite) -> Verdict:
        body = write.body or ""
        if "forbidden" in body:
            return Deny("contains a forbidden word")
        if "boom" in body:
            raise RuntimeError("censor crashed")
        if "slow" in body:
            time.sleep(0.3)  # over the deadline on purpose: a fault, fail-open
            return ALLOW
        if "darn" in body:
            return Replace(body=body.replace("darn", "d**n"))
        if "huge" in body:
            return Replace(body="x" * 100_000)  # unstorable: a fault, not a write
        return Annotate({"checked_by": "censor"})


class Remote:
    name = "remote"
    kinds = frozenset({"message"})
    deadline = 2.0
    failure_policy = "closed"

    def __init__(self, delay: float) -> None:
        self._delay = delay

    def wants(self, room: Room) -> bool:
        return room.name.startswith("remote")

    async def intercept(self, write: PendingWrite) -> Verdict:
        await asyncio.sleep(self._delay)  # a remote moderation service's answer time
        if (write.body or "").startswith("no"):
            return Deny("refused by the remote check")
        return Annotate({"remote": "ok"})


def install(host: ExtensionHost) -> None:
    host.add_observer(
        Recorder(os.environ["SEAM_RECORD_FILE"], float(os.environ.get("SEAM_RECORD_DELAY", "0")))
    )
    host.add_observer(Flaky(os.environ.get("SEAM_FLAKY_FIXED", "/nonexistent")))
    host.add_interceptor(Censor())
    host.add_interceptor(Remote(float(os.environ.get("SEAM_REMOTE_DELAY", "0.3"))))  # type: ignore[arg-type]
