"""``/skill-name args``: a person invokes a skill with a message (a commit observer).

A human message whose body starts with ``/<name>`` where ``<name>`` is a skill the room
sees is an invocation. The message itself was acknowledged by the pipeline like any other
("acknowledged at once"); then, here:

1. the agent that runs it is chosen: a member agent the skill is scoped to
   (``agent:<name>``), else a member agent of the room (one the message mentions first,
   else the first by name);
2. a ``skill.activated`` entry is written as that agent (skill, digest, version, scope,
   who invoked it, the message id, the arguments), with the idempotency key
   ``skill.<message id>``: a message seen again after a restart finds it written and is
   not run twice;
3. an agent turn runs through ``AgentRuntime.run_turn`` whose trigger carries the
   skill's instructions and the arguments: the reply streams into the room like any.

No member agent: a ``skill.notice`` entry says so. The agent runtime does not also answer
the message as a mention (``claims``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from ...auth import Principal
from ...core.agents import AgentConfig
from ...core.caller import OneWrite
from ...core.hooks import CommittedEntry, StartAt
from ...core.rooms import Room
from ...errors import NexusError
from ...store.keys import split_room_key
from ..ai.runtime import AgentRuntime
from .registry import SkillRegistry, SkillVersion

log = logging.getLogger(__name__)

COMMAND = re.compile(r"/([a-z0-9]+(?:-[a-z0-9]+)*)(?:\s+(.*))?", re.DOTALL)
# A record whose body starts with "/" holds these bytes (orjson leaves "/" unescaped, as
# core.tasks relies on too): other records are not parsed.
MARK = b'"body":"/'
RESERVED = frozenset({"task"})  # core's own command (core.tasks): never a skill
SERVICE_USER = "nexus.skills"
ARGS_MAX = 4_000
BODY_MAX = 24_000  # characters of instructions in the trigger; the rest by reference
WRITE_TIMEOUT_S = 30.0
PROMPT = (
    "{sender} invoked the skill {name} (digest {digest}) with: {args}\n\n"
    "Answer by following the skill's instructions below. Read one of its reference files "
    "with read_skill_reference only when the instructions ask for it.\n\n"
    '<skill name="{name}">\n{body}\n</skill>'
)


def parse_command(body: str) -> tuple[str, str] | None:
    """(skill name, arguments) of a ``/name args`` message body, else None."""
    match = COMMAND.fullmatch(body.rstrip())
    if match is None or match.group(1) in RESERVED or len(match.group(1)) > 64:
        return None
    return match.group(1), (match.group(2) or "").strip()


def prompt(sender: str, version: SkillVersion, args: str) -> str:
    body = version.doc.body
    if len(body) > BODY_MAX:
        body = (
            body[:BODY_MAX] + f"\n[the instructions go on: read_skill_reference path SKILL.md"
            f" offset {BODY_MAX}]"
        )
    return PROMPT.format(
        sender=sender,
        name=version.name,
        digest=version.digest,
        args=args[:ARGS_MAX] or "(no arguments)",
        body=body,
    )


class SkillCommands:
    name = "skills"  # observer name: the key of its durable cursors
    start_at: StartAt = "end"  # invocations from now on, not the rooms' past
    timeout = 30.0

    def __init__(self, registry: SkillRegistry, runtime: AgentRuntime) -> None:
        self.registry = registry
        self.runtime = runtime
        self.host = runtime.host
        self.invoked = 0

    # -- the observer --------------------------------------------------------------
    def wants(self, room_key: str) -> bool:
        return True

    def trimmed(self, room_key: str, first_seq: int) -> None:
        return None

    async def observe(self, entries: Sequence[CommittedEntry]) -> None:
        for entry in entries:
            if entry.kind != "message" or MARK not in entry.record:
                continue
            record = entry.event()
            target = self.target(entry.room_key, record)
            if target is not None:
                await self._invoke(entry.room_key, record, *target)

    # -- which skill, which agent ----------------------------------------------------
    def target(
        self, room_key: str, record: dict[str, Any]
    ) -> tuple[SkillVersion, AgentConfig | None, str] | None:
        """(skill, agent to run it or None, arguments) if ``record`` invokes a skill."""
        if record.get("sender_kind") != "human" or record.get("deleted"):
            return None
        parsed = parse_command(str(record.get("body") or ""))
        if parsed is None:
            return None
        name, args = parsed
        tenant, room = split_room_key(room_key)
        if not self.registry.has_any(tenant):
            return None
        member = self.host.store.member
        agents = [a for a in self.runtime.agents.of_tenant(tenant) if member(room_key, a.name)]
        agents.sort(key=lambda a: f"@{a.name}" not in args)  # a mentioned agent first
        for agent in agents:
            version = self.registry.resolve(tenant, name, room, agent.name)
            if version is not None and version.scope == f"agent:{agent.name}":
                return version, agent, args
        version = self.registry.resolve(tenant, name, room)
        if version is None:
            return None
        return version, (agents[0] if agents else None), args

    def claims(self, room_key: str, record: dict[str, Any]) -> bool:
        """Whether a message is an invocation handled here (the agent runtime skips it)."""
        body = record.get("body")
        return (
            isinstance(body, str)
            and body.startswith("/")
            and (self.target(room_key, record) is not None)
        )

    # -- running it ------------------------------------------------------------------
    async def _invoke(
        self,
        room_key: str,
        record: dict[str, Any],
        version: SkillVersion,
        agent: AgentConfig | None,
        args: str,
    ) -> None:
        tenant, room_name = split_room_key(room_key)
        room = self.host.rooms.find(tenant, room_name)
        if room is None:
            return
        message_id = str(record.get("id", ""))
        key = f"skill.{message_id}"[:128]
        if agent is None:
            await self._notice(room, version, message_id, key)
            return
        caller = self.runtime.caller(agent)
        fields = {
            "skill": version.name,
            "digest": version.digest,
            "version": version.version,
            "scope": version.scope,
            "agent": agent.name,
            "by": record.get("sender"),
            "message_id": message_id,
            "args": args[:ARGS_MAX],
        }
        try:
            ack = await caller.write(
                lambda rid: self.host.writes.append(
                    caller, room, "skill.activated", fields, client_msg_id=key, rid=rid
                )
            )
        except NexusError as exc:
            log.warning("skill %s not activated in %s: %s", version.name, room_name, exc.message)
            return
        if ack.get("duplicate"):
            return  # handled before a restart
        self.invoked += 1
        trigger = {
            "type": "message",
            "id": key,
            "reply_to": message_id,
            "seq": record.get("seq", 0),
            "sender": record.get("sender", "?"),
            "sender_kind": "human",
            "body": prompt(str(record.get("sender", "?")), version, args),
        }

        def listener(what: str, details: dict[str, Any]) -> None:
            if what == "ended" and details.get("state") not in ("completed", "cancelled"):
                log.info("skill %s run by %s ended %s", version.name, agent.name, details)

        self.runtime.run_turn(agent, room_key, trigger, listener)

    async def _notice(self, room: Room, version: SkillVersion, message_id: str, key: str) -> None:
        who = Principal(
            SERVICE_USER, room.tenant, frozenset(), kind="agent", expires_at=float("inf")
        )
        reply = OneWrite(who, WRITE_TIMEOUT_S, "the skill notice")
        try:
            self.host.writes.append(
                reply,
                room,
                "skill.notice",
                {
                    "skill": version.name,
                    "reason": "no_agent",
                    "message_id": message_id,
                    "message": f"no agent in this room can run /{version.name}: add an agent"
                    " to the room (or install the skill for one that is here)",
                },
                client_msg_id=key,
            )
            await reply.result()
        except NexusError as exc:
            log.warning("skill notice not written: %s", exc.message)
