"""Tasks over the one write path: create, update, read, remind (docs/tasks.md).

Every change is a sequenced ``task.created`` / ``task.updated`` entry of the task's room,
written through ``RoomWrites.append`` like any client write, carrying the whole new
snapshot and its ``version``. The service keeps the projection (``TaskBook``) in memory
and in LMDB (database ``task``), and is a commit observer (name ``tasks``) so that:

* an acknowledged change is in the log (committed before the ack);
* the observer folds each committed entry and writes the changed task records, waiting
  until they are durable, *before* its cursor moves past the entry (the runner writes the
  cursor after ``observe`` returns);
* at start the records are loaded and every room's log after the ``tasks`` cursor is
  folded again, so a kill -9 between a commit and its record loses nothing: the records
  are a cache of the log, the log is the truth.

Reminders and due notices: one timer for all tasks, armed for the earliest unfired time
(``ReminderSchedule``). A fire is a ``task.reminder`` entry written with the idempotency key
``reminder.<task>.<ms>`` (or ``due.<task>.<ms>``) as its client_msg_id; the committed entry
is the "fired" mark (folded into the record, and replayed from the log after a crash), so
a time missed while the server was down fires once at start and never twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from ...auth import Principal
from ...errors import BadRequest, Conflict, Internal, NexusError, NotFound
from ...protocol.requests import RequestId
from ...store.keys import split_room_key
from ..caller import OneWrite
from ..extension_host import ExtensionHost
from ..hooks import CommittedEntry, StartAt
from ..rooms import Room
from .book import TaskBook, TaskState, record_key
from .model import change, new_task, validate
from .schedule import Fire, ReminderSchedule

log = logging.getLogger(__name__)

TASK_KINDS = frozenset({"task.created", "task.updated", "task.reminder"})
COMMAND = "/task "
# A record whose body starts with COMMAND holds these bytes: records are written by orjson
# (or byte for byte like it), which leaves "/" and non-ASCII unescaped. Records without
# them are not parsed at all.
COMMAND_MARK = b'"body":"' + COMMAND.encode()
WRITE_TIMEOUT_S = 30.0
LIST_MAX = 200
TIMER_MAX_S = 3600.0  # re-read the clock at least hourly (clock jumps, suspend)
SERVICE_USER = "nexus.tasks"  # the principal reminders are written as


class TaskListener(Protocol):
    """Hears committed task changes and human messages (the agent runs, extensions/ai)."""

    def task_changed(self, state: TaskState, event: dict[str, Any]) -> None: ...

    def human_message(self, room_key: str, record: dict[str, Any]) -> None: ...

    def hears(self, room_key: str) -> bool:
        """Whether ``human_message`` wants the room's messages now (cheap: per message)."""


def command_title(body: str) -> str | None:
    """The title of a ``/task <title>`` command at the start of a message body, else None."""
    if not body.startswith(COMMAND):
        return None
    title = body[len(COMMAND) :].strip().splitlines()[0].strip() if body.strip() else ""
    return title or None


