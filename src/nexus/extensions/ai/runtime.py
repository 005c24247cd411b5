"""The agent runtime: answers triggers in rooms by streaming a model's reply into them.

It is a commit observer: it sees every committed human message, decides which agents are
triggered (a mention ``@name``, a direct room, a room the agent answers everything in) and
queues a turn per agent and room — one turn in flight per agent per room, at most
``agent_queue_max`` waiting, the rest refused with an ``agent.notice`` entry.

A turn writes like any client, through the one pipeline:
1. ``message.started`` (logged, idempotent per trigger: a trigger redelivered after a
   restart finds its reply already started and is not answered twice);
2. ``message.delta`` events, NOT logged: the text coalesced every ``agent_delta_interval``
   and fanned out to the room's members, who resume mid-stream with a
   ``message.snapshot`` (core.streams);
3. ``tool.call`` / ``tool.result`` entries for each tool the model uses;
4. ``message.completed`` or ``message.failed`` (logged: full text, finish reason, usage,
   model, latency), which also writes the final text into the ``message.started`` entry.
An open turn is recorded (LMDB ``turn``, with a checkpoint of its text every second);
after a crash the runtime closes such turns as ``interrupted`` with their checkpoint.
A queued trigger is recorded too (``turn`` records under ``QUEUED``, committed no later
than the observer's cursor passes it) until its turn has run, so a restart answers the
triggers that were waiting — once: a trigger already answered finds its reply started.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.trace import NoOpTracer, Tracer

from ..._speedups.framing import frame_text
from ...auth import Principal
from ...config import Settings
from ...core.agents import AgentConfig, AgentRegistry
from ...core.context import RetrievedItem, Summary, TokenCounter, ToolResult, counter_for
from ...core.extension_host import ExtensionHost
from ...core.hooks import CommittedEntry, StartAt
from ...core.rooms import Room
from ...core.streams import LiveReply, LiveStreams
from ...errors import Forbidden, NexusError, NotFound, Unavailable
from ...protocol import events
from ...store.keys import split_room_key, user_key
from .caller import AgentCaller
from .metrics import AgentMetrics
from .parts import (
    ChatRequest,
    Finish,
    StreamError,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from .prompt import chat_messages, prepare, stored_entry
from .provider import Provider
from .summaries import RoomSummaries, SummaryFailed
from .tools import ToolContext, ToolRegistry

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 4
CHECKPOINT_S = 1.0
ARG_MAX_CHARS = 4_000  # of tool arguments shown in a tool.call entry
# A reply longer than this ends with finish_reason "length" (a model's max_output_tokens
# normally comes first; this bounds a broken endpoint). Tool-call arguments past
# CALL_MAX_CHARS fail the turn.
REPLY_MAX_CHARS = 256 * 1024
CALL_MAX_CHARS = 64 * 1024
AGENT_ROLES = frozenset({"agent"})
QUEUED = b"q\x1f"  # prefix of the turn records of triggers waiting for their turn

# Hears how a turn started with ``run_turn`` goes: ("started", {"message_id"}), then
# ("ended", {"state": completed | failed | cancelled | rejected, "text", "error"}).
TurnListener = Callable[[str, dict[str, Any]], None]

# (agent principal, room, trigger text) -> memories for the turn's context
Retriever = Callable[[Principal, Room, str], Awaitable[tuple[RetrievedItem, ...]]]
# (agent, room) -> pinned blocks of the turn's context (e.g. the skills catalog)
PinnedSource = Callable[[AgentConfig, Room], Sequence[str]]
# (room key, human message record) -> True when another extension answers the message
# (a /skill invocation): the runtime does not also answer it as a mention
Claim = Callable[[str, dict[str, Any]], bool]


@dataclass
class TurnQueue:
    waiting: deque[tuple[dict[str, Any], bytes]] = field(default_factory=deque)  # trigger, key
    worker: asyncio.Task[None] | None = None


@dataclass
class Outcome:
    reason: str = "stop"
    error: StreamError | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    ttft: float | None = None
    chars: int = 0  # reply text so far


class Turn:
    """One reply of one agent in one room."""

    def __init__(
        self, runtime: AgentRuntime, agent: AgentConfig, room: Room, trigger: dict[str, Any]
    ) -> None:
        self.runtime = runtime
        self.agent = agent
        self.room = room
        self.trigger = trigger
        self.message_id = ""
        self.started_seq = 0
        self.model = ""
        self.live: LiveReply | None = None
        self.ending = False  # the final entry is being written
        self.task: asyncio.Task[None] | None = None
        self.cancelled_by: str | None = None
        self._pending = ""
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_checkpoint = 0.0

    # -- streaming text ---------------------------------------------------------
    def emit(self, text: str) -> None:
        """Queue reply text; it goes out in one delta per ``agent_delta_interval``."""
        self._pending += text
        interval = self.runtime.settings.agent_delta_interval
        if interval <= 0:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(interval, self.flush)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending or self.live is None:
            return
        event = self.runtime.streams.delta(self.live, self._pending)
        self._pending = ""
        self.runtime.host.router.broadcast(self.room.key, frame_text(event))
        now = time.monotonic()
        if now - self._last_checkpoint >= CHECKPOINT_S:
            self._last_checkpoint = now
            self.runtime.checkpoint(self)

    @property
    def text(self) -> str:
        return (self.live.text if self.live is not None else "") + self._pending


class AgentRuntime:
    name = "agents"
    start_at: StartAt = "end"  # a newly started runtime answers what comes, not the past
    timeout = 60.0

    def __init__(
        self,
        host: ExtensionHost,
        agents: AgentRegistry,
        providers: dict[str, Provider],
        tools: ToolRegistry,
        streams: LiveStreams,
        tracer: Tracer | None = None,
        metrics: AgentMetrics | None = None,
        retriever: Retriever | None = None,
    ) -> None:
        self.host = host
        self.retriever = retriever  # memories relevant to a trigger, for its context
        self.settings: Settings = host.settings
        self.agents = agents
        self.providers = providers
        self.tool_registry = tools
        self.streams = streams
        self.metrics = metrics or AgentMetrics()
        self._tracer = tracer or NoOpTracer()
        self._queues: dict[tuple[str, str, str], TurnQueue] = {}
        self._turns: dict[str, Turn] = {}  # reply message id -> turn in progress
        self._listeners: dict[str, TurnListener] = {}  # trigger id -> run_turn's listener
        self._callers: dict[tuple[str, str], AgentCaller] = {}
        self._usage: dict[bytes, dict[str, int]] = {}
        self._mention: dict[str, re.Pattern[str]] = {}
        self._counters: dict[str, TokenCounter] = {}
        self.summaries = RoomSummaries(host, horizon=self.settings.agent_history_max)
        self.pinned: list[PinnedSource] = []  # extensions add theirs (skills: the catalog)
        self.claims: list[Claim] = []  # extensions add theirs (skills: /skill-name)
        agents.providers = set(providers)
        agents.tools = tools.names()

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Close the turns a crash left open (as ``interrupted``, with their checkpoint),
        then queue again the triggers that were waiting."""
        queued: list[tuple[bytes, dict[str, Any]]] = []
        for key, raw in self.host.store.records("turn"):
            if key.startswith(QUEUED):
                queued.append((key, orjson.loads(raw)))
                continue
            turn = orjson.loads(raw)
            try:
                await self._close_interrupted(turn)
            except NexusError as exc:
                log.error("could not close interrupted turn %s: %s", turn, exc)
            await self.host.pipeline.submit_meta([("turn", key, None)])
        for key, waiting in queued:
            agent = self.agents.get(waiting["tenant"], waiting["agent"])
            if agent is None:
                self.host.pipeline.submit_meta([("turn", key, None)])
                continue
            self._enqueue(agent, waiting["room_key"], waiting["record"], key)

    async def stop(self) -> None:
        """Shutdown: running turns end as ``interrupted`` (their text so far is kept)."""
        for turn in list(self._turns.values()):
            if turn.task is not None and not turn.ending:
                turn.cancelled_by = ""  # not a person: the server is going down
                turn.task.cancel()
        tasks = [t.task for t in self._turns.values() if t.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        for queue in self._queues.values():
            if queue.worker is not None:
                queue.worker.cancel()

    # -- the observer -------------------------------------------------------------
    def wants(self, room_key: str) -> bool:
        return True

    def trimmed(self, room_key: str, first_seq: int) -> None:
        return None

    async def observe(self, entries: Sequence[CommittedEntry]) -> None:
        rkey: str | None = None
        present: list[AgentConfig] = []
        for entry in entries:
            if entry.kind != "message":
                continue
            if entry.room_key != rkey:
                rkey = entry.room_key
                present = self._present(rkey)
            if not present:
                continue  # no agent in the room: the record is not even parsed
            record = entry.event()
            if record.get("sender_kind") != "human":
                continue  # agents do not trigger agents: no loops
            if self.claims and any(claim(rkey, record) for claim in self.claims):
                continue
            for agent in present:
                if self._triggered(agent, rkey, record):
                    self._enqueue(agent, rkey, record)

    def _present(self, rkey: str) -> list[AgentConfig]:
        """The tenant's agents that are members of the room."""
        agents = self.agents.of_tenant(split_room_key(rkey)[0])
        if not agents:
            return agents
        member = self.host.store.member
        return [a for a in agents if member(rkey, a.name) is not None]

    def _triggered(self, agent: AgentConfig, rkey: str, record: dict[str, Any]) -> bool:
        """Whether a human's message in a room the agent is a member of starts a turn."""
        room_name = split_room_key(rkey)[1]
        if room_name in agent.triggers.rooms:
            return True
        if agent.triggers.mention and self._mentions(agent.name).search(record.get("body", "")):
            return True
        if agent.triggers.direct:
            members = self.host.store.members(rkey, None, 3)
            names = {m["user_id"] for m in members}
            if len(members) == 2 and names == {agent.name, record.get("sender")}:
                return True
        return False

    def _mentions(self, name: str) -> re.Pattern[str]:
        pattern = self._mention.get(name)
        if pattern is None:
            pattern = re.compile(rf"(?<![\w@]){re.escape('@' + name)}(?![\w.:+@-])")
            self._mention[name] = pattern
        return pattern

    def _enqueue(
        self,
        agent: AgentConfig,
        rkey: str,
        record: dict[str, Any],
        stored: bytes | None = None,
    ) -> None:
        key = (agent.tenant, agent.name, rkey)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = TurnQueue()
        if len(queue.waiting) >= self.settings.agent_queue_max:
            self.metrics.refused[(agent.name, "busy")] += 1
            asyncio.get_running_loop().create_task(
                self._notice(
                    agent,
                    rkey,
                    "busy",
                    f"{agent.name} is busy in this room; "
                    f"message #{record.get('seq')} was not answered",
                )
            )
            return
        if stored is None:  # a room message: recorded until answered
            stored = QUEUED + f"{agent.tenant}\x1f{agent.name}\x1f{rkey}\x1f".encode()
            stored += b"%020d" % int(record.get("seq", 0))
            # Submitted before observe() returns, so committed with or before the cursor.
            self.host.pipeline.submit_meta(
                [
                    (
                        "turn",
                        stored,
                        orjson.dumps(
                            {
                                "tenant": agent.tenant,
                                "agent": agent.name,
                                "room_key": rkey,
                                "record": record,
                            }
                        ),
                    )
                ]
            )
        queue.waiting.append((record, stored))
        if queue.worker is None or queue.worker.done():
            queue.worker = asyncio.get_running_loop().create_task(self._work(key, queue))

    async def _work(self, key: tuple[str, str, str], queue: TurnQueue) -> None:
        tenant, name, rkey = key
        try:
            while queue.waiting:
                record, stored = queue.waiting.popleft()
                agent = self.agents.get(tenant, name)
                room = self.host.rooms.find(tenant, split_room_key(rkey)[1])
                if agent is None or room is None:
                    self._forget_queued(stored)
                    self._tell(record, "ended", state="rejected", error="agent or room is gone")
                    continue
                turn = Turn(self, agent, room, record)
                turn.task = asyncio.get_running_loop().create_task(self._run(turn))
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(turn.task)
                self._forget_queued(stored)  # answered, refused or failed: not again
                if not queue.waiting and turn.message_id:
                    # Between turns, never ahead of one: summaries are for the next prompt.
                    await self._summarize(agent, room)
        finally:
            if not queue.waiting and self._queues.get(key) is queue:
                del self._queues[key]

    def _forget_queued(self, stored: bytes) -> None:
        if stored:
            self.host.pipeline.submit_meta([("turn", stored, None)])

    # -- turns for other triggers (task runs: extensions/ai/runs.py) -----------------
    def run_turn(
        self, agent: AgentConfig, room_key: str, trigger: dict[str, Any], listener: TurnListener
    ) -> None:
        """Queue a turn whose trigger is not a room message (``trigger`` looks like one:
        ``id`` unique per turn, ``body``, ``sender``, ``seq``, optional ``reply_to``)."""
        self._listeners[str(trigger["id"])] = listener
        # Not recorded for a restart: the task service closes or resumes its runs itself.
        self._enqueue(agent, room_key, trigger, b"")

    def _tell(self, trigger: dict[str, Any], what: str, **details: Any) -> None:
        key = str(trigger.get("id"))
        listener = self._listeners.get(key)
        if listener is None:
            return
        if what == "ended":
            del self._listeners[key]
        try:
            listener(what, details)
        except Exception:
            log.exception("turn listener failed")

    # -- a turn -------------------------------------------------------------------
    def caller(self, agent: AgentConfig) -> AgentCaller:
        key = (agent.tenant, agent.name)
        caller = self._callers.get(key)
        if caller is None:
            principal = Principal(
                agent.name, agent.tenant, AGENT_ROLES, kind="agent", expires_at=float("inf")
            )
            caller = self._callers[key] = AgentCaller(principal)
        return caller

    async def _run(self, turn: Turn) -> None:
        agent, room = turn.agent, turn.room
        provider = self.providers.get(agent.provider)
        if provider is None:
            await self._notice(
                agent, room.key, "provider", f"provider {agent.provider} is not configured"
            )
            self._tell(turn.trigger, "ended", state="rejected", error="no such provider")
            return
        if agent.daily_token_budget and self.used_today(agent) >= agent.daily_token_budget:
            self.metrics.refused[(agent.name, "budget")] += 1
            await self._notice(
                agent,
                room.key,
                "budget",
                f"{agent.name} has used its daily budget of {agent.daily_token_budget} tokens",
            )
            self._tell(turn.trigger, "ended", state="rejected", error="over its daily budget")
            return
        caller = self.caller(agent)
        model = turn.model = self.model_of(agent, provider)
        trigger_id = str(turn.trigger["id"])
        with self._tracer.start_as_current_span(
            "nexus.agent.turn", attributes={"nexus.agent": agent.name, "nexus.model": model}
        ):
            try:
                ack = await caller.write(
                    lambda rid: self.host.writes.append(
                        caller,
                        room,
                        "message.started",
                        {
                            "state": "streaming",
                            "reply_to": turn.trigger.get("reply_to") or trigger_id,
                            "trigger_seq": turn.trigger.get("seq"),
                            "model": model,
                            "provider": agent.provider,
                        },
                        client_msg_id=f"turn.{trigger_id}",
                        rid=rid,
                    )
                )
            except NexusError as exc:
                log.warning("agent %s could not start a reply: %s", agent.name, exc.message)
                self._tell(turn.trigger, "ended", state="failed", error=exc.message)
                return
            if ack.get("duplicate"):
                self._tell(turn.trigger, "ended", state="failed", error="answered before")
                return  # answered (or being answered) before a restart
            turn.message_id, turn.started_seq = ack["message_id"], ack["seq"]
            await self._converse(turn, provider, model)

    async def _converse(self, turn: Turn, provider: Provider, model: str) -> None:
        agent, room = turn.agent, turn.room
        self._turns[turn.message_id] = turn
        self._tell(turn.trigger, "started", message_id=turn.message_id)
        self.metrics.running += 1
        turn.live = self.streams.start(room.key, room.name, turn.message_id, agent.name)
        self._record_turn(turn)
        self._typing(turn, True)
        started = time.monotonic()
        outcome = Outcome()
        try:
            async with asyncio.timeout(self.settings.agent_turn_timeout):
                await self._rounds(turn, provider, model, outcome, started)
        except asyncio.CancelledError:
            outcome.reason = "cancelled" if turn.cancelled_by else "interrupted"
        except TimeoutError:
            outcome.reason = "error"
            outcome.error = StreamError(
                "timeout", f"the turn took longer than {self.settings.agent_turn_timeout:g} s"
            )
        except Exception as exc:  # a bug must not leave the reply open
            log.exception("agent turn failed")
            outcome.reason = "error"
            outcome.error = StreamError("stream", f"internal error: {exc!r}")
        finally:
            turn.flush()
            self.metrics.running -= 1
            # Past this point the reply is ending: no cancel to accept, nothing to interrupt.
            turn.ending = True
        try:
            await self._finish(turn, model, outcome, time.monotonic() - started)
        finally:
            self._tell(turn.trigger, "ended", state="failed", error="the reply did not end")
            self._typing(turn, False)
            self._turns.pop(turn.message_id, None)
            if turn.live is not None:
                self.streams.end(turn.live)

    async def _rounds(
        self, turn: Turn, provider: Provider, model: str, outcome: Outcome, started: float
    ) -> None:
        agent, room = turn.agent, turn.room
        tracer = self._tracer
        counter = await self.counter(model)
        with tracer.start_as_current_span("nexus.agent.context"):
            log = [
                stored_entry(r)
                for r in self.host.writes.history(
                    room, before=turn.started_seq, limit=self.settings.agent_history_max
                )[0]
            ]
            summaries = self.summaries.of(agent, room)
            retrieved = await self._retrieve(agent, room, turn.trigger)
        turn_tools = self.tool_registry.for_turn(agent, room)
        specs = turn_tools.specs
        pinned = tuple(block for source in self.pinned for block in source(agent, room))
        caller = self.caller(agent)
        results: list[ToolResult] = []
        for round_no in range(MAX_TOOL_ROUNDS + 1):
            with tracer.start_as_current_span(
                "nexus.agent.context", attributes={"nexus.round": round_no}
            ) as span:
                assembly = prepare(
                    agent,
                    counter,
                    log,
                    turn.trigger,
                    summaries=summaries,
                    tool_results=results,
                    room=room.name,
                    retrieved=retrieved,
                    pinned=pinned,
                )
                span.set_attribute("nexus.context.tokens", assembly.trace.used)
            request = ChatRequest(
                model=model,
                messages=chat_messages(assembly.messages),
                max_tokens=agent.max_output_tokens,
                tools=specs if round_no < MAX_TOOL_ROUNDS else (),
            )
            calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
            usage: Usage | None = None  # a provider may report it more than once: last wins
            stream = provider.stream(request)
            with tracer.start_as_current_span(
                "nexus.agent.provider",
                attributes={"nexus.provider": agent.provider, "nexus.round": round_no},
            ) as span:
                try:
                    async for part in stream:
                        if isinstance(part, TextDelta):
                            if outcome.ttft is None:
                                outcome.ttft = time.monotonic() - started
                                self.metrics.ttft.observe(outcome.ttft)
                                span.add_event("first token")
                            room_left = REPLY_MAX_CHARS - outcome.chars
                            outcome.chars += len(part.text)
                            if outcome.chars > REPLY_MAX_CHARS:
                                turn.emit(part.text[:room_left])
                                outcome.reason = "length"
                                break  # the finally below closes the upstream response
                            turn.emit(part.text)
                        elif isinstance(part, ToolCallDelta):
                            piece = calls.setdefault(part.index, ["", "", ""])
                            piece[0] = part.id or piece[0]
                            piece[1] = part.name or piece[1]
                            piece[2] += part.arguments
                            if len(piece[2]) > CALL_MAX_CHARS:
                                outcome.reason = "interrupted" if turn.text else "error"
                                outcome.error = StreamError(
                                    "protocol",
                                    f"tool call arguments over {CALL_MAX_CHARS} characters",
                                )
                                break
                        elif isinstance(part, Usage):
                            usage = part
                        elif isinstance(part, Finish):
                            outcome.reason = part.reason
                        elif isinstance(part, StreamError):
                            # Before the first delta the provider policy retried and fell
                            # back already; after it the reply is cut off mid-way.
                            started_reply = bool(turn.text) or bool(results)
                            outcome.reason = "interrupted" if started_reply else "error"
                            outcome.error = part
                            self.metrics.provider_errors[(agent.provider, part.kind)] += 1
                            span.set_attribute("nexus.error", part.kind)
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]
                    if usage is not None:
                        outcome.input_tokens += usage.input_tokens
                        outcome.output_tokens += usage.output_tokens
                    elif outcome.error is None:  # cancelled, or a provider that never
                        outcome.input_tokens += assembly.trace.prompt_tokens  # says: ours
                span.set_attribute("nexus.finish_reason", outcome.reason)
            if outcome.error is not None or outcome.reason != "tool_calls" or not calls:
                return
            tool_calls = tuple(
                ToolCall(c[0] or f"call_{round_no}_{i}", c[1], c[2])
                for i, c in sorted(calls.items())
            )
            for call in tool_calls:
                ctx = ToolContext(
                    self.host, caller.principal, caller, room, agent, turn.message_id, call.id
                )
                with tracer.start_as_current_span(
                    "nexus.agent.tool", attributes={"nexus.tool": call.name}
                ) as span:
                    await self._tool_event(
                        turn,
                        "tool.call",
                        {
                            "message_id": turn.message_id,
                            "call_id": call.id,
                            "name": call.name,
                            "arguments": call.arguments[:ARG_MAX_CHARS],
                        },
                    )
                    result, ok = await self.tool_registry.call(
                        ctx, call.name, call.arguments, turn_tools
                    )
                    span.set_attribute("nexus.tool.ok", ok)
                    self.metrics.tool_calls[(call.name, "ok" if ok else "error")] += 1
                    await self._tool_event(
                        turn,
                        "tool.result",
                        {
                            "message_id": turn.message_id,
                            "call_id": call.id,
                            "name": call.name,
                            "ok": ok,
                            "result": result,
                        },
                    )
                results.append(ToolResult(call.id, call.name, result, call.arguments, round_no))
        outcome.reason = "length"  # tool rounds exhausted

    async def counter(self, model: str) -> TokenCounter:
        """The token counter of ``model`` (its encoding is loaded once, off the loop)."""
        counter = self._counters.get(model)
        if counter is None:
            counter = self._counters[model] = await asyncio.to_thread(counter_for, model)
        return counter

    async def _summarize(self, agent: AgentConfig, room: Room) -> None:
        """Write the rolling summaries due in ``room`` with the agent's provider."""
        provider = self.providers.get(agent.provider)
        if provider is None:
            return
        if agent.daily_token_budget and self.used_today(agent) >= agent.daily_token_budget:
            return
        model = self.model_of(agent, provider)
        counter = await self.counter(model)
        count = self._summary_usage(agent, model)
        with self._tracer.start_as_current_span(
            "nexus.agent.summary", attributes={"nexus.agent": agent.name}
        ):
            try:
                new = await self.summaries.catch_up(agent, room, provider, model, counter, count)
            except (SummaryFailed, ValueError, NexusError) as exc:
                log.warning("summary for %s in %s not written: %s", agent.name, room.name, exc)
                return
        self.metrics.summaries[agent.name] += len(new)

    async def _retrieve(
        self, agent: AgentConfig, room: Room, trigger: dict[str, Any]
    ) -> tuple[RetrievedItem, ...]:
        """Memories relevant to the trigger's text (none without a retriever); a failure
        costs the turn its memories, never the turn."""
        text = str(trigger.get("body") or trigger.get("text") or "")
        if self.retriever is None or not text:
            return ()
        try:
            return await self.retriever(self.caller(agent).principal, room, text)
        except Exception:
            log.exception("memory retrieval for %s in %s failed", agent.name, room.name)
            return ()

    def _summary_usage(self, agent: AgentConfig, model: str) -> Callable[[int, int], None]:
        """Where a summary's tokens go: the usage ledger (no turn) and the token metrics."""

        def count(tokens_in: int, tokens_out: int) -> None:
            self._count_usage(agent, model, tokens_in, tokens_out, turn=False)
            self.metrics.tokens_in[(agent.name, model)] += tokens_in
            self.metrics.tokens_out[(agent.name, model)] += tokens_out

        return count

    @staticmethod
    def model_of(agent: AgentConfig, provider: Provider | None) -> str:
        return agent.model or getattr(provider, "model", "") or agent.provider

    async def _tool_event(self, turn: Turn, kind: str, fields: dict[str, Any]) -> None:
        caller = self.caller(turn.agent)
        await caller.write(
            lambda rid: self.host.writes.append(caller, turn.room, kind, fields, rid=rid)
        )

    async def _finish(self, turn: Turn, model: str, outcome: Outcome, seconds: float) -> None:
        agent = turn.agent
        text = turn.text
        if not outcome.output_tokens and text:
            outcome.output_tokens = len(text) // 4 + 1  # the provider said nothing
        failed = outcome.reason in ("error", "interrupted")
        state = {
            "stop": "completed",
            "length": "completed",
            "tool_calls": "completed",
            "content_filter": "completed",
        }.get(outcome.reason, outcome.reason)
        usage = {"input_tokens": outcome.input_tokens, "output_tokens": outcome.output_tokens}
        fields: dict[str, Any] = {
            "message_id": turn.message_id,
            "text": text,
            "finish_reason": outcome.reason,
            "usage": usage,
            "model": model,
            "provider": agent.provider,
            "latency_ms": int(seconds * 1000),
            "ttft_ms": None if outcome.ttft is None else int(outcome.ttft * 1000),
        }
        if outcome.error is not None:
            fields["error"] = {"kind": outcome.error.kind, "message": outcome.error.message}
        elif outcome.reason == "interrupted":  # shut down mid-reply: as after a crash
            fields["error"] = {"kind": "interrupted", "message": "the server stopped mid-reply"}
        if outcome.reason == "cancelled":
            fields["cancelled_by"] = turn.cancelled_by
            self.metrics.cancellations[agent.name] += 1
        caller = self.caller(agent)
        await caller.write(
            lambda rid: self.host.writes.append(
                caller,
                turn.room,
                "message.failed" if failed else "message.completed",
                fields,
                client_msg_id=f"end.{turn.message_id}",
                rid=rid,
                patch=(
                    turn.started_seq,
                    {"state": state, "text": text, "finish_reason": outcome.reason, "usage": usage},
                ),
            )
        )
        label = "interrupted" if outcome.reason == "interrupted" else "failed" if failed else state
        self.metrics.turns[(agent.name, label)] += 1
        self.metrics.turn_seconds.observe(seconds)
        self.metrics.tokens_in[(agent.name, model)] += outcome.input_tokens
        self.metrics.tokens_out[(agent.name, model)] += outcome.output_tokens
        self._count_usage(agent, model, outcome.input_tokens, outcome.output_tokens)
        await self.host.pipeline.submit_meta([("turn", turn.message_id.encode(), None)])
        self._tell(
            turn.trigger,
            "ended",
            state="failed" if failed else state,
            text=text,
            message_id=turn.message_id,
            error=fields.get("error", {}).get("message"),
        )

    async def _close_interrupted(self, turn: dict[str, Any]) -> None:
        agent = self.agents.get(turn["tenant"], turn["agent"])
        room = self.host.rooms.find(turn["tenant"], turn["room"])
        if agent is None or room is None:
            return
        caller = self.caller(agent)
        text = turn.get("text", "")
        model = turn.get("model", "")
        output_tokens = len(text) // 4 + 1 if text else 0  # the provider's count died with it
        await caller.write(
            lambda rid: self.host.writes.append(
                caller,
                room,
                "message.failed",
                {
                    "message_id": turn["message_id"],
                    "text": text,
                    "finish_reason": "interrupted",
                    "usage": {"input_tokens": 0, "output_tokens": output_tokens},
                    "model": model,
                    "provider": agent.provider,
                    "error": {"kind": "interrupted", "message": "the server stopped mid-reply"},
                },
                client_msg_id=f"end.{turn['message_id']}",
                rid=rid,
                patch=(
                    turn["started_seq"],
                    {"state": "interrupted", "text": text, "finish_reason": "interrupted"},
                ),
            )
        )
        self.metrics.turns[(agent.name, "interrupted")] += 1
        self._count_usage(agent, model, 0, output_tokens)

    def _record_turn(self, turn: Turn) -> None:
        self.host.pipeline.submit_meta(
            [
                (
                    "turn",
                    turn.message_id.encode(),
                    orjson.dumps(
                        {
                            "tenant": turn.agent.tenant,
                            "agent": turn.agent.name,
                            "room": turn.room.name,
                            "message_id": turn.message_id,
                            "started_seq": turn.started_seq,
                            "model": turn.model,
                            "text": turn.text,
                        }
                    ),
                )
            ]
        )

    def checkpoint(self, turn: Turn) -> None:
        """Keep the text so far durable (with the next commit), for a crash."""
        if turn.message_id in self._turns and not turn.ending:
            self._record_turn(turn)

    def _typing(self, turn: Turn, active: bool) -> None:
        agent, room = turn.agent, turn.room
        # An agent is present from its first turn in a room on (counted once: it has no
        # sessions to come and go); typing shows while a reply streams.
        if active and agent.name not in room.presence and room.add_presence(agent.name, "agent"):
            self.host.router.broadcast(
                room.key, frame_text(events.presence(room.name, agent.name, "agent", "join"))
            )
        self.host.router.broadcast(
            room.key, frame_text(events.typing(room.name, agent.name, "agent", active))
        )

    async def _notice(self, agent: AgentConfig, rkey: str, reason: str, message: str) -> None:
        room = self.host.rooms.find(agent.tenant, split_room_key(rkey)[1])
        if room is None:
            return
        caller = self.caller(agent)
        try:
            await caller.write(
                lambda rid: self.host.writes.append(
                    caller,
                    room,
                    "agent.notice",
                    {"agent": agent.name, "reason": reason, "message": message},
                    rid=rid,
                )
            )
        except NexusError as exc:
            log.warning("agent notice not written: %s", exc.message)

    # -- usage ---------------------------------------------------------------------
    @staticmethod
    def _day(ts: float | None = None) -> str:
        return dt.datetime.fromtimestamp(ts if ts is not None else time.time(), dt.UTC).strftime(
            "%Y-%m-%d"
        )

    def _usage_key(self, tenant: str, day: str, agent: str, model: str) -> bytes:
        return f"{tenant}\x1f{day}\x1f{agent}\x1f{model}".encode()

    def _count_usage(
        self, agent: AgentConfig, model: str, tokens_in: int, tokens_out: int, turn: bool = True
    ) -> None:
        """Add to the day's ledger (``turn``: a reply; else a summary, tokens only)."""
        key = self._usage_key(agent.tenant, self._day(), agent.name, model)
        record = self._usage.get(key)
        if record is None:
            raw = self.host.store.record("usage", key)
            record = (
                orjson.loads(raw) if raw else {"input_tokens": 0, "output_tokens": 0, "turns": 0}
            )
            self._usage[key] = record
        record["input_tokens"] += tokens_in
        record["output_tokens"] += tokens_out
        record["turns"] += turn
        self.host.pipeline.submit_meta([("usage", key, orjson.dumps(record))])

    def used_today(self, agent: AgentConfig) -> int:
        prefix = f"{agent.tenant}\x1f{self._day()}\x1f{agent.name}\x1f".encode()
        total = 0
        for key, raw in self.host.store.records("usage", prefix):
            record = self._usage.get(key) or orjson.loads(raw)
            total += record["input_tokens"] + record["output_tokens"]
        for key, record in self._usage.items():  # not yet committed
            if key.startswith(prefix) and self.host.store.record("usage", key) is None:
                total += record["input_tokens"] + record["output_tokens"]
        return total

    # -- core.agent_control.AgentControl ----------------------------------------------
    def cancel(self, principal: Principal, room: Room, message_id: str) -> None:
        turn = self._turns.get(message_id)
        if turn is None or turn.room.key != room.key or turn.task is None or turn.ending:
            raise NotFound(f"no reply {message_id} is streaming in room {room.name}")
        if principal.tenant != room.tenant:
            raise Forbidden("not your tenant's room")
        turn.cancelled_by = principal.user_id
        turn.task.cancel()

    async def context_trace(self, principal: Principal, room: Room, agent: str) -> dict[str, Any]:
        config = self.agents.require(principal.tenant, agent)
        model = self.model_of(config, self.providers.get(config.provider))
        counter = await self.counter(model)
        raw = self.host.writes.history(room, limit=self.settings.agent_history_max)[0]
        current = orjson.loads(raw[-1]) if raw else {}
        if current.get("type") != "message":
            current = {
                "type": "message",
                "seq": room.delivered + 1,
                "sender": principal.user_id,
                "body": "(the next message)",
            }
        assembly = prepare(
            config,
            counter,
            [stored_entry(r) for r in raw],
            current,
            summaries=self.summaries.of(config, room),
            room=room.name,
            retrieved=await self._retrieve(config, room, current),
            pinned=tuple(block for source in self.pinned for block in source(config, room)),
        )
        return {
            "agent": agent,
            "room": room.name,
            "model": model,
            "messages": [m.as_dict() for m in assembly.messages],
            "trace": assembly.trace.as_dict(),
        }

    def room_summaries(self, principal: Principal, room: Room, agent: str) -> list[dict[str, Any]]:
        config = self.agents.require(principal.tenant, agent)
        return [_summary_view(s) for s in self.summaries.of(config, room)]

    async def rebuild_summaries(
        self, principal: Principal, room: Room, agent: str
    ) -> list[dict[str, Any]]:
        config = self.agents.require(principal.tenant, agent)
        provider = self.providers.get(config.provider)
        if provider is None:
            raise NotFound(f"provider {config.provider} is not configured")
        model = self.model_of(config, provider)
        counter = await self.counter(model)
        count = self._summary_usage(config, model)
        try:
            fresh = await self.summaries.rebuild(config, room, provider, model, counter, count)
        except (SummaryFailed, ValueError) as exc:
            raise Unavailable(f"the provider could not summarize: {exc}") from None
        self.metrics.summaries[config.name] += len(fresh)
        return [_summary_view(s) for s in fresh]

    def usage(self, tenant: str, day: str | None, agent: str | None) -> list[dict[str, Any]]:
        prefix = f"{tenant}\x1f".encode()
        rows = []
        seen = set()
        stored = dict(self.host.store.records("usage", prefix))
        for key in list(stored) + [k for k in self._usage if k.startswith(prefix)]:
            if key in seen:
                continue
            seen.add(key)
            _, row_day, row_agent, model = key.decode().split("\x1f")
            if (day and row_day != day) or (agent and row_agent != agent):
                continue
            record = self._usage.get(key) or orjson.loads(stored[key])
            rows.append({"day": row_day, "agent": row_agent, "model": model, **record})
        return sorted(rows, key=lambda r: (r["day"], r["agent"], r["model"]))

    def provider_names(self) -> list[str]:
        return sorted(self.providers)

    def tool_list(self) -> list[dict[str, str]]:
        return self.tool_registry.describe()


def _summary_view(summary: Summary) -> dict[str, Any]:
    return {
        "first_seq": summary.first_seq,
        "last_seq": summary.last_seq,
        "entries": summary.entries,
        "model": summary.model,
        "text": summary.text,
    }


def agent_user_key(agent: AgentConfig) -> bytes:
    return user_key(agent.tenant, agent.name)
