"""When reminders and due notices fire: one heap of fire times, read with an injected now.

Pure: ``due(now_ms)`` answers what must fire by then; the service owns the one timer
(armed for ``next_at()``) and the writes. A time fires once: it is skipped once marked
fired (its ``task.reminder`` event was committed) or while its write is in flight.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .model import fire_times


@dataclass(frozen=True, slots=True, order=True)
class Fire:
    at: int  # ms since the epoch
    key: str  # idempotency key: the client_msg_id of the task.reminder write
    task_id: str
    kind: str  # "reminder" or "due"


class ReminderSchedule:
    def __init__(self) -> None:
        self._heap: list[Fire] = []
        self._live: dict[str, dict[str, Fire]] = {}  # task id -> key -> fire
        self._fired: set[str] = set()
        self._firing: set[str] = set()

    def set_task(self, task: Mapping[str, Any], fired: Iterable[str] = ()) -> None:
        """(Re)schedule ``task`` from its snapshot; ``fired`` keys never fire again."""
        self._fired.update(fired)
        fires = {
            key: Fire(at, key, task["id"], kind)
            for at, key, kind in fire_times(task)
            if key not in self._fired
        }
        old = self._live.get(task["id"], {})
        for key, fire in fires.items():
            if key not in old:
                heapq.heappush(self._heap, fire)
        self._live[task["id"]] = fires

    def mark_fired(self, key: str) -> None:
        self._fired.add(key)
        self._firing.discard(key)

    def release(self, key: str) -> None:
        """A fire's write failed: it may be tried again."""
        self._firing.discard(key)

    def _valid(self, fire: Fire) -> bool:
        live = self._live.get(fire.task_id, {})
        return live.get(fire.key) == fire and fire.key not in self._fired

    def due(self, now_ms: int) -> list[Fire]:
        """Fires at or before ``now_ms`` not yet fired nor in flight (now in flight)."""
        out: list[Fire] = []
        heap = self._heap
        while heap and heap[0].at <= now_ms:
            fire = heapq.heappop(heap)
            if self._valid(fire) and fire.key not in self._firing:
                self._firing.add(fire.key)
                out.append(fire)
        return out

    def retry(self, fire: Fire) -> None:
        """Put back a fire whose write failed."""
        self.release(fire.key)
        heapq.heappush(self._heap, fire)

    def next_at(self) -> int | None:
        heap = self._heap
        while heap and not self._valid(heap[0]):
            heapq.heappop(heap)
        return heap[0].at if heap else None
