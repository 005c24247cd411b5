"""The task model, pure: field validation, the state machines of tasks and runs, and
applying a change to a task snapshot. No I/O; the service and the tests drive it.

A task is a JSON object (its snapshot). Every change yields the next snapshot with
``version`` + 1; events carry the whole snapshot, so the newest event of a task *is* the
task and a projection only keeps, per task, the event with the highest version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import BadRequest, Conflict

STATES = ("triage", "backlog", "todo", "in_progress", "done", "cancelled")
TERMINAL = frozenset({"done", "cancelled"})

# A2A task states of an agent's run, and where each may go.
RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    "submitted": frozenset({"working", "rejected", "cancelled", "failed"}),
    "working": frozenset({"input-required", "completed", "failed", "cancelled"}),
    "input-required": frozenset({"working", "cancelled", "failed"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
    "rejected": frozenset(),
}
RUN_STATES = tuple(RUN_TRANSITIONS)
RUN_TERMINAL = frozenset(s for s, nxt in RUN_TRANSITIONS.items() if not nxt)

TITLE_MAX = 200
DESCRIPTION_MAX = 4_000
ASSIGNEES_MAX = 20
LABELS_MAX = 20
LABEL_MAX = 64
REMINDERS_MAX = 10
ID_MAX = 128
MS_MAX = 1 << 53  # JSON-safe integers: milliseconds since the epoch

# What a client may set; everything else is the server's (id, version, run, source...).
EDITABLE = ("title", "description", "state", "assignees", "due", "reminders", "parent", "labels")


def _str(value: Any, name: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise BadRequest(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise BadRequest(f"{name} exceeds {limit} characters")
    return value


def _ms(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MS_MAX:
        raise BadRequest(f"{name} must be milliseconds since the epoch")
    return value


def _ids(value: Any, name: str, limit: int, item_max: int) -> list[str]:
    if not isinstance(value, list) or len(value) > limit:
        raise BadRequest(f"{name} must be a list of at most {limit} strings")
    out: list[str] = []
    for item in value:
        out.append(_str(item, name, item_max))
    return list(dict.fromkeys(out))  # order kept, duplicates dropped


def validate(params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """The editable fields of ``params``, checked and normalized. Unknown keys are refused
    so that a typo is not silently ignored."""
    unknown = set(params) - set(EDITABLE)
    if unknown:
        raise BadRequest(f"unknown task field: {sorted(unknown)[0][:64]}")
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key == "title":
            out[key] = _str(value, key, TITLE_MAX)
        elif key == "description":
            out[key] = _str(value, key, DESCRIPTION_MAX, empty=True)
        elif key == "state":
            if value not in STATES:
                raise BadRequest(f"state must be one of {', '.join(STATES)}")
            out[key] = value
        elif key == "assignees":
            out[key] = _ids(value, key, ASSIGNEES_MAX, ID_MAX)
        elif key == "labels":
            out[key] = _ids(value, key, LABELS_MAX, LABEL_MAX)
        elif key == "due":
            out[key] = None if value is None else _ms(value, key)
        elif key == "reminders":
            if not isinstance(value, list) or len(value) > REMINDERS_MAX:
                raise BadRequest(f"reminders must be a list of at most {REMINDERS_MAX} times")
            out[key] = sorted({_ms(v, "reminders[]") for v in value})
        elif key == "parent":
            out[key] = None if value is None else _str(value, key, ID_MAX)
    if creating and "title" not in out:
        raise BadRequest("a task needs a title")
    return out


def new_task(
    task_id: str,
    room: str,
    fields: Mapping[str, Any],
    *,
    by: str,
    now_ms: int,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Version 1 of a task (``fields`` already validated)."""
    state = fields.get("state", "triage")
    if state in TERMINAL:
        raise BadRequest("a task cannot be created done or cancelled")
    return {
        "id": task_id,
        "room": room,
        "title": fields["title"],
        "description": fields.get("description", ""),
        "state": state,
        "assignees": list(fields.get("assignees", [])),
        "due": fields.get("due"),
        "reminders": list(fields.get("reminders", [])),
        "parent": fields.get("parent"),
        "labels": list(fields.get("labels", [])),
        "source": source,
        "run": None,
        "created_by": by,
        "created_at": now_ms,
        "updated_by": by,
        "updated_at": now_ms,
        "version": 1,
    }


def may_transition(current: str, new: str) -> bool:
    """Any state may follow a non-terminal one; nothing follows done or cancelled."""
    return current == new or current not in TERMINAL


def may_run_transition(current: str | None, new: str) -> bool:
    """Within one run; ``current`` None: the run is new (it starts as submitted)."""
    if current is None:
        return new == "submitted"
    if current in RUN_TERMINAL:
        return False
    return new in RUN_TRANSITIONS[current] or new == current


def change(
    task: Mapping[str, Any],
    fields: Mapping[str, Any],
    *,
    by: str,
    now_ms: int,
    run: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(next snapshot, what changed) for ``fields`` (validated) and/or a new ``run``.

    Raises Conflict for a state change out of a terminal state or an invalid run
    transition; a change that changes nothing still yields a new version (the caller
    asked for it, and its expected_version was right)."""
    new = dict(task)
    changes: dict[str, Any] = {}
    state = fields.get("state")
    if state is not None and not may_transition(task["state"], state):
        raise Conflict(f"task {task['id']} is {task['state']}: its state cannot change")
    for key, value in fields.items():
        if new.get(key) != value:
            changes[key] = value
            new[key] = value
    if run is not None:
        old = task.get("run") or {}
        same_run = old.get("id") == run.get("id")
        current = old.get("state") if same_run else None
        if not same_run and old and old.get("state") not in RUN_TERMINAL:
            raise Conflict(f"task {task['id']} has an open run {old.get('id')}")
        if not may_run_transition(current, run["state"]):
            raise Conflict(f"run cannot go from {current} to {run['state']}")
        new["run"] = {**old, **run} if same_run else dict(run)
        changes["run"] = new["run"]
    new["version"] = int(task["version"]) + 1
    new["updated_by"] = by
    new["updated_at"] = now_ms
    return new, changes


def fire_times(task: Mapping[str, Any]) -> list[tuple[int, str, str]]:
    """(fire time ms, idempotency key, kind) of the task's reminders and due notice.

    Keys name the time, not the position: moving a reminder schedules it anew, while a
    time that fired never fires again. A done or cancelled task fires nothing."""
    if task.get("state") in TERMINAL:
        return []
    tid = task["id"]
    out = [(at, f"reminder.{tid}.{at}", "reminder") for at in task.get("reminders") or ()]
    due = task.get("due")
    if due is not None:
        out.append((int(due), f"due.{tid}.{due}", "due"))
    return out
