"""``SKILL.md``: YAML frontmatter between two ``---`` lines, then the markdown body.

The frontmatter follows the open Agent Skills format: ``name`` (1-64 of ``[a-z0-9-]``, no
leading, trailing or doubled hyphen, equal to the skill's folder name), ``description``
(1-1024 characters), optional ``license``, ``compatibility`` (at most 500 characters),
``metadata`` (a map of strings) and ``allowed-tools`` (tool names, space-separated or a
list). Anything else in the frontmatter is refused, so a typo is an error, not a silent
default. Parsed with ``yaml.safe_load`` only: no tags, no objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs installed: only safe_load is used

from ...errors import BadRequest

NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
NAME_MAX = 64
DESCRIPTION_MAX = 1024
COMPATIBILITY_MAX = 500
FRONTMATTER_MAX = 16 * 1024  # bytes between the two fences
METADATA_MAX = 64  # entries
FIELDS = ("name", "description", "license", "compatibility", "metadata", "allowed-tools")
FENCE = "---"


@dataclass(frozen=True, slots=True)
class SkillDoc:
    """A parsed ``SKILL.md``."""

    name: str
    description: str
    body: str
    license: str | None = None
    compatibility: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    allowed_tools: tuple[str, ...] = ()


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is a valid skill name, else BadRequest saying why."""
    if not 1 <= len(name) <= NAME_MAX:
        raise BadRequest(f"{what} must be 1-{NAME_MAX} characters, got {len(name)}")
    if not NAME.match(name):
        raise BadRequest(
            f"{what} {name!r} must be lowercase letters, digits and single hyphens"
            " (not at the start or end)"
        )
    return name


def split_frontmatter(text: str) -> tuple[str, str]:
    """(frontmatter text, body) of a SKILL.md text; BadRequest if there is no frontmatter."""
    text = text.removeprefix("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n").rstrip() != FENCE:
        raise BadRequest("SKILL.md must start with a line '---' opening its YAML frontmatter")
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r\n").rstrip() == FENCE:
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    raise BadRequest("SKILL.md: the YAML frontmatter is not closed by a line '---'")


def _text(data: dict[str, Any], key: str, limit: int, *, required: bool) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise BadRequest(f"SKILL.md: frontmatter field {key!r} is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"SKILL.md: {key!r} must be a string, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise BadRequest(f"SKILL.md: {key!r} must not be empty")
    if len(value) > limit:
        raise BadRequest(f"SKILL.md: {key!r} is {len(value)} characters (at most {limit})")
    return value


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("SKILL.md: 'metadata' must be a map of strings")
    if len(value) > METADATA_MAX:
        raise BadRequest(f"SKILL.md: 'metadata' has {len(value)} entries (at most {METADATA_MAX})")
    out: dict[str, str] = {}
    for key, item in value.items():
        # YAML reads `version: 1.0` as a number: scalars are kept as their text.
        if not isinstance(key, str) or isinstance(item, (dict, list)) or item is None:
            raise BadRequest(f"SKILL.md: metadata entry {key!r} must map a string to a string")
        out[key] = str(item)
    return out


def _allowed_tools(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BadRequest("SKILL.md: 'allowed-tools' must be a string of names or a list of strings")


def parse_skill_md(raw: bytes, folder: str) -> SkillDoc:
    """Parse a SKILL.md whose skill folder is named ``folder``.

    Raises:
        BadRequest: not UTF-8, no frontmatter, invalid YAML, a missing, invalid or unknown
            field, a name that is not the folder's, or an empty body.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"SKILL.md is not UTF-8 text (byte {exc.start})") from None
    head, body = split_frontmatter(text)
    if len(head.encode()) > FRONTMATTER_MAX:
        raise BadRequest(f"SKILL.md: the frontmatter is over {FRONTMATTER_MAX} bytes")
    try:
        data = yaml.safe_load(head)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 2}" if where is not None else ""  # +1: fence, +1: 1-based
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadRequest(f"SKILL.md: the frontmatter is not valid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise BadRequest("SKILL.md: the frontmatter must be a YAML map (name: ..., ...)")
    unknown = sorted(str(k) for k in data if k not in FIELDS)
    if unknown:
        raise BadRequest(
            f"SKILL.md: unknown frontmatter field {unknown[0]!r} (known: {', '.join(FIELDS)})"
        )
    name = _text(data, "name", NAME_MAX, required=True)
    assert name is not None
    check_name(name, "SKILL.md: 'name'")
    if name != folder:
        raise BadRequest(f"SKILL.md names the skill {name!r} but its folder is {folder!r}")
    description = _text(data, "description", DESCRIPTION_MAX, required=True)
    assert description is not None
    body = body.strip()
    if not body:
        raise BadRequest("SKILL.md has no instructions after its frontmatter")
    return SkillDoc(
        name=name,
        description=description,
        body=body,
        license=_text(data, "license", 200, required=False),
        compatibility=_text(data, "compatibility", COMPATIBILITY_MAX, required=False),
        metadata=_metadata(data.get("metadata")),
        allowed_tools=_allowed_tools(data.get("allowed-tools")),
    )
