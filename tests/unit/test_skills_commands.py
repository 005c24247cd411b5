"""``/skill-name args``: which message bodies are invocations, and the prompt the agent's
turn gets (the arguments and the instructions, long instructions pointed at by offset)."""

from __future__ import annotations

import pytest

from nexus.extensions.skills.commands import BODY_MAX, parse_command, prompt
from nexus.extensions.skills.registry import SkillVersion
from nexus.extensions.skills.skillfile import SkillDoc


@pytest.mark.parametrize(
    ("body", "parsed"),
    [
        ("/notes", ("notes", "")),
        ("/meeting-notes the launch  ", ("meeting-notes", "the launch")),
        ("/notes line one\nline two", ("notes", "line one\nline two")),
        ("/task buy milk", None),  # the tasks command
        ("/Notes", None),
        ("/a--b x", None),
        ("/notes,x", None),
        ("notes", None),
        (" /notes", None),
        ("/" + "a" * 65, None),
    ],
)
def test_which_bodies_are_invocations(body: str, parsed: tuple[str, str] | None) -> None:
    assert parse_command(body) == parsed


def version(body: str) -> SkillVersion:
    doc = SkillDoc(name="notes", description="d", body=body)
    return SkillVersion("acme", "tenant", doc, "sha256:" + "0" * 64, 2, {"SKILL.md": 1})


def test_the_prompt_carries_the_instructions_and_the_arguments() -> None:
    text = prompt("ann", version("Write notes."), "the launch")
    assert text.startswith("ann invoked the skill notes (digest sha256:000")
    assert "with: the launch" in text
    assert '<skill name="notes">\nWrite notes.\n</skill>' in text
    assert "with: (no arguments)" in prompt("ann", version("x"), "")


def test_long_instructions_are_cut_with_where_to_read_on() -> None:
    text = prompt("ann", version("x" * (BODY_MAX + 10)), "")
    assert f"read_skill_reference path SKILL.md offset {BODY_MAX}" in text
    assert "x" * (BODY_MAX + 1) not in text
