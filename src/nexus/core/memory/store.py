"""The search file: message index and memory records in one SQLite database (FTS5).

``data/search.sqlite3`` beside the LMDB directory. Tables:
  doc         one row per searchable entry (a message, an agent's finished reply):
              tenant, room key, seq, entry id, sender, ts, current text
  doc_fts     FTS5 index of doc.body (external content, kept in step by triggers)
  memory      memory records (scope, provenance, validity, supersession)
  memory_fts  FTS5 index of memory.text
  indexed     room key -> last seq applied from that room's log

Everything here is blocking: callers run it off the event loop (``asyncio.to_thread``).
One connection writes (under a lock), another reads; WAL lets them run together.
``synchronous=NORMAL``, whatever the log's durability: a WAL commit survives a killed
process, and a power cut may take back the last transactions. Everything here is derived
from the log (messages, and memory records from their ``memory.*`` events), and the
``indexed`` table commits with the rows it accounts for, so after a power cut the indexer
resumes each room from that table wherever it is behind the observer's cursor
(``SearchIndexer.positions``) and applies the lost entries again. A ``FULL`` fsync per
indexing transaction competed with the log's own fsyncs on the same disk: with it the
durable ack p99 at half the maximum rate was 12.6 ms, without the index 5.8-7.1 ms.

Applying the log is idempotent: entries at or below a room's ``indexed`` seq are skipped,
so a redelivered batch changes nothing.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ...store.keys import split_room_key

FILE_NAME = "search.sqlite3"
SNIPPET_OPEN = "**"
SNIPPET_CLOSE = "**"
SNIPPET_TOKENS = 16

SCHEMA = """
CREATE TABLE IF NOT EXISTS doc(
  id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, room TEXT NOT NULL, seq INTEGER NOT NULL,
  entry_id TEXT NOT NULL, kind TEXT NOT NULL, sender TEXT NOT NULL, ts INTEGER NOT NULL,
  body TEXT NOT NULL, UNIQUE(room, seq));
