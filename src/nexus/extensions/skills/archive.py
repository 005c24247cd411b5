"""Skill files from an uploaded archive (zip, or tar compressed with gzip) or a folder,
read into memory with every entry checked: nothing is ever extracted to disk.

Refused, each with a message naming the entry: absolute paths, ``..`` components,
backslashes and control characters in names, symbolic and hard links, device files and
FIFOs, encrypted zip entries, duplicate paths, more than ``files_max`` files, a file over
``file_max`` bytes or all of them over ``total_max`` (counted as they are decompressed,
never trusting a declared size: a zip or gzip bomb stops at the cap).

An archive may hold the skill's files at its top, or inside one folder (``<name>/SKILL.md``,
as ``zip -r name.zip name`` makes); that folder's name is then the skill's folder name.
macOS bundling debris (``__MACOSX/``, ``.DS_Store``) is skipped.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ...errors import BadRequest, TooLarge

PATH_MAX = 240  # bytes of a path inside a skill (LMDB keys hold it with the digest)
DEPTH_MAX = 12
SKIPPED_DIRS = frozenset({"__MACOSX"})
SKIPPED_FILES = frozenset({".DS_Store"})
CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    files_max: int
    file_max: int
    total_max: int


@dataclass(frozen=True, slots=True)
class Unpacked:
    """The files of a skill by relative path, and the folder they sat in (if one)."""

    files: dict[str, bytes]
    folder: str | None = None


def clean_path(name: str) -> str | None:
    """The normalized relative path of an archive entry name, None for a skipped entry.

    Raises:
        BadRequest: an absolute path, a ``..`` component, a backslash or control character.
    """
    if not name:
        raise BadRequest("an entry has an empty name")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadRequest(f"{name!r}: control characters are not allowed in paths")
    if "\\" in name:
        raise BadRequest(f"{name}: backslashes are not allowed in paths")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BadRequest(f"{name}: absolute paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadRequest(f"{name}: '..' is not allowed in paths (it would leave the skill)")
    if not parts:
        return None
    if parts[0] in SKIPPED_DIRS or parts[-1] in SKIPPED_FILES:
        return None
    path = "/".join(parts)
    if len(path.encode()) > PATH_MAX or len(parts) > DEPTH_MAX:
        raise BadRequest(f"{path[:80]}: paths are at most {PATH_MAX} bytes, {DEPTH_MAX} deep")
    return path


class _Collector:
    """Adds files while holding every cap."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.files: dict[str, bytes] = {}
        self.total = 0

    def room(self, path: str) -> int:
        """Bytes ``path`` may still take (checks the count and duplicates first)."""
        if path in self.files:
            raise BadRequest(f"{path}: appears twice in the archive")
        if len(self.files) >= self.limits.files_max:
            raise TooLarge(f"the skill has more than {self.limits.files_max} files")
        return min(self.limits.file_max, self.limits.total_max - self.total)

    def add(self, path: str, data: bytes) -> None:
        if len(data) > self.limits.file_max:
            raise TooLarge(f"{path}: over {self.limits.file_max} bytes (skill_file_max_bytes)")
        self.total += len(data)
        if self.total > self.limits.total_max:
            raise TooLarge(f"the skill unpacks to over {self.limits.total_max} bytes")
        self.files[path] = data

    def over(self, path: str, room: int) -> TooLarge:
        if room < self.limits.file_max:
            return TooLarge(f"the skill unpacks to over {self.limits.total_max} bytes")
        return TooLarge(f"{path}: over {self.limits.file_max} bytes (skill_file_max_bytes)")


