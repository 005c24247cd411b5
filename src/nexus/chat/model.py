"""What ``nexus chat`` shows, without a screen: each room's lines in seq order, replies
that stream in place, who is present and who is typing. The app applies SDK events and
redraws the lines this model says changed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..client import (
    Entry,
    Event,
    Message,
    Presence,
    ReplyDelta,
    ReplyEnded,
    ReplyStarted,
    Typing,
)

TYPING_S = 6.0  # an indicator without news fades after this long
SHOWN_KINDS = frozenset(
    {"task.created", "task.updated", "task.reminder", "tool.call", "agent.notice"}
)


@dataclass
class Line:
    key: str  # entry id (a reply: its message_id)
    seq: int
    who: str
    text: str
    kind: str = "message"  # message | reply | system
    state: str = ""  # a reply's: streaming | completed | cancelled | failed | interrupted

    def render(self) -> str:
        mark = {"streaming": " ▌", "cancelled": " [cancelled]", "failed": " [failed]"}.get(
            self.state, " [interrupted]" if self.state == "interrupted" else ""
        )
        head = f"#{self.seq} " if self.seq else ""
        return f"{head}{self.who}: {self.text}{mark}" if self.who else f"{head}{self.text}"


@dataclass
class RoomView:
    name: str
    lines: dict[str, Line] = field(default_factory=dict)  # insertion = display order
    members: dict[str, str] = field(default_factory=dict)  # user -> kind
    typing: dict[str, float] = field(default_factory=dict)  # user -> since
    oldest_seq: int = 0


class ChatModel:
    def __init__(self, me: str = "") -> None:
        self.me = me
        self.rooms: dict[str, RoomView] = {}
        self._system = 0

    def room(self, name: str) -> RoomView:
        view = self.rooms.get(name)
        if view is None:
            view = self.rooms[name] = RoomView(name)
        return view

    def joined(self, name: str, answer: dict[str, Any]) -> None:
        view = self.room(name)
        for m in answer.get("members") or []:
            view.members[str(m.get("user_id"))] = str(m.get("kind", "human"))
        if self.me:
            view.members[self.me] = "human"

    def system(self, room: str, text: str) -> Line:
        self._system += 1
        line = Line(f"sys{self._system}", 0, "", text, "system")
        self.room(room).lines[line.key] = line
        return line

    def history(self, room: str, entries: list[dict[str, Any]]) -> None:
        """Older entries (a history page, ascending): shown above what is there."""
        view = self.room(room)
        older = {}
        for raw in entries:
            line = _line_of(raw)
            if line is not None and line.key not in view.lines:
                older[line.key] = line
        view.lines = {**older, **view.lines}
        seqs = [line.seq for line in view.lines.values() if line.seq]
        view.oldest_seq = min(seqs) if seqs else 0

    def apply(self, event: Event) -> tuple[str | None, list[Line]]:
        """(room, lines added or changed) for one event."""
        room = event.room
        if room is None:
            return None, []
        view = self.room(room)
        if isinstance(event, Presence):
            if event.action == "join":
                view.members[event.user_id] = event.kind
            else:
                view.members.pop(event.user_id, None)
                view.typing.pop(event.user_id, None)
            return room, []
        if isinstance(event, Typing):
            if event.active:
                view.typing[event.user_id] = time.monotonic()
            else:
                view.typing.pop(event.user_id, None)
            return room, []
        if isinstance(event, ReplyDelta):
            line = view.lines.get(event.message_id)
            if line is None:
                line = view.lines[event.message_id] = Line(
                    event.message_id, 0, str(event.raw.get("sender") or "agent"), "", "reply"
                )
            line.text, line.state = event.so_far, "streaming"
            return room, [line]
        if isinstance(event, ReplyEnded):
            line = view.lines.get(event.message_id)
            if line is None:
                line = view.lines[event.message_id] = Line(
                    event.message_id, event.seq, event.sender, "", "reply"
                )
            line.text, line.state = event.text, event.state
            return room, [line]
        if isinstance(event, Entry):
            kind = event.type
            if kind in ("message.edited", "message.deleted"):
                target = view.lines.get(str(event.raw.get("target_id")))
                if target is None:
                    return room, []
                if kind == "message.edited":
                    target.text = f"{event.raw.get('body', '')} (edited)"
                else:
                    target.text = "(deleted)"
                return room, [target]
            line = _line_of(event.raw)
            if line is None:
                return room, []
            if isinstance(event, Message | ReplyStarted):
                view.typing.pop(line.who, None)
            existing = view.lines.get(line.key)
            if existing is not None:  # a reply whose deltas came first
                existing.seq = existing.seq or line.seq
                return room, [existing]
            view.lines[line.key] = line
            if not view.oldest_seq or line.seq < view.oldest_seq:
                view.oldest_seq = line.seq
            return room, [line]
        return room, []

    def typing_text(self, room: str) -> str:
        view = self.rooms.get(room)
        if view is None:
            return ""
        now = time.monotonic()
        who = sorted(
            u for u, since in view.typing.items() if now - since < TYPING_S and u != self.me
        )
        if not who:
            return ""
        return f"{', '.join(who)} {'is' if len(who) == 1 else 'are'} typing…"


def _line_of(raw: dict[str, Any]) -> Line | None:
    kind = raw.get("type")
    seq = int(raw.get("seq") or 0)
    key = str(raw.get("id"))
    who = str(raw.get("sender") or raw.get("by") or "")
    if kind == "message":
        text = "(deleted)" if raw.get("deleted") else str(raw.get("body", ""))
        if raw.get("edited") and not raw.get("deleted"):
            text += " (edited)"
        return Line(key, seq, who, text)
    if kind == "message.started":  # from history: the finished reply's text is in it
        return Line(key, seq, who, str(raw.get("text") or ""), "reply", str(raw.get("state", "")))
    if kind in SHOWN_KINDS:
        detail = raw.get("task", {}).get("title") if isinstance(raw.get("task"), dict) else None
        text = {
            "task.created": f"created task: {detail or ''}",
            "task.updated": f"updated task {raw.get('task_id', '')}: {raw.get('changes', '')}",
            "task.reminder": f"reminder: {detail or raw.get('task_id', '')}",
            "tool.call": f"calls {raw.get('name')}({str(raw.get('arguments', ''))[:80]})",
            "agent.notice": str(raw.get("text") or raw.get("message") or ""),
        }[str(kind)]
        return Line(key, seq, who, text, "system")
    return None
