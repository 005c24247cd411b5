"""What a line typed in ``nexus chat`` asks for (no I/O: parsed here, done by the app)."""

from __future__ import annotations

from dataclasses import dataclass

HELP = (
    "/join ROOM  /leave [ROOM]  /task TITLE [@who] [due ...]  /search WORDS  "
    "/skill NAME ARGS  /older  /quit  (anything else is a message)"
)


@dataclass(frozen=True, slots=True)
class Command:
    action: str  # say | join | leave | search | older | quit | help | error
    arg: str = ""


def parse(line: str) -> Command:
    text = line.strip()
    if not text:
        return Command("error", "")
    if not text.startswith("/") or text.startswith("//"):
        return Command("say", text[1:] if text.startswith("//") else text)
    name, _, rest = text[1:].partition(" ")
    rest = rest.strip()
    if name == "join":
        return Command("join", rest) if rest else Command("error", "usage: /join ROOM")
    if name == "leave":
        return Command("leave", rest)
    if name == "search":
        return Command("search", rest) if rest else Command("error", "usage: /search WORDS")
    if name == "task":
        # The server's task command: the message itself creates the task (docs/tasks.md).
        return Command("say", text) if rest else Command("error", "usage: /task TITLE")
    if name == "skill":
        skill, _, args = rest.partition(" ")
        if not skill:
            return Command("error", "usage: /skill NAME ARGS")
        return Command("say", f"/{skill} {args}".rstrip())  # skills run as /name args
    if name in ("older", "quit", "help"):
        return Command(name)
    return Command("say", text)  # other slash commands (plugins', skills') go as messages