def _read_bounded(stream: IO[bytes], cap: int) -> bytes | None:
    """At most ``cap`` bytes of ``stream``; None if it holds more."""
    chunks: list[bytes] = []
    size = 0
    read = stream.read
    while True:
        chunk = read(min(CHUNK, cap + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)


def _unzip(data: bytes, out: _Collector) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise BadRequest(f"the zip archive is unreadable: {exc}") from None
    with archive:
        for info in archive.infolist():
            mode = info.external_attr >> 16
            path = clean_path(info.filename)
            if path is None:
                continue
            if stat.S_ISLNK(mode):
                raise BadRequest(f"{path}: symbolic links are not allowed in a skill")
            if info.is_dir():
                continue
            kind = stat.S_IFMT(mode)  # 0: made by a tool that records no file type
            if kind and kind != stat.S_IFREG:
                raise BadRequest(f"{path}: only regular files are allowed in a skill")
            if info.flag_bits & 0x1:
                raise BadRequest(f"{path}: encrypted entries are not allowed")
            room = out.room(path)
            if info.file_size > room:
                raise out.over(path, room)
            try:
                with archive.open(info) as stream:
                    content = _read_bounded(stream, room)
            except (zipfile.BadZipFile, NotImplementedError, OSError, zlib.error) as exc:
                raise BadRequest(f"{path}: cannot be read from the zip: {exc}") from None
            if content is None:
                raise out.over(path, room)
            out.add(path, content)


def _gunzip(data: bytes, cap: int) -> bytes:
    """The decompressed bytes of a gzip stream, refused past ``cap`` (a bomb stops there)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(data, cap + 1)
    except zlib.error as exc:
        raise BadRequest(f"the gzip stream is corrupt: {exc}") from None
    if len(raw) > cap or inflater.unconsumed_tail:
        raise TooLarge(f"the archive unpacks to over {cap} bytes")
    if not inflater.eof:
        raise BadRequest("the gzip stream is truncated")
    return raw


def _untar(data: bytes, out: _Collector) -> None:
    # tar adds a 512-byte header per file and pads to 512: allow for them beyond the total.
    limits = out.limits
    raw = _gunzip(data, limits.total_max + (limits.files_max + 8) * 1024 + 20 * 512)
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            for member in archive.getmembers():
                _tar_member(archive, member, out)
    except tarfile.TarError as exc:
        raise BadRequest(f"the tar archive is unreadable: {exc}") from None


def _tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo, out: _Collector) -> None:
    path = clean_path(member.name)
    if path is None:
        return
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise BadRequest(
            f"{path}: {kind} links are not allowed in a skill (to {member.linkname!r})"
        )
    if member.isdir():
        return
    if not member.isreg():
        raise BadRequest(f"{path}: only regular files are allowed in a skill")
    room = out.room(path)
    if member.size > room:
        raise out.over(path, room)
    stream = archive.extractfile(member)
    content = b"" if stream is None else _read_bounded(stream, room)
    if content is None:
        raise out.over(path, room)
    out.add(path, content)


def _rooted(out: _Collector) -> Unpacked:
    """Files at the top, or inside the archive's one top folder."""
    files = out.files
    if "SKILL.md" in files or not files:
        return Unpacked(files)
    tops = {p.split("/", 1)[0] for p in files}
    if len(tops) == 1 and all("/" in p for p in files):
        (top,) = tops
        return Unpacked({p.split("/", 1)[1]: v for p, v in files.items()}, folder=top)
    return Unpacked(files)


def unpack(data: bytes, limits: Limits) -> Unpacked:
    """The files of a zip or tar.gz archive (told apart by their first bytes).

    Raises:
        BadRequest: not a zip or gzip archive, unreadable, or an entry refused (above).
        TooLarge: over a count or size cap.
    """
    out = _Collector(limits)
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        _unzip(data, out)
    elif data[:2] == b"\x1f\x8b":
        _untar(data, out)
    else:
        raise BadRequest("the archive is neither a zip nor a tar.gz (by its first bytes)")
    return _rooted(out)


def read_folder(folder: Path, limits: Limits) -> Unpacked:
    """The files of a skill folder on disk, with the same checks as an archive (a symbolic
    link is refused, not followed)."""
    out = _Collector(limits)
    for current, dirs, names in os.walk(folder, followlinks=False):
        base = Path(current)
        for name in sorted(dirs):
            if (base / name).is_symlink():
                rel = (base / name).relative_to(folder).as_posix()
                raise BadRequest(f"{rel}: symbolic links are not allowed in a skill")
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(names):
            full = base / name
            cleaned = clean_path(full.relative_to(folder).as_posix())
            if cleaned is None:
                continue
            rel = cleaned
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                raise BadRequest(f"{rel}: symbolic links are not allowed in a skill")
            if not stat.S_ISREG(info.st_mode):
                raise BadRequest(f"{rel}: only regular files are allowed in a skill")
            room = out.room(rel)
            if info.st_size > room:
                raise out.over(rel, room)
            out.add(rel, full.read_bytes())
    return Unpacked(out.files, folder=folder.name)
