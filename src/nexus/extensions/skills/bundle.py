"""A checked skill: its parsed SKILL.md, its files and its content digest.

The digest is ``sha256:`` + the SHA-256 of a canonical listing of the files: one line
``<path>\\0<size>\\0<sha256 of the content, hex>\\n`` per file, paths sorted by their UTF-8
bytes. It names the content, not the archive: the same files zipped or tarred, in any
order, with any timestamps, have the same digest.

Scripts: a skill's ``scripts/`` folder holds code for the agent to run. Here a script
runs only as WebAssembly in the plugins' sandbox (``scripts.py``), so every file under
``scripts/`` must be a ``.wasm`` module; anything else is refused at install, rather than
installed as a script that would never run. (The modules themselves are checked against
the script ABI by ``scripts.SkillScripts.check``.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ...errors import BadRequest
from .archive import Unpacked
from .skillfile import SkillDoc, check_name, parse_skill_md

SKILL_FILE = "SKILL.md"
REFERENCES = "references/"
SCRIPTS = "scripts/"


@dataclass(frozen=True, slots=True)
class SkillBundle:
    doc: SkillDoc
    files: dict[str, bytes]  # every file, SKILL.md included
    digest: str

    @property
    def name(self) -> str:
        return self.doc.name

    def sizes(self) -> dict[str, int]:
        return {path: len(self.files[path]) for path in sorted(self.files)}


def content_digest(files: dict[str, bytes]) -> str:
    listing = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.encode()):
        data = files[path]
        line = f"{path}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n"
        listing.update(line.encode())
    return "sha256:" + listing.hexdigest()


def references(paths: list[str] | dict[str, int]) -> list[str]:
    """The files under ``references/``, sorted."""
    return sorted(p for p in paths if p.startswith(REFERENCES))


def script_paths(paths: list[str] | dict[str, int] | dict[str, bytes]) -> list[str]:
    """The files under ``scripts/``, sorted."""
    return sorted(p for p in paths if p.startswith(SCRIPTS))


def build_bundle(unpacked: Unpacked, name: str | None = None) -> SkillBundle:
    """Check the files of one skill; ``name`` is the name it is installed under (the
    archive's folder, when it has one, must be that name too).

    Raises:
        BadRequest: no SKILL.md, a script, a malformed SKILL.md, or names that disagree.
    """
    folder = unpacked.folder or name
    if folder is None:
        raise BadRequest("the skill's name is not known: install it under a name")
    if name is not None and folder != name:
        raise BadRequest(
            f"the archive's folder is {folder!r} but the skill is installed as {name!r}"
        )
    check_name(folder, "the skill's folder name")
    files = unpacked.files
    if SKILL_FILE not in files:
        listed = ", ".join(sorted(files)[:5]) or "nothing"
        raise BadRequest(f"the skill has no SKILL.md at its top (it holds {listed})")
    for path in script_paths(files):
        if not path.endswith(".wasm"):
            raise BadRequest(
                f"{path}: only WebAssembly modules (.wasm) may be skill scripts here: scripts"
                " run in the Wasm sandbox, never as Python, shell or native code"
            )
    doc = parse_skill_md(files[SKILL_FILE], folder)
    return SkillBundle(doc, dict(files), content_digest(files))
