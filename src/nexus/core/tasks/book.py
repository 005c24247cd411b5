"""The task projection: the current snapshot of every task, folded from ``task.*`` events.

Folding is idempotent and order-tolerant: an event applies only when its version is
higher than the task's, so the same event seen from the write path's ack, the observer and
the start-up replay changes the book once. Changes accepted but not yet committed are
*claims*: validation sees them (two writers cannot both claim version n + 1), reads do
not (nobody sees a change before its commit).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

HISTORY_MAX = 10_000  # event seqs remembered per task (the oldest are dropped)


@dataclass(slots=True)
class TaskState:
    tenant: str
    room_key: str
    task: dict[str, Any]
    fired: list[str] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)  # its events in the room log

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "tenant": self.tenant,
                "room_key": self.room_key,
                "task": self.task,
                "fired": self.fired,
                "seqs": self.seqs,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> TaskState:
        data = orjson.loads(raw)
        return cls(data["tenant"], data["room_key"], data["task"], data["fired"], data["seqs"])


def record_key(tenant: str, task_id: str) -> bytes:
    return f"{tenant}\x1f{task_id}".encode()


class TaskBook:
    def __init__(self) -> None:
        self._tasks: dict[tuple[str, str], TaskState] = {}
        self._claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.dirty: set[tuple[str, str]] = set()  # changed since last persisted

    def __len__(self) -> int:
        return len(self._tasks)

    def load(self, state: TaskState) -> None:
        self._tasks[(state.tenant, state.task["id"])] = state

    def get(self, tenant: str, task_id: str) -> TaskState | None:
        return self._tasks.get((tenant, task_id))

    def all(self, tenant: str) -> Iterator[TaskState]:
        return (s for (t, _), s in self._tasks.items() if t == tenant)

    def states(self) -> Iterator[TaskState]:
        return iter(self._tasks.values())

    # -- claims: accepted, not yet committed -------------------------------------------
    def latest(self, tenant: str, task_id: str) -> dict[str, Any] | None:
        """The snapshot a new change builds on: the newest claim, else the committed one."""
        claim = self._claims.get((tenant, task_id))
        if claim is not None:
            return claim
        state = self._tasks.get((tenant, task_id))
        return None if state is None else state.task

    def claim(self, tenant: str, task: dict[str, Any]) -> None:
        self._claims[(tenant, task["id"])] = task

    def release(self, tenant: str, task_id: str, version: int) -> None:
        """The write of ``version`` is over (committed or refused): drop its claim, unless
        a later change claimed past it meanwhile."""
        claim = self._claims.get((tenant, task_id))
        if claim is not None and claim["version"] <= version:
            del self._claims[(tenant, task_id)]

    # -- folding committed events -------------------------------------------------------
    def apply(self, tenant: str, room_key: str, event: dict[str, Any]) -> TaskState | None:
        """Fold one committed event; the task's state if it changed, else None."""
        kind = event.get("type")
        if kind == "task.reminder":
            state = self._tasks.get((tenant, event.get("task_id", "")))
            key = event.get("key")
            if state is None or not isinstance(key, str) or key in state.fired:
                return None
            state.fired.append(key)
            self._note(state, int(event["seq"]))
            return state
        if kind not in ("task.created", "task.updated"):
            return None
        task = event.get("task")
        if not isinstance(task, dict) or "id" not in task:
            return None
        key2 = (tenant, task["id"])
        state = self._tasks.get(key2)
        if state is not None and state.task["version"] >= task["version"]:
            return None
        if state is None:
            state = self._tasks[key2] = TaskState(tenant, room_key, task)
        else:
            state.task = task
        self._note(state, int(event["seq"]))
        return state

    def _note(self, state: TaskState, seq: int) -> None:
        if seq not in state.seqs:
            state.seqs.append(seq)
            del state.seqs[:-HISTORY_MAX]
        self.dirty.add((state.tenant, state.task["id"]))

    def take_dirty(self) -> list[TaskState]:
        out = [self._tasks[k] for k in self.dirty if k in self._tasks]
        self.dirty.clear()
        return out
