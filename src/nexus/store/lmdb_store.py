"""The embedded LMDB store: room log, message index, idempotency index, rooms.

Reads run on the event loop thread (LMDB reads are memory-mapped and do not
block on locks). Writes run only through ``apply`` on the writer thread, one
transaction per batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import orjson

from .keys import client_key, log_key, log_prefix, seq_of

log = logging.getLogger(__name__)


class StoreFull(Exception):
    """The LMDB map is full: nothing of the batch was written."""


@dataclass(slots=True)
class WriteBatch:
    """Everything one commit writes. Built on the loop, applied on the writer thread."""

    rooms: list[tuple[str, bytes]] = field(default_factory=list)  # (room key, meta json)
    # (room key, seq, message id, record json, client key or None)
    messages: list[tuple[str, int, str, bytes, bytes | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rooms) + len(self.messages)


@dataclass(frozen=True, slots=True)
class ClientMessageRef:
    room_key: str
    seq: int
    message_id: str


class LmdbStore:
    def __init__(self, path: Path, *, map_size: int, sync: bool = True) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.env = lmdb.open(
            str(path), map_size=map_size, max_dbs=8, subdir=True,
            sync=sync, metasync=sync, readahead=False, max_readers=256, lock=True,
        )
        self.log_db = self.env.open_db(b"log")
        self.msg_db = self.env.open_db(b"msg")
        self.client_db = self.env.open_db(b"client")
        self.room_db = self.env.open_db(b"room")

    def close(self) -> None:
        self.env.close()

    # -- writes (writer thread only) -----------------------------------------
    def apply(self, batch: WriteBatch) -> None:
        """Write the batch in one transaction and commit it durably."""
        try:
            with self.env.begin(write=True) as txn:
                for rkey, meta in batch.rooms:
                    txn.put(rkey.encode(), meta, db=self.room_db)
                for rkey, seq, msg_id, record, ckey in batch.messages:
                    lkey = log_key(rkey, seq)
                    if not txn.put(lkey, record, db=self.log_db, overwrite=False):
                        # A seq is written once; a second write means the counters are wrong.
                        raise RuntimeError(f"log key exists: {rkey!r} seq {seq}")
                    txn.put(msg_id.encode(), lkey, db=self.msg_db)
                    if ckey is not None:
                        txn.put(ckey, orjson.dumps([rkey, seq, msg_id]), db=self.client_db)
        except lmdb.MapFullError as exc:
            raise StoreFull(str(exc)) from None

    # -- reads (any thread) --------------------------------------------------
    def room_meta(self, rkey: str) -> dict[str, Any] | None:
        with self.env.begin() as txn:
            raw = txn.get(rkey.encode(), db=self.room_db)
        return None if raw is None else orjson.loads(raw)

    def last_seq(self, rkey: str) -> int:
        prefix = log_prefix(rkey)
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.log_db)
            # Position just past the room's range, then step back once.
            if cur.set_range(prefix + b"\xff" * 8 + b"\x00"):
                if not cur.prev():
                    return 0
            elif not cur.last():
                return 0
            key = cur.key()
        return seq_of(key) if key.startswith(prefix) and len(key) == len(prefix) + 8 else 0

    def client_message(self, tenant: str, sender: str, client_msg_id: str) -> ClientMessageRef | None:
        with self.env.begin() as txn:
            raw = txn.get(client_key(tenant, sender, client_msg_id), db=self.client_db)
        if raw is None:
            return None
        rkey, seq, msg_id = orjson.loads(raw)
        return ClientMessageRef(rkey, seq, msg_id)

    def message_location(self, msg_id: str) -> tuple[bytes, int] | None:
        """(log key prefix with room, seq) of a message id, or None."""
        with self.env.begin() as txn:
            raw = txn.get(msg_id.encode(), db=self.msg_db)
        return None if raw is None else (raw[:-8], seq_of(raw))

    def read_range(self, rkey: str, after: int, upto: int, limit: int) -> list[bytes]:
        """Records with after < seq <= upto, ascending, at most ``limit``."""
        out: list[bytes] = []
        if limit <= 0 or upto <= after:
            return out
        prefix = log_prefix(rkey)
        end = log_key(rkey, upto)
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.log_db)
            if not cur.set_range(log_key(rkey, after + 1)):
                return out
            for key, value in cur:
                if key > end or not key.startswith(prefix):
                    break
                out.append(value)
                if len(out) >= limit:
                    break
        return out

    def read_before(self, rkey: str, before: int, limit: int) -> list[bytes]:
        """Records with seq < before, the ``limit`` highest, returned ascending."""
        out: list[bytes] = []
        if limit <= 0 or before <= 1:
            return out
        prefix = log_prefix(rkey)
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.log_db)
            if cur.set_range(log_key(rkey, before)):
                ok = cur.prev()
            else:
                ok = cur.last()
            while ok:
                key = cur.key()
                if not key.startswith(prefix) or len(key) != len(prefix) + 8:
                    break
                out.append(cur.value())
                if len(out) >= limit:
                    break
                ok = cur.prev()
        out.reverse()
        return out