CREATE VIRTUAL TABLE IF NOT EXISTS doc_fts USING fts5(
  body, content='doc', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
DROP TRIGGER IF EXISTS doc_ai;
CREATE TRIGGER IF NOT EXISTS doc_ad AFTER DELETE ON doc BEGIN
  INSERT INTO doc_fts(doc_fts, rowid, body) VALUES ('delete', old.id, old.body); END;
CREATE TRIGGER IF NOT EXISTS doc_au AFTER UPDATE OF body ON doc BEGIN
  INSERT INTO doc_fts(doc_fts, rowid, body) VALUES ('delete', old.id, old.body);
  INSERT INTO doc_fts(rowid, body) VALUES (new.id, new.body); END;
CREATE TABLE IF NOT EXISTS indexed(room TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS forgotten(id TEXT PRIMARY KEY);

CREATE TABLE IF NOT EXISTS memory(
  n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
  scope TEXT NOT NULL, scope_id TEXT NOT NULL, text TEXT NOT NULL,
  author TEXT NOT NULL, author_kind TEXT NOT NULL, created_at INTEGER NOT NULL,
  valid_from INTEGER NOT NULL, valid_until INTEGER, superseded_by TEXT, supersedes TEXT,
  source TEXT, event_room TEXT NOT NULL, event_seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS memory_scope ON memory(tenant, scope, scope_id);
CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(
  text, content='memory', content_rowid='n', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS memory_ai AFTER INSERT ON memory BEGIN
  INSERT INTO memory_fts(rowid, text) VALUES (new.n, new.text); END;
CREATE TRIGGER IF NOT EXISTS memory_ad AFTER DELETE ON memory BEGIN
  INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.n, old.text); END;
"""

MEMORY_COLUMNS = (
    "id",
    "tenant",
    "scope",
    "scope_id",
    "text",
    "author",
    "author_kind",
    "created_at",
    "valid_from",
    "valid_until",
    "superseded_by",
    "supersedes",
    "source",
    "event_room",
    "event_seq",
)
_MEMORY_SELECT = ", ".join(f"m.{c}" for c in MEMORY_COLUMNS)

# Log entries the index reads; any other kind only moves the room's indexed seq.
MESSAGE = "message"
EDITED = "message.edited"
DELETED = "message.deleted"
REPLY = "message.completed"
MEMORY_WRITTEN = "memory.written"
MEMORY_SUPERSEDED = "memory.superseded"
MEMORY_FORGOTTEN = "memory.forgotten"


@dataclass(frozen=True, slots=True)
class MessageHit:
    room_key: str
    seq: int
    entry_id: str
    kind: str  # "message" or "reply" (an agent's finished reply)
    sender: str
    ts: int
    snippet: str
    bm25: float


@dataclass(frozen=True, slots=True)
class MemoryScopeFilter:
    """Which memory records a reader may see within its tenant."""

    tenant: str
    rooms: tuple[str, ...]  # room names whose room-scope records are visible
    user_id: str  # user (or agent) whose own user/agent-scope records are visible
    all_agents: bool = False  # a tenant admin sees every agent's records


def memory_row(record: dict[str, Any]) -> tuple[Any, ...]:
    values = [record.get(c) for c in MEMORY_COLUMNS]
    source = MEMORY_COLUMNS.index("source")
    if values[source] is not None:
        values[source] = orjson.dumps(values[source]).decode()
    return tuple(values)


def memory_record(row: Sequence[Any]) -> dict[str, Any]:
    record = dict(zip(MEMORY_COLUMNS, row, strict=False))
    record["source"] = orjson.loads(record["source"]) if record["source"] else None
    return record


DOC_ROWS_PER_INSERT = 128  # x 8 parameters, well under SQLite's 32,766


@functools.cache
def _doc_insert(rows: int) -> str:
    return (
        "INSERT INTO doc(tenant, room, seq, entry_id, kind, sender, ts, body) VALUES "
        + ",".join(["(?,?,?,?,?,?,?,?)"] * rows)
        + " ON CONFLICT(room, seq) DO NOTHING"
    )


def _doc_row(
    tenant: str, rkey: str, seq: int, entry_id: str, kind: str, record: dict[str, Any], body: str
) -> tuple[Any, ...]:
    return (
        tenant,
        rkey,
        seq,
        entry_id,
        kind,
        str(record.get("sender", "")),
        int(record.get("ts", 0)),
        body,
    )


class SearchStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._write = self._connect()
        self._write.executescript(SCHEMA)
        self._read = self._connect()
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def close(self) -> None:
        with self._wlock, self._rlock:
            self._read.close()
            self._write.close()

    # -- the log, applied -----------------------------------------------------------
    def indexed(self) -> dict[str, int]:
        """Room key -> last seq applied."""
        with self._rlock:
            return dict(self._read.execute("SELECT room, seq FROM indexed").fetchall())

    def apply(self, entries: Iterable[tuple[str, int, bytes]]) -> int:
        """Apply committed log entries (room key, seq, record), in seq order per room, in
        one transaction. Returns how many were new (not at or below the indexed seq)."""
        with self._wlock:
            db = self._write
            db.execute("BEGIN IMMEDIATE")
            try:
                applied = self._apply(db, entries)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return applied

    def _apply(self, db: sqlite3.Connection, entries: Iterable[tuple[str, int, bytes]]) -> int:
        heads: dict[str, int] = {}
        tenants: dict[str, str] = {}
        docs: list[tuple[Any, ...]] = []  # rows for doc, added together before any other kind
        applied = 0
        for rkey, seq, raw in entries:
            head = heads.get(rkey)
            if head is None:
                row = db.execute("SELECT seq FROM indexed WHERE room=?", (rkey,)).fetchone()
                head = row[0] if row else 0
                tenants[rkey] = split_room_key(rkey)[0]
            if seq <= head:
                continue
            heads[rkey] = seq
            applied += 1
            record = orjson.loads(raw)
            kind = record.get("type")
            if kind == MESSAGE:
                body = record.get("body") or ""
                if body and not record.get("deleted"):
                    docs.append(
                        _doc_row(tenants[rkey], rkey, seq, record["id"], MESSAGE, record, body)
                    )
                continue
            if kind == REPLY:
                text = record.get("text") or ""
                if text:
                    entry_id = str(record.get("message_id") or record["id"])
                    docs.append(_doc_row(tenants[rkey], rkey, seq, entry_id, "reply", record, text))
                continue
            if docs:  # an edit or delete may concern a message of this batch: add those first
                self._add_docs(db, docs)
                docs = []
            if kind == EDITED:
                db.execute(
                    "UPDATE doc SET body=? WHERE room=? AND seq=?",
                    (record.get("body") or "", rkey, record.get("target_seq", 0)),
                )
            elif kind == DELETED:
                db.execute(
                    "DELETE FROM doc WHERE room=? AND seq=?", (rkey, record.get("target_seq", 0))
                )
            elif kind in (MEMORY_WRITTEN, MEMORY_SUPERSEDED) and not record.get("forgotten"):
                memory = record.get("memory")
                if isinstance(memory, dict):
                    tenant, room = split_room_key(rkey)
                    # The room's tenant, whatever the event says: a record never crosses.
                    memory = {**memory, "tenant": tenant, "event_room": room, "event_seq": seq}
                    if kind == MEMORY_SUPERSEDED:
                        self._supersede(db, str(record.get("superseded")), memory)
                    else:
                        self._insert_memory(db, memory)
            elif kind == MEMORY_FORGOTTEN:
                self._forget(db, str(record.get("memory_id")))
        if docs:
            self._add_docs(db, docs)
        db.executemany(
            "INSERT INTO indexed(room, seq) VALUES (?, ?)"
            " ON CONFLICT(room) DO UPDATE SET seq=excluded.seq",
            heads.items(),
        )
        return applied

    @staticmethod
    def _add_docs(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Add searchable entries: their doc rows in a few multi-row INSERTs, then their FTS
        rows in one more statement. New rows get ids above the largest one (no
        AUTOINCREMENT: max(id) + 1), which is how that statement finds them; an entry
        added already (same room and seq) is skipped by both.

        Measured (256-entry batches): an AFTER INSERT trigger cost ~40 µs of CPU a message
        (FTS5 flushes at every statement boundary of a trigger), two statements per entry
        ~5 µs, an ``executemany`` ~4.1 µs, multi-row INSERTs ~3.4 µs. The last also lets
        the GIL go a few times per batch instead of once per row: with a thread that
        takes and releases the GIL per message (a Wasm plugin's call), per-row hand-overs
        had made both threads several µs a message dearer."""
        before = db.execute("SELECT max(id) FROM doc").fetchone()[0] or 0
        for start in range(0, len(rows), DOC_ROWS_PER_INSERT):
            part = rows[start : start + DOC_ROWS_PER_INSERT]
            db.execute(_doc_insert(len(part)), [value for row in part for value in row])
        db.execute(
            "INSERT INTO doc_fts(rowid, body) SELECT id, body FROM doc WHERE id > ?", (before,)
        )

    def trim(self, rkey: str, first_seq: int) -> None:
        """Retention removed the room's entries below ``first_seq``: so does the index."""
        with self._wlock:
            self._write.execute("DELETE FROM doc WHERE room=? AND seq<?", (rkey, first_seq))

    def clear(self, *, memory: bool = False) -> None:
        """Forget the message index (and the memory records): ``nexus reindex``."""
        with self._wlock:
            db = self._write
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM doc")
            db.execute("DELETE FROM indexed")
            if memory:
                db.execute("DELETE FROM memory")
                db.execute("DELETE FROM forgotten")
            db.execute("COMMIT")
            db.execute("INSERT INTO doc_fts(doc_fts) VALUES ('optimize')")

    def docs(self) -> list[tuple[Any, ...]]:
        """Every indexed entry, by room and seq (for tests and checks)."""
        with self._rlock:
            return self._read.execute(
                "SELECT tenant, room, seq, entry_id, kind, sender, ts, body FROM doc"
                " ORDER BY room, seq"
            ).fetchall()

    # -- searching messages -----------------------------------------------------------
    def search_messages(
        self, tenant: str, room_keys: Sequence[str], match: str, limit: int
    ) -> list[MessageHit]:
        """The ``limit`` best BM25 matches of ``match`` among the given rooms of ``tenant``."""
        if not room_keys:
            return []
        with self._rlock:
            rows = self._read.execute(
                "SELECT d.room, d.seq, d.entry_id, d.kind, d.sender, d.ts,"
                " snippet(doc_fts, 0, ?, ?, '…', ?), bm25(doc_fts)"
                " FROM doc_fts JOIN doc d ON d.id = doc_fts.rowid"
                " WHERE doc_fts MATCH ? AND d.tenant = ?"
                " AND d.room IN (SELECT value FROM json_each(?))"
                " ORDER BY bm25(doc_fts) LIMIT ?",
                (
                    SNIPPET_OPEN,
                    SNIPPET_CLOSE,
                    SNIPPET_TOKENS,
                    match,
                    tenant,
                    orjson.dumps(list(room_keys)).decode(),
                    limit,
                ),
            ).fetchall()
        return [MessageHit(*row) for row in rows]

    # -- memory records ---------------------------------------------------------------
    def insert_memory(self, record: dict[str, Any]) -> None:
        """Store a new record (a second insert of the same id changes nothing)."""
        with self._wlock:
            self._insert_memory(self._write, record)

    def supersede_memory(self, old_id: str, record: dict[str, Any]) -> None:
        with self._wlock:
            db = self._write
            db.execute("BEGIN IMMEDIATE")
            self._supersede(db, old_id, record)
            db.execute("COMMIT")

    def forget_memory(self, memory_id: str) -> None:
        with self._wlock:
            db = self._write
            db.execute("BEGIN IMMEDIATE")
            self._forget(db, memory_id)
            db.execute("COMMIT")

    @staticmethod
    def _forget(db: sqlite3.Connection, memory_id: str) -> None:
        # Remembered as forgotten: the indexer may still hold the event that wrote the
        # record (read before the forget patched it) and must not bring it back.
        db.execute("DELETE FROM memory WHERE id=?", (memory_id,))
        db.execute("INSERT OR IGNORE INTO forgotten(id) VALUES (?)", (memory_id,))

    @staticmethod
    def _insert_memory(db: sqlite3.Connection, record: dict[str, Any]) -> None:
        if db.execute("SELECT 1 FROM forgotten WHERE id=?", (record["id"],)).fetchone():
            return
        db.execute(
            f"INSERT OR IGNORE INTO memory({', '.join(MEMORY_COLUMNS)})"
            f" VALUES ({', '.join('?' * len(MEMORY_COLUMNS))})",
            memory_row(record),
        )

    @classmethod
    def _supersede(cls, db: sqlite3.Connection, old_id: str, record: dict[str, Any]) -> None:
        db.execute(
            "UPDATE memory SET superseded_by=?,"
            " valid_until=CASE WHEN valid_until IS NULL OR valid_until > ? THEN ?"
            " ELSE valid_until END WHERE id=? AND superseded_by IS NULL",
            (record["id"], record["valid_from"], record["valid_from"], old_id),
        )
        cls._insert_memory(db, record)

    def memory(self, tenant: str, memory_id: str) -> dict[str, Any] | None:
        with self._rlock:
            row = self._read.execute(
                f"SELECT {_MEMORY_SELECT} FROM memory m WHERE m.tenant=? AND m.id=?",
                (tenant, memory_id),
            ).fetchone()
        return None if row is None else memory_record(row)

    def search_memory(
        self,
        scope: MemoryScopeFilter,
        match: str | None,
        limit: int,
        now_ms: int,
        *,
        history: bool = False,
        only_scope: tuple[str, str | None] | None = None,
    ) -> list[tuple[dict[str, Any], float]]:
        """Records ``scope`` may see, best BM25 first (newest first without ``match``),
        current ones only unless ``history``; ``only_scope`` = (scope, scope_id or None
        for any)."""
        where = [
            "m.tenant = :tenant",
            "(m.scope = 'tenant'"
            " OR (m.scope = 'room' AND m.scope_id IN (SELECT value FROM json_each(:rooms)))"
            " OR (m.scope = 'user' AND m.scope_id = :me)"
            " OR (m.scope = 'agent' AND (m.scope_id = :me OR :all_agents)))",
        ]
        params: dict[str, Any] = {
            "tenant": scope.tenant,
            "rooms": orjson.dumps(list(scope.rooms)).decode(),
            "me": scope.user_id,
            "all_agents": int(scope.all_agents),
            "now": now_ms,
            "limit": limit,
            "match": match,
        }
        if not history:
            where.append(
                "m.superseded_by IS NULL AND m.valid_from <= :now"
                " AND (m.valid_until IS NULL OR m.valid_until > :now)"
            )
        if only_scope is not None:
            where.append("m.scope = :only")
            params["only"], params["only_id"] = only_scope
            if only_scope[1] is not None:
                where.append("m.scope_id = :only_id")
        if match is not None:
            sql = (
                f"SELECT {_MEMORY_SELECT}, bm25(memory_fts) FROM memory_fts"
                " JOIN memory m ON m.n = memory_fts.rowid"
                f" WHERE memory_fts MATCH :match AND {' AND '.join(where)}"
                " ORDER BY bm25(memory_fts) LIMIT :limit"
            )
        else:
            sql = (
                f"SELECT {_MEMORY_SELECT}, 0.0 FROM memory m WHERE {' AND '.join(where)}"
                " ORDER BY m.created_at DESC, m.n DESC LIMIT :limit"
            )
        with self._rlock:
            rows = self._read.execute(sql, params).fetchall()
        return [(memory_record(row[:-1]), float(row[-1])) for row in rows]
