"""``nexus chat``: a terminal UI (Textual) on the Python SDK.

Why Textual: widgets that redraw in place (an agent's reply grows inside its own line),
a real layout (rooms, members, log, input) that works in any terminal over SSH, and a
headless test driver (``App.run_test``) so the UI is tested by pressing keys.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Input, Label, ListItem, ListView, Static

from ..client import Connection, ConnectionClosed, NexusClient, NexusError
from .commands import HELP, parse
from .model import ChatModel, Line

TYPING_EVERY_S = 3.0  # at most one typing request per this many seconds while typing


class LineView(Static):
    def __init__(self, line: Line) -> None:
        super().__init__(line.render(), markup=False, classes=line.kind)
        self.line = line
        self.redraws = 0  # times redrawn in place (a streamed reply: once per delta)

    def redraw(self) -> None:
        self.redraws += 1
        self.update(self.line.render())


class ChatApp(App[None]):
    TITLE = "nexus chat"
    CSS = """
    #side { width: 24; border-right: solid $primary; }
    #rooms { height: auto; max-height: 50%; }
    #log { height: 1fr; }
    #typing { height: 1; color: $text-muted; }
    .system { color: $text-muted; }
    .reply { color: $success; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit"),
        Binding("pageup", "older", "Older"),
        Binding("ctrl+n", "next_room", "Next room"),
    ]

    def __init__(self, client: NexusClient, rooms: list[str]) -> None:
        super().__init__()
        self.client = client
        self.initial_rooms = rooms or ["general"]
        self.model = ChatModel()
        self.current = ""
        self._views: dict[str, LineView] = {}  # line key -> widget, current room only
        self._typing_sent = 0.0

    # -- layout --------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="side"):
                yield Label("Rooms")
                yield ListView(id="rooms")
                yield Label("Present")
                yield Static("", id="members")
            with Vertical():
                yield VerticalScroll(id="log")
                yield Static("", id="typing")
                yield Input(placeholder="message, or /help", id="input")
        yield Footer()

    async def on_mount(self) -> None:
        try:
            session = await self.client.connect()
        except (ConnectionClosed, OSError) as exc:
            self.exit(return_code=1, message=f"nexus chat: cannot connect: {exc}")
            return
        self.model.me = str(session.get("user_id", ""))
        self.sub_title = f"{self.model.me}@{session.get('tenant', '')}"
        for room in self.initial_rooms:
            await self.join(room)
        self.run_worker(self._pump(), exclusive=True, group="events")
        self.set_interval(1.0, self._show_typing)
        self.query_one("#input", Input).focus()

    async def on_unmount(self) -> None:
        await self.client.close()

    # -- rooms ---------------------------------------------------------------------
    async def join(self, room: str) -> None:
        try:
            answer = await self.client.join(room)
            page = await self.client.history(room, limit=50)
        except (NexusError, ConnectionClosed, TimeoutError) as exc:
            self.notify(f"cannot join {room}: {exc}", severity="error")
            return
        self.model.joined(room, answer)
        self.model.history(room, page.get("messages") or [])
        rooms = self.query_one("#rooms", ListView)
        if room not in [item.name for item in rooms.children if isinstance(item, ListItem)]:
            await rooms.append(ListItem(Label(f"#{room}"), name=room))
        await self.show(room)

    async def leave(self, room: str) -> None:
        try:
            await self.client.leave(room)
        except (NexusError, ConnectionClosed, TimeoutError) as exc:
            self.notify(f"cannot leave {room}: {exc}", severity="error")
            return
        self.model.rooms.pop(room, None)
        for item in self.query_one("#rooms", ListView).children:
            if isinstance(item, ListItem) and item.name == room:
                await item.remove()
        if self.current == room:
            await self.show(next(iter(self.model.rooms), ""))

    async def show(self, room: str) -> None:
        self.current = room
        log = self.query_one("#log", VerticalScroll)
        await log.remove_children()
        self._views.clear()
        if room:
            views = [LineView(line) for line in self.model.room(room).lines.values()]
            self._views = {v.line.key: v for v in views}
            await log.mount_all(views)
            log.scroll_end(animate=False)
        self.title = f"#{room}" if room else "nexus chat"
        self._show_members()

    def _show_members(self) -> None:
        view = self.model.rooms.get(self.current)
        members = sorted(view.members.items()) if view else []
        text = "\n".join(f"{u} ({k})" if k != "human" else u for u, k in members)
        self.query_one("#members", Static).update(text)

    def _show_typing(self) -> None:
        self.query_one("#typing", Static).update(self.model.typing_text(self.current))

    # -- events --------------------------------------------------------------------
    async def _pump(self) -> None:
        async for event in self.client.events():
            if isinstance(event, Connection):
                state = event.state if event.state != "reconnecting" else "reconnecting…"
                self.sub_title = f"{self.model.me} — {state}"
                if event.state == "closed":
                    self.notify(f"disconnected ({event.code}): {event.reason}", severity="error")
                continue
            room, lines = self.model.apply(event)
            if room == self.current:
                await self._draw(lines)
                self._show_members()
                self._show_typing()

    async def _draw(self, lines: list[Line]) -> None:
        log = self.query_one("#log", VerticalScroll)
        at_end = log.scroll_offset.y >= log.max_scroll_y - 1
        for line in lines:
            view = self._views.get(line.key)
            if view is None:
                view = self._views[line.key] = LineView(line)
                await log.mount(view)
            else:
                view.redraw()
        if at_end:
            log.scroll_end(animate=False)

    # -- input ---------------------------------------------------------------------
    async def on_input_submitted(self, message: Input.Submitted) -> None:
        message.input.value = ""
        command = parse(message.value)
        if command.action == "error":
            if command.arg:
                self.notify(command.arg, severity="warning")
            return
        if command.action == "quit":
            self.exit()
        elif command.action == "help":
            self.notify(HELP, timeout=10)
        elif command.action == "join":
            await self.join(command.arg)
        elif command.action == "leave":
            await self.leave(command.arg or self.current)
        elif command.action == "older":
            await self.action_older()
        elif command.action == "search":
            await self._search(command.arg)
        elif not self.current:
            self.notify("join a room first: /join ROOM", severity="warning")
        else:
            self._typing_sent = 0.0
            try:
                await self.client.send(self.current, command.arg)
            except (NexusError, ConnectionClosed, TimeoutError) as exc:
                self.notify(f"not sent: {exc}", severity="error")

    async def on_input_changed(self, message: Input.Changed) -> None:
        now = time.monotonic()
        if message.value and self.current and now - self._typing_sent > TYPING_EVERY_S:
            self._typing_sent = now
            # Typing is a courtesy, never an error.
            with contextlib.suppress(ConnectionClosed, ConnectionError, TimeoutError):
                await self.client.typing(self.current)

    async def on_list_view_selected(self, message: ListView.Selected) -> None:
        if message.item.name:
            await self.show(message.item.name)

    async def _search(self, words: str) -> None:
        try:
            found: dict[str, Any] = await self.client.request("search", q=words, limit=10)
        except (NexusError, ConnectionClosed, TimeoutError) as exc:
            self.notify(f"search failed: {exc}", severity="error")
            return
        hits = found.get("hits") or []
        lines = [self.model.system(self.current, f"search {words!r}: {len(hits)} found")]
        for hit in hits:
            snippet = str(hit.get("snippet", "")).replace("**", "")
            lines.append(
                self.model.system(
                    self.current,
                    f"  #{hit.get('room')} #{hit.get('seq')} {hit.get('sender')}: {snippet}",
                )
            )
        await self._draw(lines)

    async def action_older(self) -> None:
        view = self.model.rooms.get(self.current)
        if view is None or view.oldest_seq <= 1:
            self.notify("nothing older")
            return
        try:
            page = await self.client.history(self.current, before=view.oldest_seq, limit=50)
        except (NexusError, ConnectionClosed, TimeoutError) as exc:
            self.notify(f"history failed: {exc}", severity="error")
            return
        self.model.history(self.current, page.get("messages") or [])
        await self.show(self.current)
        self.query_one("#log", VerticalScroll).scroll_home(animate=False)

    async def action_next_room(self) -> None:
        names = list(self.model.rooms)
        if names:
            at = names.index(self.current) if self.current in names else -1
            await self.show(names[(at + 1) % len(names)])

    # -- for tests and scripts -----------------------------------------------------
    def shown(self) -> list[str]:
        """The lines on screen, in order."""
        return [v.line.render() for v in self._views.values()]

    def line_view(self, key: str) -> LineView | None:
        return self._views.get(key)
