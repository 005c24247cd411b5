"""The search file rebuilt from the room logs (``nexus reindex``), with the server stopped.

Every room's log is applied from its first stored entry, as the indexer would have, and
the indexer's cursors are set to each room's head, so the next start resumes from there.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...store import LmdbStore, WriteBatch
from ..observers import cursor_key, cursor_value
from .indexer import OBSERVER_NAME
from .store import SearchStore

PAGE = 1024


def rebuild(log: LmdbStore, index: SearchStore, *, memory: bool = False) -> dict[str, Any]:
    """Clear the message index (and, with ``memory``, the memory records) and apply every
    room log again. Memory events are applied either way (idempotently): without
    ``memory`` the records stay as they were, and those whose events are in the log are
    checked against them. Returns counts."""
    index.clear(memory=memory)
    rooms = entries = 0
    cursors: list[tuple[str, bytes, bytes | None]] = []
    for rkey in log.room_keys():
        head = log.last_seq(rkey)
        after = 0
        while after < head:
            records, last = log.read_page(rkey, after, head, PAGE)
            if not records:
                break
            index.apply((rkey, int(orjson.loads(r)["seq"]), r) for r in records)
            entries += len(records)
            after = last
        rooms += 1
        if head:
            cursors.append(("cursor", cursor_key(OBSERVER_NAME, rkey), cursor_value(head)))
    log.apply(WriteBatch(meta=cursors))
    return {"rooms": rooms, "entries": entries}
