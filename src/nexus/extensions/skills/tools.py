"""The agents' skill tools (a ToolSource: offered in a turn only when the agent sees at
least one skill in the room):

- ``activate_skill {name}``: the skill's instructions (its SKILL.md body) and the list of
  its reference files. The answer starts with the skill's digest and version, so the
  ``tool.result`` entry records exactly which content the agent was given.
- ``read_skill_reference {name, path, offset?}``: one file of the skill as text, at most
  ``PAGE_CHARS`` characters from ``offset``, with a note saying where the rest starts.
- ``run_skill_script {name, script, input?}`` (offered only when a skill the agent sees has
  scripts): runs ``scripts/<script>`` in the Wasm sandbox (``scripts.py``) on
  ``{"skill", "digest", "input"}`` as JSON and answers its output as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ...core.agents import AgentConfig
from ...core.rooms import Room
from ...errors import NotFound
from ..ai.parts import ToolSpec
from ..ai.tools import Tool, ToolContext, ToolError
from ..plugins.instance import PluginFault
from .bundle import SCRIPTS, SKILL_FILE, references
from .registry import SkillRegistry, SkillVersion

PAGE_CHARS = 7_000  # below the tool result cap (ai.tools.RESULT_MAX_CHARS), with the notes


def page(text: str, offset: int, path: str) -> str:
    """``text`` from ``offset``, at most PAGE_CHARS, with a note if more follows."""
    chunk = text[offset : offset + PAGE_CHARS]
    rest = len(text) - offset - len(chunk)
    if rest > 0:
        chunk += (
            f"\n\n[{rest} more characters: read_skill_reference path {path}"
            f" offset {offset + len(chunk)}]"
        )
    return chunk


def activation_text(version: SkillVersion) -> str:
    refs = references(version.sizes)
    listed = ", ".join(refs) if refs else "none"
    scripts = (
        f"Scripts (run one with run_skill_script when the instructions say so):"
        f" {', '.join(version.scripts)}\n"
        if version.scripts
        else ""
    )
    head = (
        f"Skill {version.name} (digest {version.digest}, version {version.version},"
        f" scope {version.scope})\nReference files (read one with read_skill_reference"
        f" only when the instructions ask for it): {listed}\n{scripts}\nInstructions:\n"
    )
    return head + page(version.doc.body, 0, SKILL_FILE)


class SkillTools:
    """``ai.tools.ToolSource`` of the skills registry."""

    def __init__(self, registry: SkillRegistry) -> None:
        self.registry = registry
        self._tools = (
            Tool(
                ToolSpec(
                    "activate_skill",
                    "Load the instructions of one of the skills in your catalog.",
                    {
                        "type": "object",
                        "properties": {"name": {"type": "string"}},
                        "required": ["name"],
                    },
                ),
                self.activate,
            ),
            Tool(
                ToolSpec(
                    "read_skill_reference",
                    "Read a file of an activated skill (e.g. references/guide.md) when its "
                    "instructions ask for it.",
                    {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "path": {"type": "string"},
                            "offset": {"type": "integer", "minimum": 0},
                        },
                        "required": ["name", "path"],
                    },
                ),
                self.read_reference,
            ),
        )
        self._script_tool = Tool(
            ToolSpec(
                "run_skill_script",
                "Run one of an activated skill's scripts (sandboxed WebAssembly) on an input.",
                {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "script": {"type": "string", "description": "e.g. scripts/count.wasm"},
                        "input": {"description": "any JSON value the script expects"},
                    },
                    "required": ["name", "script"],
                },
            ),
            self.run_script,
        )

    def tools_for(self, agent: AgentConfig, room: Room) -> Sequence[Tool]:
        if not self.registry.has_any(agent.tenant):
            return ()
        seen = self.registry.effective(agent.tenant, room.name, agent.name)
        return (*self._tools, self._script_tool) if any(v.scripts for v in seen) else self._tools

    def _skill(self, ctx: ToolContext, args: dict[str, Any]) -> SkillVersion:
        name = args.get("name")
        if not isinstance(name, str) or not name:
            raise ToolError("name must be a skill name from the catalog")
        agent = ctx.agent.name if ctx.agent is not None else ctx.principal.user_id
        found = self.registry.resolve(ctx.principal.tenant, name, ctx.room.name, agent)
        if found is None:
            raise ToolError(f"no skill named {name[:64]} is available here")
        return found

    async def activate(self, ctx: ToolContext, args: dict[str, Any]) -> str:
        return activation_text(self._skill(ctx, args))

    async def read_reference(self, ctx: ToolContext, args: dict[str, Any]) -> str:
        version = self._skill(ctx, args)
        path, offset = args.get("path"), args.get("offset", 0)
        if not isinstance(path, str) or not path:
            raise ToolError("path must be a file of the skill, e.g. references/guide.md")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ToolError("offset must be a non-negative integer")
        if path == SKILL_FILE:
            return page(version.doc.body, offset, path)
        try:
            data = self.registry.read(version, path)
        except NotFound:
            files = ", ".join(p for p in version.sizes if p != SKILL_FILE) or "none"
            raise ToolError(
                f"skill {version.name} has no file {path[:200]} (files: {files})"
            ) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{path} is a binary file ({len(data)} bytes), not text") from None
        if offset > len(text):
            raise ToolError(f"offset {offset} is past the end ({len(text)} characters)")
        return f"[{version.name}/{path}, digest {version.digest}]\n" + page(text, offset, path)

    async def run_script(self, ctx: ToolContext, args: dict[str, Any]) -> str:
        version = self._skill(ctx, args)
        script = args.get("script")
        if not isinstance(script, str) or not script:
            raise ToolError("script must be one of the skill's scripts, e.g. scripts/x.wasm")
        path = script if script.startswith(SCRIPTS) else SCRIPTS + script
        if path not in version.scripts and path + ".wasm" in version.scripts:
            path += ".wasm"
        if path not in version.scripts:
            listed = ", ".join(version.scripts) or "none"
            raise ToolError(
                f"skill {version.name} has no script {script[:200]} (scripts: {listed})"
            )
        payload = orjson.dumps(
            {"skill": version.name, "digest": version.digest, "input": args.get("input")}
        )
        try:
            output = await self.registry.scripts.run(self.registry.read(version, path), payload)
        except PluginFault as fault:
            raise ToolError(f"{path} failed ({fault.kind}): {fault.message}") from None
        if output is None:
            return f"[{path} answered nothing]"
        try:
            text = output.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{path} answered {len(output)} bytes that are not text") from None
        if len(text) > PAGE_CHARS:
            text = text[:PAGE_CHARS] + f"\n[output cut at {PAGE_CHARS} characters]"
        return text
