"""SQLite FTS5 against tantivy for the message index (docs/decisions/0008-search-engine.md).

Both engines get the same synthetic corpus (Zipf-distributed words, 5-30 words a message,
10 tenants x 100 rooms) in batches of 256 messages with a commit per batch, as the indexer
observer writes them, then answer the same queries: 1-3 words, one tenant, half of its
rooms visible (the permission filter), top 10 by BM25. Each engine also gets one edit
and one delete per 100 messages, so the update paths are priced too.

    python -m benchmarks.search_engines               # 100k messages
    python -m benchmarks.search_engines --messages 1000000
    python -m benchmarks.search_engines --engines fts5

tantivy is not a dependency of Nexus: ``pip install tantivy`` to include it.
"""

from __future__ import annotations

import argparse
import itertools
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BATCH = 256
TENANTS = 10
ROOMS_PER_TENANT = 100
VOCABULARY = 30_000
QUERIES = 500

Message = tuple[str, str, int, str, int, str]  # tenant, room key, seq, sender, ts, body


def vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = sorted({"".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(VOCABULARY)})
    rng.shuffle(words)
    weights = list(itertools.accumulate(1.0 / (rank + 1) ** 1.07 for rank in range(len(words))))
    return words, weights


def corpus(n: int, seed: int = 7) -> Iterator[Message]:
    rng = random.Random(seed)
    words, cum = vocabulary(rng)
    seqs: dict[str, int] = {}
    ts = 1_700_000_000_000
    for _ in range(n):
        tenant = f"t{rng.randrange(TENANTS)}"
        rkey = f"{tenant}\x1fr{rng.randrange(ROOMS_PER_TENANT)}"
        seq = seqs[rkey] = seqs.get(rkey, 0) + 1
        ts += rng.randrange(1, 2000)
        body = " ".join(rng.choices(words, cum_weights=cum, k=rng.randint(5, 30)))
        yield tenant, rkey, seq, f"u{rng.randrange(500)}", ts, body


def queries(seed: int = 11) -> list[tuple[str, list[str], list[str]]]:
    """(tenant, visible room keys, terms): terms from the mid-frequency band."""
    rng = random.Random(seed)
    words, _ = vocabulary(random.Random(7))
    out = []
    for _ in range(QUERIES):
        tenant = f"t{rng.randrange(TENANTS)}"
        rooms = [f"{tenant}\x1fr{i}" for i in rng.sample(range(ROOMS_PER_TENANT), 50)]
        terms = [words[rng.randrange(50, 5000)] for _ in range(rng.randint(1, 3))]
        out.append((tenant, rooms, terms))
    return out


class Fts5:
    name = "sqlite-fts5"

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path / "search.sqlite3", isolation_level=None)
        self.db.executescript(
            """
            PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
            CREATE TABLE doc(id INTEGER PRIMARY KEY, tenant TEXT, room TEXT, seq INTEGER,
                             sender TEXT, ts INTEGER, body TEXT, UNIQUE(room, seq));
            CREATE VIRTUAL TABLE doc_fts USING fts5(body, content='doc', content_rowid='id',
                                                    tokenize='unicode61 remove_diacritics 2');
            CREATE TRIGGER doc_ai AFTER INSERT ON doc BEGIN
              INSERT INTO doc_fts(rowid, body) VALUES (new.id, new.body); END;
            CREATE TRIGGER doc_ad AFTER DELETE ON doc BEGIN
              INSERT INTO doc_fts(doc_fts, rowid, body) VALUES ('delete', old.id, old.body); END;
            CREATE TRIGGER doc_au AFTER UPDATE OF body ON doc BEGIN
              INSERT INTO doc_fts(doc_fts, rowid, body) VALUES ('delete', old.id, old.body);
              INSERT INTO doc_fts(rowid, body) VALUES (new.id, new.body); END;
            """
        )

    def write(self, batch: list[Message], edits: list[tuple[str, int]]) -> None:
        db = self.db
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO doc(tenant, room, seq, sender, ts, body) VALUES (?,?,?,?,?,?)", batch
        )
        for i, (rkey, seq) in enumerate(edits):
            if i % 2:
                db.execute("DELETE FROM doc WHERE room=? AND seq=?", (rkey, seq))
            else:
                db.execute(
                    "UPDATE doc SET body = body || ' edited' WHERE room=? AND seq=?", (rkey, seq)
                )
        db.execute("COMMIT")

    def finish(self) -> None:
        pass

    def search(self, tenant: str, rooms: list[str], terms: list[str]) -> list[Any]:
        match = " OR ".join(f'"{t}"' for t in terms)
        return self.db.execute(
            "SELECT doc.room, doc.seq, snippet(doc_fts, 0, '[', ']', '…', 12), bm25(doc_fts)"
            " FROM doc_fts JOIN doc ON doc.id = doc_fts.rowid"
            " WHERE doc_fts MATCH ? AND doc.tenant = ?"
            " AND doc.room IN (SELECT value FROM json_each(?))"
            " ORDER BY bm25(doc_fts) LIMIT 10",
            (match, tenant, _json(rooms)),
        ).fetchall()

    def size(self, path: Path) -> int:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(f.stat().st_size for f in path.iterdir())


