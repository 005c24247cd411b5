"""A trivial interceptor and observer on every room, to measure what the seams cost:
`nexus-hooks` runs Nexus (no fsync) with `extensions = benchmarks.trivial_hooks:install`.
Each write is intercepted (ALLOW) and every committed entry is handed to an observer that
does nothing, with its cursor written back through the group commit like any observer."""

from __future__ import annotations

from collections.abc import Sequence

from nexus.core.extension_host import ExtensionHost
from nexus.core.hooks import ALLOW, CommittedEntry, PendingWrite, Verdict
from nexus.core.rooms import Room


class AllowAll:
    name = "allow-all"
    kinds = None
    deadline = 1.0
    failure_policy = "open"

    def wants(self, room: Room) -> bool:
        return True

    def intercept(self, write: PendingWrite) -> Verdict:
        return ALLOW


class Nothing:
    name = "nothing"
    start_at = "end"
    timeout = 10.0

    def wants(self, room_key: str) -> bool:
        return True

    async def observe(self, entries: Sequence[CommittedEntry]) -> None:
        return None

    def trimmed(self, room_key: str, first_seq: int) -> None:
        return None


def install(host: ExtensionHost) -> None:
    host.add_interceptor(AllowAll())
    host.add_observer(Nothing())
