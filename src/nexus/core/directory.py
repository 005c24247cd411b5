"""The tenant's user directory: who has connected, with which kind and roles, and when."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from ..auth import Principal
from ..store.keys import user_key

SEEN_INTERVAL_MS = 60_000  # a user's entry is rewritten at most this often
SEEN_CACHE = 100_000


class UserSource(Protocol):
    def user(self, tenant: str, user_id: str) -> dict[str, Any] | None: ...


MetaWriter = Callable[[list[tuple[str, bytes, bytes | None]]], "asyncio.Future[None]"]


def _ignore_result(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # a failure was already logged by the pipeline


class UserDirectory:
    def __init__(
        self, source: UserSource, write_meta: MetaWriter, clock: Callable[[], float] = time.time
    ) -> None:
        self._source = source
        self._write_meta = write_meta
        self._clock = clock
        self._seen: dict[tuple[str, str], int] = {}

    def note(self, principal: Principal) -> None:
        """Keep the directory current (best effort: written with the next commit)."""
        now = int(self._clock() * 1000)
        key = (principal.tenant, principal.user_id)
        last = self._seen.get(key)
        if last is not None and now - last < SEEN_INTERVAL_MS:
            return
        if len(self._seen) > SEEN_CACHE:
            self._seen.clear()
        self._seen[key] = now
        record = self._source.user(principal.tenant, principal.user_id) or {"first_seen": now}
        record.update(
            user_id=principal.user_id,
            kind=principal.kind,
            roles=sorted(principal.roles),
            last_seen=now,
        )
        done = self._write_meta(
            [("user", user_key(principal.tenant, principal.user_id), orjson.dumps(record))]
        )
        done.add_done_callback(_ignore_result)
