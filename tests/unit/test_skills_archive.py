"""Skill archives: zip and tar.gz read in memory; traversal, absolute paths, links, device
files, too many files, oversize files and bombs refused with the entry named."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from nexus.errors import BadRequest, NexusError, TooLarge
from nexus.extensions.skills.archive import Limits, clean_path, read_folder, unpack

LIMITS = Limits(files_max=10, file_max=1000, total_max=3000)
SKILL = b"---\nname: demo\ndescription: d\n---\nbody\n"


def make_zip(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) | 0
            zf.writestr(info, target)
    return buf.getvalue()


def make_tgz(entries: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tf.addfile(info)
    return buf.getvalue()


def refused(data: bytes, limits: Limits = LIMITS) -> NexusError:
    with pytest.raises(NexusError) as err:
        unpack(data, limits)
    return err.value


def test_zip_and_tgz_give_the_same_files() -> None:
    files = {"SKILL.md": SKILL, "references/a.md": b"ref", "assets/x.bin": b"\0\1"}
    for data in (make_zip(files), make_tgz(files)):
        out = unpack(data, LIMITS)
        assert out.files == files and out.folder is None


def test_one_top_folder_is_the_skill_folder_and_debris_is_skipped() -> None:
    data = make_zip(
        {"demo/SKILL.md": SKILL, "demo/references/a.md": b"r", "__MACOSX/demo/._SKILL.md": b"x"}
    )
    out = unpack(data, LIMITS)
    assert out.folder == "demo" and set(out.files) == {"SKILL.md", "references/a.md"}
    tgz = make_tgz({"./demo/SKILL.md": SKILL, "demo/.DS_Store": b"junk"})
    assert unpack(tgz, LIMITS).files == {"SKILL.md": SKILL}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../x", "'..' is not allowed"),
        ("demo/../../etc/passwd", "'..' is not allowed"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("C:/x", "absolute paths are not allowed"),
        ("a\\b", "backslashes"),
        ("a\nb", "control characters"),
    ],
)
def test_paths_that_leave_the_skill_are_refused(name: str, message: str) -> None:
    for data in (
        make_zip({"SKILL.md": SKILL, name: b"x"}),
        make_tgz({"SKILL.md": SKILL, name: b"x"}),
    ):
        err = refused(data)
        assert isinstance(err, BadRequest) and message in err.message


def test_links_and_devices_are_refused() -> None:
    err = refused(make_zip({"SKILL.md": SKILL}, symlinks={"out": "../../etc/passwd"}))
    assert err.message == "out: symbolic links are not allowed in a skill"
    link = tarfile.TarInfo("out")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    err = refused(make_tgz({"SKILL.md": SKILL}, [link]))
    assert err.message == "out: symbolic links are not allowed in a skill (to '/etc/passwd')"
    hard = tarfile.TarInfo("hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "SKILL.md"
    assert "hard links are not allowed" in refused(make_tgz({"SKILL.md": SKILL}, [hard])).message
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    assert refused(make_tgz({"SKILL.md": SKILL}, [dev])).message == (
        "dev: only regular files are allowed in a skill"
    )


def test_caps_on_files_sizes_and_bombs() -> None:
    big = {"SKILL.md": SKILL, "big.txt": b"a" * 1001}
    for data in (make_zip(big), make_tgz(big)):
        err = refused(data)
        assert isinstance(err, TooLarge) and "big.txt: over 1000 bytes" in err.message
    many = {f"f{i}.md": b"x" for i in range(11)}
    assert "more than 10 files" in refused(make_zip(many)).message
    total = {f"f{i}.md": b"x" * 900 for i in range(4)}
    assert "unpacks to over 3000 bytes" in refused(make_zip(total)).message
    # a gzip bomb: 50 MB of zeros stop at the cap, never decompressed whole
    bomb = make_tgz({"SKILL.md": SKILL, "zeros": bytes(50 << 20)})
    assert len(bomb) < 200_000
    assert isinstance(refused(bomb), TooLarge)


def test_a_zip_that_lies_about_its_sizes_is_still_capped() -> None:
    data = bytearray(make_zip({"SKILL.md": SKILL, "lie.txt": b"b" * 5000}))
    # rewrite the declared uncompressed size of lie.txt in the central directory to 10
    cd = data.rfind(b"PK\x01\x02")
    assert data[cd + 46 : cd + 46 + 7] == b"lie.txt"
    data[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    err = refused(bytes(data))  # zipfile reads the declared 10 bytes: the CRC fails
    assert err.message.startswith("lie.txt: cannot be read from the zip")


def test_not_an_archive_and_corrupt_archives() -> None:
    assert "neither a zip nor a tar.gz" in refused(b"hello").message
    assert "unreadable" in refused(b"PK\x03\x04garbage").message
    assert "the gzip stream is corrupt" in refused(b"\x1f\x8bgarbage").message
    assert refused(b"\x1f\x8b\x08\x00").message == "the gzip stream is truncated"
    assert refused(make_zip_dup()).message == "a.md: appears twice in the archive"


def make_zip_dup() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.md", b"1")
        with pytest.warns(UserWarning):
            zf.writestr("a.md", b"2")
    return buf.getvalue()


def test_clean_path() -> None:
    assert clean_path("./a//b/./c.md") == "a/b/c.md"
    assert clean_path("dir/") is None or clean_path("dir/") == "dir"
    assert clean_path("__MACOSX/x") is None


def test_a_folder_with_a_symlink_is_refused(tmp_path: Path) -> None:
    skill = tmp_path / "demo"
    (skill / "references").mkdir(parents=True)
    (skill / "SKILL.md").write_bytes(SKILL)
    (skill / "references" / "a.md").write_text("a")
    out = read_folder(skill, LIMITS)
    assert out.folder == "demo" and set(out.files) == {"SKILL.md", "references/a.md"}
    os.symlink("/etc/passwd", skill / "references" / "leak.md")
    with pytest.raises(BadRequest, match=r"references/leak\.md: symbolic links are not allowed"):
        read_folder(skill, LIMITS)
