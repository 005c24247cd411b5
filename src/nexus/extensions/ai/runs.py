"""Agents as assignees: a task assigned to an agent starts a *run* with A2A states.

A run is one or more agent turns (``AgentRuntime.run_turn``) whose trigger is the task:
its title and description are the first prompt. Each state change is a ``task.updated``
entry of the task (``run`` in its snapshot), written as the agent:

    submitted -> working -> completed           (the reply is the result)
                         -> input-required      (``ask_user`` was called, or the reply
                              |                  ends with a question)
                              +-> working       (the next human message in the room, or a
                                                 reply_to the question, resumes it)
              -> rejected  (not a room member, over budget, no provider)
    any open state -> failed (provider error) | cancelled (task cancelled or unassigned)

A run open in ``submitted`` or ``working`` when the server stopped is closed as ``failed``
at start (its turn was closed as interrupted by the runtime); ``input-required`` runs
survive restarts (their state is in the task) and resume as before.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ...auth import Principal
from ...core.agents import AgentConfig
from ...core.tasks.book import TaskState
from ...core.tasks.model import RUN_TERMINAL, TERMINAL
from ...core.tasks.service import TaskService
from ...errors import NexusError
from ...store.keys import split_room_key
from .parts import ToolSpec
from .runtime import AGENT_ROLES, AgentRuntime
from .tools import Tool, ToolContext, ToolError

log = logging.getLogger(__name__)

PROMPT = (
    "You are assigned task {id}: {title}\n\n{description}\n\n"
    "Work on it and answer with the result. If you need information from a person, call "
    "ask_user(question) or end your reply with the question."
)


@dataclass
class Run:
    id: str
    tenant: str
    task_id: str
    room_key: str
    agent: str
    turns: int = 0
    message_id: str = ""  # the reply of the turn in flight
    question: str | None = None  # asked with ask_user during the turn in flight
    waiting: bool = False  # input-required
    asked_at: float = 0.0
    question_message_id: str = ""
    chain: asyncio.Task[None] | None = None  # its writes, one after another


class TaskRuns:
    """Listens to task changes (core/tasks) and drives agent turns (the runtime)."""

    def __init__(self, runtime: AgentRuntime, tasks: TaskService) -> None:
        self.runtime = runtime
        self.tasks = tasks
        self.runs: dict[str, Run] = {}  # open runs by id
        self._in_flight: dict[tuple[str, str, str], Run] = {}  # (tenant, agent, room key)

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        """Close runs a stop left working; keep listening for answers to open questions."""
        for state in list(self.tasks.book.states()):
            run = state.task.get("run")
            if not run or run.get("state") in RUN_TERMINAL:
                continue
            r = Run(run["id"], state.tenant, state.task["id"], state.room_key, run["agent"])
            r.turns = int(run.get("turns", 0))
            if run["state"] == "input-required":
                r.waiting = True
                r.question_message_id = str(run.get("question_message_id", ""))
                self.runs[r.id] = r
                continue
            try:
                await self._set(r, "failed", error="the server stopped during the run")
            except NexusError as exc:
                log.warning("run %s could not be closed: %s", r.id, exc.message)

    # -- core.tasks.service.TaskListener ----------------------------------------------
    def task_changed(self, state: TaskState, event: dict[str, Any]) -> None:
        task = state.task
        run = task.get("run") or {}
        open_run = next(
            (r for r in self.runs.values() if r.task_id == task["id"] and r.tenant == state.tenant),
            None,
        )
        if open_run is not None:
            if task["state"] in TERMINAL or open_run.agent not in task["assignees"]:
                self._cancel(open_run, task)
            return
        if task["state"] in TERMINAL:
            return
        for name in task["assignees"]:
            agent = self.runtime.agents.get(state.tenant, name)
            if agent is None:
                continue
            if run and run.get("agent") == name:
                return  # this assignment had its run
            self._start(state, agent, event)
            return

    def hears(self, room_key: str) -> bool:
        return any(r.waiting and r.room_key == room_key for r in self.runs.values())

    def human_message(self, room_key: str, record: dict[str, Any]) -> None:
        waiting = [r for r in self.runs.values() if r.waiting and r.room_key == room_key]
        if not waiting:
            return
        target = next(
            (r for r in waiting if record.get("reply_to") == r.question_message_id), None
        ) or max(waiting, key=lambda r: r.asked_at)
        target.waiting = False
        task = self.tasks.book.get(target.tenant, target.task_id)
        if task is None:
            return
        question = (task.task.get("run") or {}).get("question") or ""
        body = (
            f"{record.get('body', '')}\n\n(This answers your question about task "
            f"{task.task['id']} \u201c{task.task['title']}\u201d: {question})"
        )
        self._turn(target, record, body, str(record.get("id")))

    # -- runs ------------------------------------------------------------------------
    def _principal(self, tenant: str, agent: str) -> Principal:
        return Principal(agent, tenant, AGENT_ROLES, kind="agent", expires_at=float("inf"))

    def _start(self, state: TaskState, agent: AgentConfig, event: dict[str, Any]) -> None:
        run = Run(
            "r" + secrets.token_hex(6), state.tenant, state.task["id"], state.room_key, agent.name
        )
        self.runs[run.id] = run
        task = state.task
        store = self.runtime.host.store

        async def begin() -> None:
            await self._set(run, "submitted", turns=0)
            if store.member(run.room_key, agent.name) is None:
                await self._set(run, "rejected", error=f"{agent.name} is not a member of the room")
                return
            body = PROMPT.format(
                id=task["id"], title=task["title"], description=task.get("description") or ""
            )
            self._turn(
                run,
                {"sender": task["updated_by"], "seq": event.get("seq", 0)},
                body,
                str(event.get("id")),
            )

        self._then(run, begin)

    def _turn(self, run: Run, source: dict[str, Any], body: str, reply_to: str) -> None:
        agent = self.runtime.agents.get(run.tenant, run.agent)
        if agent is None:
            self._then(run, lambda: self._set(run, "failed", error="the agent was deleted"))
            return
        run.turns += 1
        trigger = {
            "type": "message",
            "id": f"run.{run.id}.{run.turns}",
            "reply_to": reply_to,
            "seq": source.get("seq", 0),
            "sender": source.get("sender", "?"),
            "sender_kind": "human",
            "body": body,
        }

        def listener(what: str, details: dict[str, Any]) -> None:
            self._heard(run, what, details)

        self.runtime.run_turn(agent, run.room_key, trigger, listener)

    def _heard(self, run: Run, what: str, details: dict[str, Any]) -> None:
        key = (run.tenant, run.agent, run.room_key)
        if what == "started":
            run.message_id = str(details.get("message_id", ""))
            run.question = None
            self._in_flight[key] = run
            self._then(run, lambda: self._set(run, "working", turns=run.turns))
            return
        if self._in_flight.get(key) is run:
            del self._in_flight[key]
        state = details.get("state", "failed")
        text = str(details.get("text") or "")
        if state == "completed":
            question = run.question or (text.strip() if text.rstrip().endswith("?") else None)
            if question:
                run.waiting = True
                run.asked_at = time.monotonic()
                run.question_message_id = run.message_id
                self._then(
                    run,
                    lambda: self._set(
                        run,
                        "input-required",
                        question=question,
                        question_message_id=run.message_id,
                    ),
                )
                return
            self._then(run, lambda: self._set(run, "completed", result=text))
        else:
            error = details.get("error")
            self._then(run, lambda: self._set(run, state, error=error, result=text or None))

    def _cancel(self, run: Run, task: dict[str, Any]) -> None:
        key = (run.tenant, run.agent, run.room_key)
        if self._in_flight.get(key) is run and run.message_id:
            tenant, name = split_room_key(run.room_key)
            room = self.runtime.host.rooms.find(tenant, name)
            if room is not None:
                try:  # the turn ends as cancelled; its listener closes the run
                    self.runtime.cancel(self._principal(tenant, run.agent), room, run.message_id)
                    return
                except NexusError:
                    pass
        run.waiting = False
        self._then(run, lambda: self._set(run, "cancelled", error=f"task {task['state']}"))

    def _then(self, run: Run, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` after the run's earlier writes: its states are written in order."""
        previous = run.chain

        async def chained() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await step()
            except NexusError as exc:
                log.warning("run %s: %s", run.id, exc.message)

        run.chain = asyncio.get_running_loop().create_task(chained())

    async def _set(self, run: Run, state: str, **fields: Any) -> None:
        """Write the run's new state into its task (a ``task.updated`` entry)."""
        body = {"id": run.id, "agent": run.agent, "state": state, **fields}
        await self.tasks.update(
            self._principal(run.tenant, run.agent),
            run.task_id,
            {},
            expected_version=None,
            run=body,
        )
        if state in RUN_TERMINAL:
            self.runs.pop(run.id, None)

    # -- tools -------------------------------------------------------------------------
    async def ask_user(self, ctx: ToolContext, args: dict[str, Any]) -> str:
        question = args.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ToolError("question must be a non-empty string")
        run = self._in_flight.get((ctx.principal.tenant, ctx.principal.user_id, ctx.room.key))
        if run is None:
            raise ToolError("no task run is in progress here: ask in your reply instead")
        run.question = question.strip()[:2000]
        return "Your question is posted. End your turn now; the answer starts your next turn."

    async def create_task(self, ctx: ToolContext, args: dict[str, Any]) -> str:
        fields = {
            k: v
            for k, v in args.items()
            if k in ("title", "description", "assignees", "due", "labels")
        }
        try:
            task = await self.tasks.create(ctx.principal, ctx.room.name, fields)
        except NexusError as exc:
            raise ToolError(exc.message) from None
        return f"created task {task['id']} (version {task['version']}): {task['title']}"

    def tools(self) -> tuple[Tool, ...]:
        return (
            Tool(
                ToolSpec(
                    "ask_user",
                    "Ask the people in the room a question about the task you are working on; "
                    "the run waits for the answer.",
                    {
                        "type": "object",
                        "properties": {"question": {"type": "string"}},
                        "required": ["question"],
                    },
                ),
                self.ask_user,
            ),
            Tool(
                ToolSpec(
                    "create_task",
                    "Create a task in this room.",
                    {
                        "type": "object",
                        "properties": {
                            "title": {"type": "string"},
                            "description": {"type": "string"},
                            "assignees": {"type": "array", "items": {"type": "string"}},
                            "due": {"type": "integer", "description": "ms since the epoch"},
                            "labels": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["title"],
                    },
                ),
                self.create_task,
            ),
        )


def install_runs(runtime: AgentRuntime, tasks: TaskService) -> TaskRuns:
    """Agents as task assignees: listen to tasks, add the tools, start with the server."""
    runs = TaskRuns(runtime, tasks)
    tasks.listeners.append(runs)
    for tool in runs.tools():
        runtime.tool_registry.add(tool)
    runtime.agents.tools = runtime.tool_registry.names()
    runtime.host.add_service("task-runs", runs.start, lambda: None)
    return runs