class Tantivy:
    name = "tantivy"

    def __init__(self, path: Path) -> None:
        import tantivy

        self.t = tantivy
        sb = tantivy.SchemaBuilder()
        sb.add_text_field("body", stored=True)
        sb.add_text_field("tenant", tokenizer_name="raw", index_option="basic")
        sb.add_text_field("room", stored=True, tokenizer_name="raw", index_option="basic")
        sb.add_text_field("key", tokenizer_name="raw", index_option="basic")  # room/seq
        sb.add_integer_field("seq", stored=True)
        sb.add_integer_field("ts", stored=True, fast=True)
        self.schema = sb.build()
        self.index = tantivy.Index(self.schema, path=str(path))
        self.writer = self.index.writer(heap_size=64_000_000, num_threads=1)
        self.bodies: dict[str, Message] = {}  # tantivy updates are delete + re-add

    def write(self, batch: list[Message], edits: list[tuple[str, int]]) -> None:
        t = self.t
        for tenant, rkey, seq, sender, ts, body in batch:
            self.writer.add_document(
                t.Document(body=body, tenant=tenant, room=rkey, key=f"{rkey}/{seq}", seq=seq, ts=ts)
            )
            self.bodies[f"{rkey}/{seq}"] = (tenant, rkey, seq, sender, ts, body)
        for i, (rkey, seq) in enumerate(edits):
            key = f"{rkey}/{seq}"
            self.writer.delete_documents_by_term("key", key)
            old = self.bodies.pop(key, None)
            if i % 2 == 0 and old is not None:
                tenant, _, _, sender, ts, body = old
                self.writer.add_document(
                    t.Document(
                        body=body + " edited", tenant=tenant, room=rkey, key=key, seq=seq, ts=ts
                    )
                )
        self.writer.commit()

    def finish(self) -> None:
        self.writer.wait_merging_threads()
        self.index.reload()

    def search(self, tenant: str, rooms: list[str], terms: list[str]) -> list[Any]:
        t = self.t
        q = t.Query
        text = q.boolean_query(
            [(t.Occur.Should, q.term_query(self.schema, "body", w)) for w in terms]
        )
        query = q.boolean_query(
            [
                (t.Occur.Must, text),
                (t.Occur.Must, q.term_query(self.schema, "tenant", tenant)),
                (t.Occur.Must, q.term_set_query(self.schema, "room", rooms)),
            ]
        )
        searcher = self.index.searcher()
        result = searcher.search(query, 10)
        snippets = t.SnippetGenerator.create(searcher, text, self.schema, "body")
        out = []
        for score, address in result.hits:
            doc = searcher.doc(address)
            out.append((doc["room"][0], doc["seq"][0], snippets.snippet_from_doc(doc), score))
        return out

    def size(self, path: Path) -> int:
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def _json(values: list[str]) -> str:
    import orjson

    return orjson.dumps(values).decode()


def run(engine_cls: Any, n: int, root: Path) -> dict[str, Any]:
    path = root / engine_cls.name
    path.mkdir()
    engine = engine_cls(path)
    rng = random.Random(3)
    written: list[tuple[str, int]] = []
    messages = list(corpus(n))  # generated before the clock starts
    started = time.perf_counter()
    batch: list[Message] = []
    for message in messages:
        batch.append(message)
        if len(batch) == BATCH:
            written.extend((m[1], m[2]) for m in batch)
            # about 1 edit or delete per 100 messages, of recent ones (no repeats)
            edits = [written.pop(rng.randrange(len(written))) for _ in range(BATCH // 100)]
            engine.write(batch, edits)
            batch = []
    if batch:
        engine.write(batch, [])
    engine.finish()
    seconds = time.perf_counter() - started
    qs = queries()
    latencies = []
    hits = 0
    for tenant, rooms, terms in qs:
        t0 = time.perf_counter()
        hits += len(engine.search(tenant, rooms, terms))
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    return {
        "engine": engine_cls.name,
        "messages": n,
        "index_seconds": round(seconds, 1),
        "messages_per_s": round(n / seconds),
        "query_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "query_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "mean_hits": round(hits / len(qs), 1),
        "size_mb": round(engine.size(path) / 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--engines", nargs="+", default=["fts5", "tantivy"])
    p.add_argument("--dir", help="where to build the indexes (default: a temporary dir)")
    args = p.parse_args(argv)
    root = Path(args.dir or tempfile.mkdtemp(prefix="nexus-search-bench-"))
    classes = {"fts5": Fts5, "tantivy": Tantivy}
    try:
        for name in args.engines:
            print(run(classes[name], args.messages, root), flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
