"""What a line typed in ``nexus chat`` asks for."""

from __future__ import annotations

import pytest

from nexus.chat.commands import Command, parse


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", Command("say", "hello")),
        ("  spaced  ", Command("say", "spaced")),
        ("//slash first", Command("say", "/slash first")),
        ("/join ops", Command("join", "ops")),
        ("/join", Command("error", "usage: /join ROOM")),
        ("/leave", Command("leave", "")),
        ("/leave ops", Command("leave", "ops")),
        ("/search billing owner", Command("search", "billing owner")),
        ("/search", Command("error", "usage: /search WORDS")),
        ("/task write notes @mia", Command("say", "/task write notes @mia")),
        ("/task", Command("error", "usage: /task TITLE")),
        ("/skill meeting-notes for today", Command("say", "/meeting-notes for today")),
        ("/skill standup", Command("say", "/standup")),
        ("/skill", Command("error", "usage: /skill NAME ARGS")),
        ("/older", Command("older")),
        ("/quit", Command("quit")),
        ("/help", Command("help")),
        ("/poll lunch?", Command("say", "/poll lunch?")),  # plugins' and skills' commands
        ("   ", Command("error", "")),
    ],
)
def test_parse(line: str, command: Command) -> None:
    assert parse(line) == command
