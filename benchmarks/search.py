"""`python -m benchmarks.search [--messages N] [--pipeline N]`: what search costs.

1. **The index alone** (``core.memory.SearchStore``, the real schema): N messages
   (default 100k, the corpus of ``benchmarks.search_engines``) applied as the indexer does,
   256 log records a transaction with about one edit or delete per 100 messages; then 500
   queries of 1-3 words, each over one tenant and 50 of its rooms, through the same
   ``match_expression`` as the server: indexing messages/s, query p50/p99.
2. **The write path with and without the indexer**: an in-process server (``app.build``,
   real LMDB file) takes messages from 16 writers in 16 rooms, 64 in flight each; messages/s
   until the last ack, with ``search_enabled`` off and on (``store_durability`` none and
   full), and how long after the last ack the indexer had caught up.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from nexus.app import build
from nexus.auth import Principal
from nexus.config import load_settings
from nexus.core.memory import SearchIndexer, SearchStore
from nexus.core.memory.query import match_expression
from nexus.protocol import MessageSend

from .search_engines import BATCH, corpus, queries

WRITERS = 16
IN_FLIGHT = 64


def index_alone(n: int, root: Path) -> dict[str, Any]:
    store = SearchStore(root / "search.sqlite3")
    rng = random.Random(3)
    rows = []
    written: list[tuple[str, int]] = []
    for _tenant, rkey, seq, sender, ts, body in corpus(n):
        rows.append(
            (
                rkey,
                seq,
                orjson.dumps(
                    {
                        "type": "message",
                        "seq": seq,
                        "id": f"{rkey}/{seq}",
                        "sender": sender,
                        "ts": ts,
                        "body": body,
                    }
                ),
            )
        )
    started = time.perf_counter()
    heads: dict[str, int] = {}
    for i in range(0, len(rows), BATCH):
        batch = rows[i : i + BATCH]
        written.extend((r[0], r[1]) for r in batch)
        for rkey, seq, _ in batch:
            heads[rkey] = max(heads.get(rkey, 0), seq)
        changes = []
        for j in range(BATCH // 100):
            rkey, target = written.pop(rng.randrange(len(written)))
            heads[rkey] += 1
            kind = "message.deleted" if j % 2 else "message.edited"
            changes.append(
                (
                    rkey,
                    heads[rkey],
                    orjson.dumps(
                        {"type": kind, "seq": heads[rkey], "target_seq": target, "body": "edited"}
                    ),
                )
            )
        # edits carry the next seqs of their rooms: apply them after the batch
        store.apply(batch + changes)
    seconds = time.perf_counter() - started
    latencies = []
    for tenant, rooms, terms in queries():
        match = match_expression(" ".join(terms))
        assert match is not None
        t0 = time.perf_counter()
        store.search_messages(tenant, rooms, match, 50)  # 10 wanted x 5 candidates
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    store.close()
    return {
        "messages": n,
        "index_messages_per_s": round(n / seconds),
        "query_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "query_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


class Counter:
    def __init__(self, principal: Principal, done: asyncio.Event, total: int) -> None:
        self.principal = principal
        self.acks = 0
        self.done = done
        self.total = total
        self.window = asyncio.Event()

    def send(self, payload: bytes) -> None:
        self.acks += 1
        self.window.set()
        if self.acks == self.total:
            self.done.set()


async def pipeline(n: int, search: bool, durability: str) -> dict[str, Any]:
    data = tempfile.mkdtemp(prefix="nexus-search-pipeline-")
    try:  # (removed by the finally below while the process still runs: fine on Linux)
        settings = load_settings(
            environ={},
            overrides={
                "data_dir": data,
                "store_durability": durability,
                "auth_secret": "search-bench-secret-0123456789-0123456789",
                "print_dev_token": "false",
                "search_enabled": str(search).lower(),
            },
        )
        app = build(settings, asyncio.get_running_loop())
        app.pipeline.observers.start()
        writes, rooms = app.handlers.writes, app.handlers.rooms
        per = n // WRITERS

        async def writer(i: int, done: asyncio.Event) -> Counter:
            who = Principal(f"u{i}", "bench", frozenset({"member"}))
            room, _ = rooms.open(who, f"room-{i}")
            writes.persist_room(room)
            counter = Counter(who, done, per)
            for k in range(per):
                while k - counter.acks >= IN_FLIGHT:
                    counter.window.clear()
                    await counter.window.wait()
                writes.post(
                    counter,
                    room,
                    MessageSend(
                        None, room.name, f"message {k} of {i} about topic{k % 97} and more words"
                    ),
                )
            await done.wait()
            return counter

        started = time.perf_counter()
        events = [asyncio.Event() for _ in range(WRITERS)]
        await asyncio.gather(*(writer(i, events[i]) for i in range(WRITERS)))
        acked = time.perf_counter() - started
        caught_up = 0.0
        indexer = next(
            (
                r.observer
                for r in app.pipeline.observers.runners
                if isinstance(r.observer, SearchIndexer)
            ),
            None,
        )
        if indexer is not None:
            while indexer.applied < per * WRITERS:
                await asyncio.sleep(0.005)
            caught_up = time.perf_counter() - started - acked
        return {
            "search": search,
            "durability": durability,
            "messages": per * WRITERS,
            "acked_messages_per_s": round(per * WRITERS / acked),
            "index_caught_up_after_last_ack_s": round(caught_up, 2),
        }
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=100_000, help="index-alone corpus size")
    p.add_argument("--pipeline", type=int, default=48_000, help="messages through the server")
    p.add_argument("--one", nargs=2, metavar=("DURABILITY", "SEARCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        import os

        import uvloop

        durability, search = args.one

        async def one() -> None:
            print(await pipeline(args.pipeline, search == "on", durability), flush=True)
            # The server is not stopped: the process ends here, before the loop's own
            # clean-up waits for the observers (the agent runtime reads the log behind
            # the load); stopping them is not what is measured.
            os._exit(0)

        uvloop.run(one())
    root = Path(tempfile.mkdtemp(prefix="nexus-search-bench-"))
    try:
        print(index_alone(args.messages, root), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for durability in ("none", "full"):
        for search in ("off", "on"):
            # each run in its own process: a fresh loop, data directory and heap
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.search",
                    "--pipeline",
                    str(args.pipeline),
                    "--one",
                    durability,
                    search,
                ],
                check=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
