"""Commit observers: committed entries, per room in seq order, at least once, resumable.

Each observer gets its own ``ObserverRunner`` and task, so a slow or failing observer
only delays itself. The pipeline hands every batch to ``Observers.committed`` after the
fan-out (an append per interested observer, nothing awaited). A runner delivers from that
queue while it keeps up; when its queue is full, when it sees a gap, or after a restart,
it reads the room from the log instead, from its cursor. Cursors (last seq handled per
room) are written with the next group commit after each delivered batch, so a crash
redelivers at most the batches whose cursors were not yet durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from ..store.keys import split_room_key
from .hooks import CommitObserver, CommittedEntry

log = logging.getLogger(__name__)

_SEQ = struct.Struct(">Q")
QUEUE_MAX = 10_000  # entries waiting per observer before it reads from the log instead
BATCH_MAX = 256
BACKOFF_MAX = 30.0
STARTED = ""  # the cursor "room" marking that the observer has run before
CURSOR_SAVE_S = 0.1  # how often moved cursors are written (with the next commit)
SAVE_TIMEOUT_S = 5.0  # at stop, for the last cursors to be durable

MetaOp = tuple[str, bytes, bytes | None]


class LogSource(Protocol):
    def room_keys(self) -> list[str]: ...
    def read_page(
        self, rkey: str, after: int, upto: int, limit: int
    ) -> tuple[list[bytes], int]: ...
    def cursors(self, observer: str) -> dict[str, int]: ...


class Committed(Protocol):
    """What the pipeline hands over: a committed entry (``PendingEntry``)."""

    @property
    def seq(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def record(self) -> bytes: ...


def cursor_key(observer: str, rkey: str) -> bytes:
    return f"{observer}\x00{rkey}".encode()


def cursor_value(seq: int) -> bytes:
    return _SEQ.pack(seq)


class ObserverRunner:
    def __init__(
        self,
        observer: CommitObserver,
        source: LogSource,
        head_of: Callable[[str], int],
        write_meta: Callable[[list[MetaOp]], Any],
        *,
        queue_max: int = QUEUE_MAX,
        batch_max: int = BATCH_MAX,
    ) -> None:
        self.observer = observer
        self.name = observer.name
        self._source = source
        self._head_of = head_of  # newest delivered seq of a room
        self._write_meta = write_meta
        self._queue_max = queue_max
        self._batch_max = batch_max
        self._queue: deque[CommittedEntry] = deque()
        self._cursors: dict[str, int] = {}
        self._heads: dict[str, int] = {}  # newest committed seq seen per wanted room
        self._behind: dict[str, None] = {}  # rooms to read from the log, in order
        self._wants: dict[str, bool] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._started_once = False  # its STARTED marker is durable (set by _load)
        self._unsaved: dict[str, int] = {}  # cursors moved since the last write
        self._save: asyncio.TimerHandle | None = None
        self.delivered = 0
        self.errors = 0
        self.from_log = 0

    # -- intake (from the pipeline, on the loop, after fan-out) --------------------------
    def wants(self, rkey: str) -> bool:
        wanted = self._wants.get(rkey)
        if wanted is None:
            try:
                wanted = bool(self.observer.wants(rkey))
            except Exception:
                log.exception("observer %s: wants() failed; not observing %r", self.name, rkey)
                wanted = False
            self._wants[rkey] = wanted
        return wanted

    def offer(self, entries: Iterable[CommittedEntry]) -> None:
        queued = False
        for entry in entries:
            rkey = entry.room_key
            if not self.wants(rkey):
                continue
            self._heads[rkey] = entry.seq
            if rkey not in self._cursors:
                # A room new to this runner: where it starts is fixed now and saved with
                # the next cursors, so a successor (a reload, a restart) starts there too,
                # even if this runner stops before delivering anything of the room.
                self._unsaved[rkey] = self._cursor(rkey, entry.seq)
                self._schedule_save()
            if rkey in self._behind:
                continue  # read from the log in order
            if len(self._queue) >= self._queue_max:
                self._behind[rkey] = None
                continue
            self._queue.append(entry)
            queued = True
        if queued or self._behind:
            self._wake.set()

    def trimmed(self, rkey: str, first_seq: int) -> None:
        """Retention removed the room's entries below ``first_seq``: tell the observer."""
        if not self.wants(rkey):
            return
        if self._cursors.get(rkey, 0) < first_seq - 1:
            self._cursors[rkey] = first_seq - 1
        try:
            self.observer.trimmed(rkey, first_seq)
        except Exception:
            log.exception("observer %s: trimmed() failed", self.name)

    @property
    def lag(self) -> int:
        """Committed entries this observer wants and has not handled yet."""
        return sum(max(0, head - self._cursors.get(rkey, 0)) for rkey, head in self._heads.items())

    # -- running -------------------------------------------------------------
    def start(self) -> None:
        self._load()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"observer:{self.name}"
        )

    async def stop(self) -> None:
        task = self._task
        if task is not None:
            self._stopping = True
            # Cancelled until it ends: on Python 3.11 a wait_for whose inner call has just
            # finished returns its result and drops the cancellation, and the runner would
            # then wait for work forever.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
            self._task = None
        saved = self._save_cursors()
        if asyncio.isfuture(saved):
            with contextlib.suppress(Exception):  # a failed write was logged by the pipeline
                await asyncio.wait_for(saved, SAVE_TIMEOUT_S)

    def _load(self) -> None:
        """Resume from the durable cursors: rooms behind them are read from the log."""
        stored = self._source.cursors(self.name)
        # An observer that keeps its own record of what it applied (a derived store that
        # commits without fsync and may lose its last transactions on a power cut) resumes
        # from whichever is behind: that record or the cursor.
        positions = getattr(self.observer, "positions", None)
        own: dict[str, int] | None = positions() if positions is not None else None
        # "end" means from when the observer first ran: the rooms there were then start at
        # their head, recorded with a marker; a room without a cursor at a later start was
        # created since (maybe just before a crash) and starts at its beginning.
        self._started_once = STARTED in stored
        fresh: list[MetaOp] = []
        if not self._started_once:
            fresh.append(("cursor", cursor_key(self.name, STARTED), cursor_value(0)))
        for rkey in self._source.room_keys():
            if not self.wants(rkey):
                continue
            head = self._head_of(rkey)
            cursor = stored.get(rkey)
            if cursor is None:
                cursor = head if self._from_head else 0
                if cursor:
                    fresh.append(("cursor", cursor_key(self.name, rkey), cursor_value(cursor)))
            if own is not None and own.get(rkey, 0) < cursor:
                cursor = own.get(rkey, 0)
            self._cursors[rkey] = cursor
            self._heads[rkey] = head
            if cursor < head:
                self._behind[rkey] = None
        if fresh:
            self._write_meta(fresh)
        self._started_once = True

    @property
    def _from_head(self) -> bool:
        return self.observer.start_at == "end" and not self._started_once

    def _cursor(self, rkey: str, first_seen: int) -> int:
        cursor = self._cursors.get(rkey)
        if cursor is None:
            # A room created (or first wanted) since the start.
            cursor = first_seen - 1 if self._from_head else 0
            self._cursors[rkey] = cursor
        return cursor

    async def _run(self) -> None:
        while not self._stopping:
            if not self._queue and not self._behind:
                self._wake.clear()
                await self._wake.wait()
            batch, cursors = self._next_batch()
            if batch:
                await self._deliver(batch, cursors)

    def _next_batch(self) -> tuple[list[CommittedEntry], dict[str, int]]:
        """Entries to deliver next, in seq order per room, and the cursors they lead to."""
        batch: list[CommittedEntry] = []
        cursors: dict[str, int] = {}
        queue = self._queue
        while queue and len(batch) < self._batch_max:
            entry = queue.popleft()
            rkey = entry.room_key
            if rkey in self._behind:
                continue
            cursor = cursors.get(rkey)
            if cursor is None:
                cursor = self._cursor(rkey, entry.seq)
            if entry.seq <= cursor:
                continue  # delivered already (from the log)
            if entry.seq != cursor + 1:
                self._behind[rkey] = None  # a gap: the log has what is missing
                continue
            batch.append(entry)
            cursors[rkey] = entry.seq
        if batch or not self._behind:
            return batch, cursors
        rkey = next(iter(self._behind))
        cursor = self._cursor(rkey, 1)
        head = max(self._heads.get(rkey, 0), self._head_of(rkey))
        self._heads[rkey] = head
        records, last = self._source.read_page(rkey, cursor, head, self._batch_max)
        if not records:
            # Caught up (or what was missing was trimmed): live entries flow again.
            del self._behind[rkey]
            if head > cursor:
                cursors[rkey] = head
                self._cursors[rkey] = head
            return batch, cursors
        for record in records:
            entry = CommittedEntry.from_record(rkey, 0, record)
            entry.seq = int(entry.event()["seq"])
            batch.append(entry)
        self.from_log += len(records)
        cursors[rkey] = last
        if last >= head:
            del self._behind[rkey]
        return batch, cursors

    async def _deliver(self, batch: list[CommittedEntry], cursors: dict[str, int]) -> None:
        """Call the observer until it takes the batch (backing off), then move the cursors."""
        delay = 0.05
        while True:
            try:
                await asyncio.wait_for(self.observer.observe(batch), self.observer.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                log.warning(
                    "observer %s failed on %d entries (%r); retrying in %.2fs",
                    self.name,
                    len(batch),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            break
        self.delivered += len(batch)
        self._cursors.update(cursors)
        # Cursors are saved at most every CURSOR_SAVE_S, not per batch: a commit of their
        # own per delivery per observer cost more than the observers' work on the echo
        # path. A crash redelivers what the saved cursor had not reached yet, which
        # at-least-once delivery allows.
        self._unsaved.update(cursors)
        self._schedule_save()

    def _schedule_save(self) -> None:
        if self._save is None:
            self._save = asyncio.get_running_loop().call_later(CURSOR_SAVE_S, self._save_cursors)

    def _save_cursors(self) -> Any:
        """Write the moved cursors (with the next commit); the pipeline's future, or None."""
        if self._save is not None:
            self._save.cancel()
            self._save = None
        if self._unsaved:
            unsaved, self._unsaved = self._unsaved, {}
            return self._write_meta(
                [
                    ("cursor", cursor_key(self.name, rkey), cursor_value(seq))
                    for rkey, seq in unsaved.items()
                ]
            )
        return None


# (room key, newest committed seq) -> None; called on the loop, must not raise or block
Tap = Callable[[str, int], None]


class Observers:
    """Every registered observer; the pipeline's one call after each fan-out.

    Besides the durable observers, *taps* hear that a room moved (its newest seq, once per
    commit batch), live only: nothing is stored, nothing is replayed. A tapper that needs
    the entries reads them from the log after the seq it has seen (MCP subscriptions).
    """

    def __init__(self) -> None:
        self.runners: list[ObserverRunner] = []
        self.active = False  # any observer or tap (read by the pipeline per batch)
        self.started = False  # runners added later (a plugin installed) start at once
        self._taps: dict[str, dict[object, Tap]] = {}

    def __bool__(self) -> bool:
        return self.active

    def add(self, runner: ObserverRunner) -> None:
        if any(r.name == runner.name for r in self.runners):
            raise ValueError(f"observer {runner.name} is registered already")
        self.runners.append(runner)
        self.active = True

    def tap(self, rkey: str, tap: Tap) -> Callable[[], None]:
        """Call ``tap`` after each commit that moves room ``rkey``; returns the untap."""
        token = object()
        self._taps.setdefault(rkey, {})[token] = tap
        self.active = True

        def untap() -> None:
            taps = self._taps.get(rkey)
            if taps is not None:
                taps.pop(token, None)
                if not taps:
                    del self._taps[rkey]
            self.active = bool(self.runners or self._taps)

        return untap

    def committed(self, taken: Sequence[Any]) -> None:
        """Entries of one commit, in seq order per room (``PendingEntry`` objects)."""
        if self.runners:
            entries = [CommittedEntry(p.room.key, p.seq, p.kind, p.record) for p in taken]
            for runner in self.runners:
                runner.offer(entries)
        if self._taps:
            self._tell_taps(taken)

    def _tell_taps(self, taken: Sequence[Any]) -> None:
        heads: dict[str, int] = {}
        taps = self._taps
        for p in taken:
            rkey = p.room.key
            if rkey in taps:
                heads[rkey] = p.seq
        for rkey, seq in heads.items():
            for tap in list(taps.get(rkey, {}).values()):
                try:
                    tap(rkey, seq)
                except Exception:
                    log.exception("room tap failed")

    def trimmed(self, rkey: str, first_seq: int) -> None:
        for runner in self.runners:
            runner.trimmed(rkey, first_seq)

    async def remove(self, name: str) -> None:
        """Stop and drop an observer (its cursors stay: a later one of that name resumes)."""
        runner = next((r for r in self.runners if r.name == name), None)
        if runner is None:
            return
        self.runners = [r for r in self.runners if r is not runner]
        self.active = bool(self.runners or self._taps)
        await runner.stop()

    def start(self) -> None:
        self.started = True
        for runner in self.runners:
            runner.start()

    async def stop(self) -> None:
        self.started = False
        for runner in list(self.runners):
            await runner.stop()


def room_of(rkey: str) -> tuple[str, str]:
    """(tenant, room name) of a room key, for observers that need them."""
    return split_room_key(rkey)
