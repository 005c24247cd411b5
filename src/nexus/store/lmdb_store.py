"""The embedded LMDB store: room log, message index, idempotency index, rooms.

Named databases (keys in ``keys.py``):
  log     room key 0x00 seq(BE)  -> event record (JSON, exactly what clients receive)
  msg     message/event id       -> its log key
  client  tenant/sender/client id -> [room key, seq, id, accepted ms]  (idempotency window)
  room    room key               -> room metadata (JSON)
  member  room key 0x00 user id  -> membership (JSON: role, added_by, added_at)
  user    tenant 0x1F user id    -> directory entry (JSON: kind, roles, first/last seen)
  cursor  observer 0x00 room key -> last seq the observer handled (8-byte BE)

Reads run on the event loop thread (memory-mapped, no locks). Writes run only on
the writer thread, one transaction per batch.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import lmdb
import orjson

from .keys import client_key, log_key, log_prefix, member_key, seq_of, user_key

log = logging.getLogger(__name__)

MAX_DBS = 32
EXTENSION_DBS = (
    "agent",
    "turn",
    "usage",
    "summary",
    "task",
    "plugin",
    "plugin_kv",
    "skill",
    "cluster",  # room key -> the shared log's position this node's cache reached
)
PREFIX_CACHE = 100_000  # rooms whose encoded log prefix is kept
_SEQ = struct.Struct(">Q")  # named databases; extensions (memory, tasks, plugins) open their own


def _in_room(key: bytes, prefix: bytes) -> bool:
    """Whether ``key`` is a log key of the room whose log prefix is ``prefix``."""
    return len(key) == len(prefix) + 8 and key.startswith(prefix)


class StoreFull(Exception):
    """The LMDB map is full: nothing of the batch was written."""


class LogEntry(NamedTuple):
    """One sequenced event to append. ``patch`` edits or deletes an earlier message.

    A named tuple: built once per message on the hot path, where it is cheaper than a
    dataclass instance."""

    room_key: str
    seq: int
    event_id: str
    record: bytes
    client_key: bytes | None = None
    accepted_ms: int = 0
    patch: tuple[int, dict[str, Any]] | None = None  # (target seq, fields to set)


@dataclass(slots=True)
class WriteBatch:
    """Everything one commit writes. Built on the loop, applied on the writer thread."""

    rooms: list[tuple[str, bytes]] = field(default_factory=list)  # (room key, meta json)
    entries: list[LogEntry] = field(default_factory=list)
    # (db name, key, value or None to delete) for metadata: "room", "member", "user"
    meta: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rooms) + len(self.entries) + len(self.meta)


@dataclass(frozen=True, slots=True)
class ClientMessageRef:
    room_key: str
    seq: int
    message_id: str


class LmdbStore:
    def __init__(self, path: Path, *, map_size: int, durability: str = "full") -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=MAX_DBS,
            subdir=True,
            sync=durability != "none",
            metasync=durability == "full",
            readahead=False,
            max_readers=256,
            lock=True,
        )
        self.log_db = self.env.open_db(b"log")
        self.msg_db = self.env.open_db(b"msg")
        self.client_db = self.env.open_db(b"client")
        self.room_db = self.env.open_db(b"room")
        self.member_db = self.env.open_db(b"member")
        self.user_db = self.env.open_db(b"user")
        self.cursor_db = self.env.open_db(b"cursor")
        self._meta_dbs = {
            "room": self.room_db,
            "member": self.member_db,
            "user": self.user_db,
            "cursor": self.cursor_db,
        }
        # Extensions' own records, written through the pipeline like all metadata:
        #   agent    tenant 0x1F name              -> agent definition (JSON)
        #   turn     agent's reply message id      -> an agent turn in progress (JSON)
        #   usage    tenant 0x1F day 0x1F agent 0x1F model -> token usage (JSON)
        #   summary  room key 0x00 first seq(BE)   -> a rolling summary (JSON)
        #   task     tenant 0x1F task id           -> a task's projection (JSON, core/tasks)
        for name in EXTENSION_DBS:
            self._meta_dbs[name] = self.env.open_db(name.encode())
        self.max_key_bytes: int = self.env.max_key_size()
        self._log_prefixes: dict[str, bytes] = {}  # room key -> log key prefix (writer)

    def close(self) -> None:
        self.env.close()

    # -- writes (writer thread only) -----------------------------------------
    def apply(self, batch: WriteBatch) -> None:
        """Write the batch in one transaction and commit it (durably, per the mode)."""
        try:
            with self.env.begin(write=True) as txn:
                for rkey, meta in batch.rooms:
                    txn.put(rkey.encode(), meta, db=self.room_db)
                for name, key, value in batch.meta:
                    if value is None:
                        txn.delete(key, db=self._meta_dbs[name])
                    else:
                        txn.put(key, value, db=self._meta_dbs[name])
                if batch.entries:
                    self._append(txn, batch.entries)
        except lmdb.MapFullError as exc:
            raise StoreFull(str(exc)) from None

    def _append(self, txn: lmdb.Transaction, entries: list[LogEntry]) -> None:
        """Log records and their indexes, one ``putmulti`` per database (a C loop) rather
        than two or three Python-level puts per entry."""
        logs = []
        ids = []
        clients = []
        prefixes = self._log_prefixes
        pack = _SEQ.pack
        for rkey, seq, event_id, record, ckey, accepted_ms, _ in entries:
            prefix = prefixes.get(rkey)
            if prefix is None:
                if len(prefixes) >= PREFIX_CACHE:
                    prefixes.clear()
                prefix = prefixes[rkey] = log_prefix(rkey)
            lkey = prefix + pack(seq)
            logs.append((lkey, record))
            ids.append((event_id.encode(), lkey))
            if ckey is not None:
                clients.append((ckey, orjson.dumps([rkey, seq, event_id, accepted_ms])))
        _, added = txn.cursor(db=self.log_db).putmulti(logs, overwrite=False)
        if added != len(logs):
            # A seq is written once; a second write means the counters are wrong.
            raise RuntimeError(f"log key exists: {len(logs) - added} of the batch were written")
        txn.cursor(db=self.msg_db).putmulti(ids)
        if clients:
            txn.cursor(db=self.client_db).putmulti(clients)
        for e in entries:  # after every put: a patch may target an entry of this batch
            if e[6] is not None:  # (entries may be plain tuples in LogEntry's order)
                self._patch(txn, e[0], *e[6])

    def _patch(self, txn: lmdb.Transaction, rkey: str, seq: int, changes: dict[str, Any]) -> None:
        key = log_key(rkey, seq)
        raw = txn.get(key, db=self.log_db)
        if raw is None:  # trimmed by retention meanwhile: the event itself still records it
            return
        record = orjson.loads(raw)
        if record.get("deleted"):
            return  # a delete is final; a racing edit does not bring the body back
        record.update(changes)
        txn.put(key, orjson.dumps(record), db=self.log_db)

    def prune_client_ids(self, older_than_ms: int, max_items: int = 10000) -> int:
        """Forget idempotency keys accepted before ``older_than_ms``. Returns how many."""
        removed = 0
        with self.env.begin(write=True) as txn:
            cur = txn.cursor(db=self.client_db)
            ok = cur.first()
            while ok and removed < max_items:
                if orjson.loads(cur.value())[3] < older_than_ms:
                    # delete() moves to the next record; past the last one the cursor is
                    # unpositioned (empty key) although delete() reported success.
                    ok = cur.delete() and bool(cur.key())
                    removed += 1
                else:
                    ok = cur.next()
        return removed

    def trim_room(
        self, rkey: str, keep_last: int, older_than_ms: int, max_items: int = 10000
    ) -> int:
        """Delete the oldest entries beyond the newest ``keep_last`` (0 = no count limit) or
        stamped before ``older_than_ms`` (0 = no age limit). Returns how many (the new
        first seq is ``first_seq`` afterwards).

        The newest entry always stays: the seq counter restarts from it after a restart.
        """
        if not (keep_last or older_than_ms):
            return 0
        last = self.last_seq(rkey)
        prefix = log_prefix(rkey)
        removed = 0
        with self.env.begin(write=True) as txn:
            cur = txn.cursor(db=self.log_db)
            ok = cur.set_range(prefix)
            while ok and removed < max_items:
                key = cur.key()
                if not _in_room(key, prefix):
                    break
                seq = seq_of(key)
                record = orjson.loads(cur.value())
                over_count = bool(keep_last) and seq <= last - keep_last
                too_old = bool(older_than_ms) and record.get("ts", 0) < older_than_ms
                if seq >= last or not (over_count or too_old):
                    break  # entries only get newer from here
                txn.delete(record["id"].encode(), db=self.msg_db)
                ok = cur.delete()
                removed += 1
        return removed

    # -- reads (any thread) --------------------------------------------------
    def room_meta(self, rkey: str) -> dict[str, Any] | None:
        with self.env.begin() as txn:
            raw = txn.get(rkey.encode(), db=self.room_db)
        return None if raw is None else orjson.loads(raw)

    def _scan(
        self, db: Any, prefix: bytes, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        with self.env.begin() as txn:
            cur = txn.cursor(db=db)
            ok = cur.set_range(prefix + after + b"\x00" if after else prefix)
            while ok and len(out) < limit:
                key = cur.key()
                if not key.startswith(prefix):
                    break
                out.append((key[len(prefix) :], cur.value()))
                ok = cur.next()
        return out

    def list_rooms(self, tenant: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        """Room metadata of ``tenant`` by name, after the name ``after``."""
        rows = self._scan(
            self.room_db, f"{tenant}\x1f".encode(), after.encode() if after else None, limit
        )
        return [orjson.loads(value) for _, value in rows]

    def members(self, rkey: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        rows = self._scan(
            self.member_db, rkey.encode() + b"\x00", after.encode() if after else None, limit
        )
        return [orjson.loads(value) for _, value in rows]

    def member(self, rkey: str, user_id: str) -> dict[str, Any] | None:
        with self.env.begin() as txn:
            raw = txn.get(member_key(rkey, user_id), db=self.member_db)
        return None if raw is None else orjson.loads(raw)

    def users(self, tenant: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        rows = self._scan(
            self.user_db, f"{tenant}\x1f".encode(), after.encode() if after else None, limit
        )
        return [orjson.loads(value) for _, value in rows]

    def user(self, tenant: str, user_id: str) -> dict[str, Any] | None:
        with self.env.begin() as txn:
            raw = txn.get(user_key(tenant, user_id), db=self.user_db)
        return None if raw is None else orjson.loads(raw)

    def room_keys(self) -> list[str]:
        with self.env.begin() as txn:
            return [k.decode() for k in txn.cursor(db=self.room_db).iternext(values=False)]

    def last_seq(self, rkey: str) -> int:
        prefix = log_prefix(rkey)
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.log_db)
            # Position just past the room's range, then step back once.
            if cur.set_range(prefix + b"\xff" * 9):
                if not cur.prev():
                    return 0
            elif not cur.last():
                return 0
            key = cur.key()
        return seq_of(key) if _in_room(key, prefix) else 0

    def first_seq(self, rkey: str) -> int:
        """Lowest seq still stored (retention may have trimmed the head); 0 if none."""
        prefix = log_prefix(rkey)
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.log_db)
            if not cur.set_range(prefix):
                return 0
            key = cur.key()
        return seq_of(key) if _in_room(key, prefix) else 0

    def records(
        self, db: str, prefix: bytes = b"", limit: int = 1 << 62
    ) -> list[tuple[bytes, bytes]]:
        """(key, value) pairs of metadata database ``db`` whose key starts with ``prefix``."""
        return [(prefix + k, v) for k, v in self._scan(self._meta_dbs[db], prefix, None, limit)]

    def record(self, db: str, key: bytes) -> bytes | None:
        with self.env.begin() as txn:
            value: bytes | None = txn.get(key, db=self._meta_dbs[db])
            return value

    def agents(self) -> list[bytes]:
        """Every agent definition (JSON), all tenants."""
        return [value for _, value in self.records("agent")]

    def cursors(self, observer: str) -> dict[str, int]:
        """Room key -> last seq handled, for every room ``observer`` has a cursor for."""
        prefix = f"{observer}\x00".encode()
        return {
            key.decode(): seq_of(value)
            for key, value in self._scan(self.cursor_db, prefix, None, 1 << 62)
        }

    def client_message(
        self, tenant: str, sender: str, client_msg_id: str
    ) -> ClientMessageRef | None:
        with self.env.begin() as txn:
            raw = txn.get(client_key(tenant, sender, client_msg_id), db=self.client_db)
        if raw is None:
            return None
        rkey, seq, msg_id, _ = orjson.loads(raw)
        return ClientMessageRef(rkey, seq, msg_id)

    def message_location(self, msg_id: str) -> tuple[bytes, int] | None:
        """(log key prefix naming the room, seq) of a message id, or None."""
        with self.env.begin() as txn:
            raw = txn.get(msg_id.encode(), db=self.msg_db)
        return None if raw is None else (raw[:-8], seq_of(raw))

    def read_record(self, rkey: str, seq: int) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(log_key(rkey, seq), db=self.log_db)

    def read_range(self, rkey: str, after: int, upto: int, limit: int) -> list[bytes]:
        """Records with after < seq <= upto, ascending, at most ``limit``."""
        return self.read_page(rkey, after, upto, limit)[0]

    def read_page(self, rkey: str, after: int, upto: int, limit: int) -> tuple[list[bytes], int]:
        """Like ``read_range``, also returning the seq of the last record (``after`` if none)."""
        out: list[bytes] = []
        last = after
        if limit <= 0 or upto <= after:
            return out, last
        prefix = log_prefix(rkey)
        end = log_key(rkey, upto)
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.log_db)
            if not cur.set_range(log_key(rkey, after + 1)):
                return out, last
            for key, value in cur:
                if key > end or not _in_room(key, prefix):
                    break
                out.append(value)
                last = seq_of(key)
                if len(out) >= limit:
                    break
        return out, last

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
                if not _in_room(key, prefix):
                    break
                out.append(cur.value())
                if len(out) >= limit:
                    break
                ok = cur.prev()
        out.reverse()
        return out
