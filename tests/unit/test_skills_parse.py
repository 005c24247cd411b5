"""SKILL.md parsing: good files, malformed frontmatter, a name that is not the folder's,
scripts refused, the content digest, and the example skill in the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus.errors import BadRequest
from nexus.extensions.skills.archive import Limits, Unpacked, read_folder
from nexus.extensions.skills.bundle import build_bundle, content_digest
from nexus.extensions.skills.skillfile import parse_skill_md

EXAMPLE = Path(__file__).parents[2] / "examples" / "skills" / "meeting-notes"
LIMITS = Limits(files_max=50, file_max=1 << 20, total_max=4 << 20)


def skill_md(front: str, body: str = "Do the thing.\n") -> bytes:
    return f"---\n{front}\n---\n{body}".encode()


def test_a_full_frontmatter_parses() -> None:
    doc = parse_skill_md(
        skill_md(
            "name: pdf-tools\ndescription: Work with PDF files.\nlicense: MIT\n"
            "compatibility: needs nothing\nmetadata:\n  author: ann\n  version: 1.0\n"
            "allowed-tools: read_history search_room",
            "\n# PDF\n\nSteps.\n",
        ),
        "pdf-tools",
    )
    assert doc.name == "pdf-tools" and doc.description == "Work with PDF files."
    assert doc.license == "MIT" and doc.compatibility == "needs nothing"
    assert doc.metadata == {"author": "ann", "version": "1.0"}  # a YAML number kept as text
    assert doc.allowed_tools == ("read_history", "search_room")
    assert doc.body == "# PDF\n\nSteps."


def test_a_bom_crlf_and_a_tool_list_are_accepted() -> None:
    raw = "\ufeff---\r\nname: a-b\r\ndescription: d\r\nallowed-tools: [x, y]\r\n---\r\nbody\r\n"
    doc = parse_skill_md(raw.encode(), "a-b")
    assert doc.allowed_tools == ("x", "y") and doc.body == "body"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"# no frontmatter\n", "must start with a line '---'"),
        (b"---\nname: x\ndescription: d\n", "not closed by a line '---'"),
        (skill_md("name: [unclosed\ndescription: d"), "not valid YAML at line"),
        (skill_md("- a list"), "must be a YAML map"),
        (skill_md("description: d"), "'name' is required"),
        (skill_md("name: x"), "'description' is required"),
        (skill_md("name: x\ndescription: '  '"), "'description' must not be empty"),
        (skill_md("name: x\ndescription: 3"), "'description' must be a string"),
        (skill_md("name: X-Y\ndescription: d"), "lowercase letters, digits and single hyphens"),
        (skill_md("name: a--b\ndescription: d"), "single hyphens"),
        (skill_md("name: -ab\ndescription: d"), "single hyphens"),
        (skill_md(f"name: x\ndescription: {'d' * 1025}"), "1025 characters (at most 1024)"),
        (skill_md("name: x\ndescription: d\nversion: 2"), "unknown frontmatter field 'version'"),
        (skill_md("name: x\ndescription: d\nmetadata: [1]"), "'metadata' must be a map"),
        (skill_md("name: x\ndescription: d\nmetadata:\n  a: [1]"), "must map a string"),
        (skill_md("name: x\ndescription: d\nallowed-tools: 3"), "'allowed-tools' must be"),
        (skill_md("name: x\ndescription: d", "  \n"), "no instructions"),
        (b"---\nname: x\n\xff\n---\nb", "not UTF-8"),
        (skill_md("name: !!python/object:os.system x\ndescription: d"), "not valid YAML"),
    ],
)
def test_malformed_skill_md_is_refused_with_the_reason(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_skill_md(raw, "x")
    assert message in err.value.message


def test_the_name_must_be_the_folder_name() -> None:
    with pytest.raises(BadRequest) as err:
        parse_skill_md(skill_md("name: other\ndescription: d"), "mine")
    assert err.value.message == "SKILL.md names the skill 'other' but its folder is 'mine'"


def test_only_wasm_scripts_are_accepted() -> None:
    files = {"SKILL.md": skill_md("name: s\ndescription: d"), "scripts/run.wasm": b"\0asm"}
    assert build_bundle(Unpacked(files), "s").files == files  # the module is checked later
    with pytest.raises(BadRequest) as err:
        build_bundle(Unpacked({**files, "scripts/run.sh": b"rm -rf /"}), "s")
    assert err.value.message.startswith(
        "scripts/run.sh: only WebAssembly modules (.wasm) may be skill scripts here"
    )


def test_a_bundle_needs_skill_md_and_matching_names() -> None:
    with pytest.raises(BadRequest, match=r"no SKILL\.md"):
        build_bundle(Unpacked({"README.md": b"x"}), "s")
    good = {"SKILL.md": skill_md("name: s\ndescription: d")}
    with pytest.raises(BadRequest, match="the archive's folder is 't'"):
        build_bundle(Unpacked(good, folder="t"), "s")
    assert build_bundle(Unpacked(good, folder="s")).name == "s"


def test_the_digest_names_the_content_not_the_order() -> None:
    a = {"SKILL.md": b"one", "references/x.md": b"two"}
    b = {"references/x.md": b"two", "SKILL.md": b"one"}
    assert content_digest(a) == content_digest(b)
    assert content_digest(a).startswith("sha256:") and len(content_digest(a)) == 71
    assert content_digest(a) != content_digest({**a, "references/x.md": b"two!"})
    assert content_digest(a) != content_digest({"SKILL.md": b"one", "references/y.md": b"two"})


def test_the_example_skill_is_valid() -> None:
    bundle = build_bundle(read_folder(EXAMPLE, LIMITS))
    assert bundle.name == "meeting-notes"
    assert set(bundle.files) == {"SKILL.md", "references/format.md"}
    assert "references/format.md" in bundle.doc.body
    assert bundle.doc.metadata == {"author": "nexus", "version": "1.0"}