class TaskService:
    name = "tasks"  # observer name: the key of its durable cursors
    start_at: StartAt = "beginning"
    timeout = 30.0

    def __init__(
        self,
        host: ExtensionHost,
        *,
        clock: Callable[[], float] = time.time,
        notify: Callable[[str, str, bytes], int] | None = None,
    ) -> None:
        self.host = host
        self.book = TaskBook()
        self.schedule = ReminderSchedule()
        self.listeners: list[TaskListener] = []
        # (tenant, user id, payload) -> sessions reached; set in app.py (the gateway's)
        self.notify = notify
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._fires: set[asyncio.Task[None]] = set()
        self._service: dict[str, Principal] = {}
        self.fired = 0  # reminder entries this process wrote

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Load the records, fold the log after the ``tasks`` cursor, arm the timer."""
        store = self.host.store
        for _, raw in store.records("task"):
            state = TaskState.from_json(raw)
            current = self.book.get(state.tenant, state.task["id"])
            if current is None or current.task["version"] < state.task["version"]:
                self.book.load(state)
        cursors = store.cursors(self.name)
        replayed = 0
        for rkey in store.room_keys():
            after = cursors.get(rkey, 0)
            head = store.last_seq(rkey)
            tenant = split_room_key(rkey)[0]
            while after < head:
                records, last = store.read_page(rkey, after, head, 1000)
                if not records:
                    break
                for raw in records:
                    event = orjson.loads(raw)
                    if event.get("type") in TASK_KINDS:
                        replayed += self.book.apply(tenant, rkey, event) is not None
                after = last
        for state in self.book.states():
            self.schedule.set_task(state.task, state.fired)
        if replayed:
            log.info("tasks: %d changes folded from the log past the records", replayed)
        self._arm()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._fires):
            task.cancel()
        with contextlib.suppress(Exception):
            await self._persist()

    # -- the observer ------------------------------------------------------------------
    def wants(self, room_key: str) -> bool:
        return True

    def trimmed(self, room_key: str, first_seq: int) -> None:
        return None  # the records keep the tasks; their history lists only what remains

    async def observe(self, entries: Sequence[CommittedEntry]) -> None:
        rkey: str | None = None
        heard = False  # a listener wants the messages of the room ``rkey``
        for entry in entries:
            kind = entry.kind
            if kind in TASK_KINDS:
                tenant = split_room_key(entry.room_key)[0]
                event = entry.event()
                state = self.book.apply(tenant, entry.room_key, event)
                if state is not None:
                    self._committed(state, event)
            elif kind == "message":
                if entry.room_key != rkey:
                    rkey = entry.room_key
                    heard = any(listener.hears(rkey) for listener in self.listeners)
                if not heard and COMMAND_MARK not in entry.record:
                    continue
                record = entry.event()
                if record.get("sender_kind") != "human" or record.get("deleted"):
                    continue
                title = command_title(str(record.get("body") or ""))
                if title is not None:
                    await self._from_command(entry.room_key, record, title)
                for listener in self.listeners:
                    try:
                        listener.human_message(entry.room_key, record)
                    except Exception:
                        log.exception("task listener failed on a message")
        await self._persist()

    async def _persist(self) -> None:
        """Write the changed records; returns once they are durable."""
        dirty = self.book.take_dirty()
        if dirty:
            ops = [("task", record_key(s.tenant, s.task["id"]), s.to_json()) for s in dirty]
            await self.host.pipeline.submit_meta(ops)  # type: ignore[arg-type]

    async def _from_command(self, rkey: str, record: dict[str, Any], title: str) -> None:
        """``/task <title>``: a task whose source is the message, created as its sender."""
        tenant, name = split_room_key(rkey)
        room = self.host.rooms.find(tenant, name)
        if room is None:
            return
        task_id = "t" + hashlib.sha256(str(record["id"]).encode()).hexdigest()[:15]
        if self.book.latest(tenant, task_id) is not None:
            return  # seen again after a restart: created already
        who = Principal(str(record["sender"]), tenant, frozenset(), kind="human")
        source = {"room": name, "seq": record["seq"], "message_id": record["id"]}
        try:
            await self._create(
                who, room, {"title": title}, task_id, source, f"task.{record['id']}"[:128]
            )
        except NexusError as exc:
            log.warning("task from message %s not created: %s", record.get("id"), exc.message)

    # -- writes ------------------------------------------------------------------------
    def _room_of(self, who: Principal, name: str) -> Room:
        return self.host.access.require_visible(who, self.host.rooms.find(who.tenant, name), name)

    def _state_for(self, who: Principal, task_id: str) -> tuple[dict[str, Any], Room]:
        """The newest snapshot of a task the caller may see, and its room."""
        if not isinstance(task_id, str) or not task_id:
            raise BadRequest("task_id must be a non-empty string")
        task = self.book.latest(who.tenant, task_id)
        if task is None:
            raise NotFound(f"no task {task_id[:64]}")
        room = self.host.rooms.find(who.tenant, task["room"])
        if room is None or not self.host.access.may_see(who, room):
            raise NotFound(f"no task {task_id[:64]}")
        return task, room

    async def create(
        self,
        who: Principal,
        room_name: str,
        params: Mapping[str, Any],
        *,
        client_msg_id: str | None = None,
        source: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a task in room ``room_name``; returns its committed snapshot."""
        room = self._room_of(who, room_name)
        fields = validate(params, creating=True)
        return await self._create(
            who, room, fields, "t" + secrets.token_hex(8), source, client_msg_id
        )

    async def _create(
        self,
        who: Principal,
        room: Room,
        fields: Mapping[str, Any],
        task_id: str,
        source: dict[str, Any] | None,
        client_msg_id: str | None,
    ) -> dict[str, Any]:
        parent = fields.get("parent")
        if parent is not None:
            self._state_for(who, parent)
        task = new_task(
            task_id, room.name, fields, by=who.user_id, now_ms=self._now_ms(), source=source
        )
        return await self._write(who, room, "task.created", task, dict(task), client_msg_id)

    async def update(
        self,
        who: Principal,
        task_id: str,
        params: Mapping[str, Any],
        *,
        expected_version: int | None,
        run: dict[str, Any] | None = None,
        client_msg_id: str | None = None,
    ) -> dict[str, Any]:
        """Change a task. ``expected_version`` (None only for the server's own changes)
        must be the task's current version, else Conflict."""
        current, room = self._state_for(who, task_id)
        if expected_version is not None and expected_version != current["version"]:
            raise Conflict(
                f"task {task_id} is at version {current['version']}, not {expected_version}"
            )
        fields = validate(params, creating=False)
        if fields.get("parent") == task_id:
            raise BadRequest("a task cannot be its own parent")
        if fields.get("parent") is not None:
            self._state_for(who, fields["parent"])
        task, changes = change(current, fields, by=who.user_id, now_ms=self._now_ms(), run=run)
        return await self._write(who, room, "task.updated", task, changes, client_msg_id)

    async def _write(
        self,
        who: Principal,
        room: Room,
        kind: str,
        task: dict[str, Any],
        changes: dict[str, Any],
        client_msg_id: str | None,
    ) -> dict[str, Any]:
        tenant = who.tenant
        self.book.claim(tenant, task)
        reply = OneWrite(who, WRITE_TIMEOUT_S, "the task change")
        try:
            self.host.writes.append(
                reply,
                room,
                kind,
                {
                    "task_id": task["id"],
                    "version": task["version"],
                    "task": task,
                    "changes": changes,
                },
                client_msg_id=client_msg_id,
            )
            ack = await reply.result()
        except BaseException:
            self.book.release(tenant, task["id"], task["version"])
            raise
        self.book.release(tenant, task["id"], task["version"])
        state = self._fold_ack(room, ack)
        if state is None:
            raise Internal("the task change was committed but cannot be read back")
        return state.task

    def _fold_ack(self, room: Room, ack: dict[str, Any]) -> TaskState | None:
        """Fold the committed entry an ack names (ours, or the original of a resend)."""
        raw = self.host.store.read_record(room.key, int(ack["seq"]))
        if raw is None:
            return None
        event = orjson.loads(raw)
        state = self.book.apply(room.tenant, room.key, event)
        if state is not None:
            self._committed(state, event)
            return state
        task_id = event.get("task_id") or (event.get("task") or {}).get("id")
        return self.book.get(room.tenant, str(task_id))

    def _committed(self, state: TaskState, event: dict[str, Any]) -> None:
        """A committed change entered the book (once per process): reschedule, tell."""
        self.schedule.set_task(state.task, state.fired)
        self._arm()
        if event.get("type") == "task.reminder":
            return
        for listener in self.listeners:
            try:
                listener.task_changed(state, event)
            except Exception:
                log.exception("task listener failed")

    # -- reads -------------------------------------------------------------------------
    def get(self, who: Principal, task_id: str) -> dict[str, Any]:
        state = self.book.get(who.tenant, task_id) if isinstance(task_id, str) else None
        if state is None:
            raise NotFound(f"no task {str(task_id)[:64]}")
        room = self.host.rooms.find(who.tenant, state.task["room"])
        if room is None or not self.host.access.may_see(who, room):
            raise NotFound(f"no task {task_id[:64]}")
        return state.task

    def query(
        self,
        who: Principal,
        *,
        room: str | None = None,
        assignee: str | None = None,
        state: str | None = None,
        due_before: int | None = None,
        due_after: int | None = None,
        label: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Tasks the caller may see, newest first, filtered."""
        if room is not None:
            self._room_of(who, room)
        visible: dict[str, bool] = {}
        out = []
        for s in self.book.all(who.tenant):
            t = s.task
            if room is not None and t["room"] != room:
                continue
            if assignee is not None and assignee not in t["assignees"]:
                continue
            if state is not None and t["state"] != state:
                continue
            if label is not None and label not in t["labels"]:
                continue
            due = t.get("due")
            if due_before is not None and (due is None or due >= due_before):
                continue
            if due_after is not None and (due is None or due <= due_after):
                continue
            seen = visible.get(t["room"])
            if seen is None:
                r = self.host.rooms.find(who.tenant, t["room"])
                seen = visible[t["room"]] = r is not None and self.host.access.may_see(who, r)
            if seen:
                out.append(t)
        out.sort(key=lambda t: (t["created_at"], t["id"]), reverse=True)
        return out[: max(1, min(limit, LIST_MAX))]

    def history(self, who: Principal, task_id: str) -> list[dict[str, Any]]:
        """The task's entries in its room log (created, updated, reminders), oldest first."""
        self.get(who, task_id)
        state = self.book.get(who.tenant, task_id)
        assert state is not None
        out = []
        for seq in sorted(state.seqs):
            raw = self.host.store.read_record(state.room_key, seq)
            if raw is not None:
                out.append(orjson.loads(raw))
        return out

    # -- WebSocket requests ------------------------------------------------------------
    async def request(self, who: Principal, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """Answer a ``task.*`` request's fields: a ``task`` or ``tasks`` reply body."""
        control = {
            k: params.pop(k)
            for k in ("room", "task_id", "expected_version", "client_msg_id")
            if k in params
        }
        cmid = control.get("client_msg_id")
        if cmid is not None and (not isinstance(cmid, str) or not 0 < len(cmid) <= 128):
            raise BadRequest("client_msg_id must be a string of 1-128 characters")
        if kind == "task.create":
            room = control.get("room")
            if not isinstance(room, str):
                raise BadRequest("task.create needs a room")
            return {"task": await self.create(who, room, params, client_msg_id=cmid)}
        if kind == "task.update":
            version = control.get("expected_version")
            if not isinstance(version, int) or isinstance(version, bool):
                raise BadRequest("task.update needs expected_version (an integer)")
            task = await self.update(
                who,
                str(control.get("task_id", "")),
                params,
                expected_version=version,
                client_msg_id=cmid,
            )
            return {"task": task}
        if kind == "task.get":
            return {"task": self.get(who, str(control.get("task_id", "")))}
        if kind == "task.list":
            filters = _list_filters(params)
            room = control.get("room")
            if room is not None and not isinstance(room, str):
                raise BadRequest("room must be a string")
            return {"tasks": self.query(who, room=room, **filters)}
        raise BadRequest(f"unknown type: {kind[:64]}")

    # -- reminders ---------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _arm(self) -> None:
        """One timer for every task: at the earliest unfired time."""
        at = self.schedule.next_at()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not running yet: start() arms it
        delay = min(max(0.0, at / 1000 - self._clock()), TIMER_MAX_S)
        self._timer = loop.call_later(delay, self.tick)

    def tick(self) -> list[Fire]:
        """Fire what is due now (called by the timer; tests call it with their clock)."""
        self._timer = None
        fires = self.schedule.due(self._now_ms())
        loop = asyncio.get_running_loop()
        for fire in fires:
            task = loop.create_task(self._fire(fire))
            self._fires.add(task)
            task.add_done_callback(self._fires.discard)
        self._arm()
        return fires

    def _service_principal(self, tenant: str) -> Principal:
        who = self._service.get(tenant)
        if who is None:
            who = self._service[tenant] = Principal(
                SERVICE_USER, tenant, frozenset(), kind="agent", expires_at=float("inf")
            )
        return who

    async def _fire(self, fire: Fire) -> None:
        state = None
        for s in self.book.states():
            if s.task["id"] == fire.task_id:
                state = s
                break
        if state is None:
            self.schedule.release(fire.key)
            return
        tenant, name = split_room_key(state.room_key)
        room = self.host.rooms.find(tenant, name)
        if room is None:
            self.schedule.release(fire.key)
            return
        task = state.task
        reply = OneWrite(self._service_principal(tenant), WRITE_TIMEOUT_S, "the reminder")
        try:
            self.host.writes.append(
                reply,
                room,
                "task.reminder",
                {
                    "task_id": task["id"],
                    "key": fire.key,
                    "kind": fire.kind,
                    "at": fire.at,
                    "title": task["title"],
                    "assignees": task["assignees"],
                    "version": task["version"],
                },
                client_msg_id=fire.key,
            )
            ack = await reply.result()
        except NexusError as exc:
            log.warning("reminder %s not written (%s); trying again in 5 s", fire.key, exc)
            self.schedule.release(fire.key)
            asyncio.get_running_loop().call_later(5.0, self._retry, fire)
            return
        self.schedule.mark_fired(fire.key)
        self._fold_ack(room, ack)
        if ack.get("duplicate"):
            return  # fired before (a resend): its notices went out then
        self.fired += 1
        if self.notify is not None:
            notice = orjson.dumps(
                {"type": "task.notice", "reason": fire.kind, "room": room.name, "task": task}
            )
            for user in task["assignees"]:
                self.notify(tenant, user, notice)

    def _retry(self, fire: Fire) -> None:
        self.schedule.retry(fire)
        self._arm()


def _list_filters(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("assignee", "state", "label"):
        value = params.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise BadRequest(f"{key} must be a string")
            out[key] = value
    for key in ("due_before", "due_after", "limit"):
        value = params.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadRequest(f"{key} must be an integer")
            out[key] = value
    return out


def reply_event(kind: str, rid: RequestId, body: dict[str, Any]) -> bytes:
    """The answer to a ``task.*`` request: ``task`` (one task) or ``task.list``."""
    return orjson.dumps({"type": kind, "id": rid, **body})
