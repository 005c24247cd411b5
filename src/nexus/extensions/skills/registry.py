"""The skills installed per tenant, by scope, with every version kept.

A skill is installed in one scope: ``tenant``, ``room:<name>`` or ``agent:<name>`` (over
the HTTP API), or ``server`` (the ``skills_dir`` folder, for every tenant, read at start
and not persisted: the folder is the source). Looking a name up for an agent in a room
takes the first scope that has it: agent, room, tenant, server.

Every version of a (tenant, scope, name) is kept, numbered from 1; the highest number is
the active one. Installing content already kept (the same digest) makes it active again
under the next number instead of adding a copy.

LMDB database ``skill``, written through the pipeline's ``submit_meta``:
``v\\x1f<tenant>\\x1f<scope>\\x1f<name>\\x1f<digest>`` holds a version's record (its parsed
SKILL.md and file sizes), ``f\\x1f<digest>\\x1f<path>`` a file's bytes, shared by every
version with that digest and deleted with the last of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ...core.extension_host import ExtensionHost
from ...errors import NexusError, NotFound
from .archive import Limits, read_folder
from .bundle import SkillBundle, build_bundle, script_paths
from .scripts import SkillScripts
from .skillfile import SkillDoc

log = logging.getLogger(__name__)

DB = "skill"
ALL_TENANTS = "*"
SERVER_SCOPE = "server"
TENANT_SCOPE = "tenant"


def version_key(tenant: str, scope: str, name: str, digest: str) -> bytes:
    return f"v\x1f{tenant}\x1f{scope}\x1f{name}\x1f{digest}".encode()


def file_key(digest: str, path: str) -> bytes:
    return f"f\x1f{digest}\x1f{path}".encode()


@dataclass
class SkillVersion:
    tenant: str  # or ALL_TENANTS (a server skill)
    scope: str
    doc: SkillDoc
    digest: str
    version: int
    sizes: dict[str, int]  # path -> bytes
    source: str = "api"  # api | folder
    installed_at: int = 0
    installed_by: str = ""
    files: dict[str, bytes] | None = field(default=None, repr=False)  # folder skills only

    @property
    def name(self) -> str:
        return self.doc.name

    @property
    def scripts(self) -> list[str]:
        return script_paths(self.sizes)

    def record(self) -> bytes:
        doc = self.doc
        return orjson.dumps(
            {
                "tenant": self.tenant,
                "scope": self.scope,
                "name": doc.name,
                "description": doc.description,
                "body": doc.body,
                "license": doc.license,
                "compatibility": doc.compatibility,
                "metadata": doc.metadata,
                "allowed_tools": list(doc.allowed_tools),
                "digest": self.digest,
                "version": self.version,
                "files": self.sizes,
                "installed_at": self.installed_at,
                "installed_by": self.installed_by,
            }
        )

    @classmethod
    def from_record(cls, raw: bytes) -> SkillVersion:
        rec = orjson.loads(raw)
        doc = SkillDoc(
            name=rec["name"],
            description=rec["description"],
            body=rec["body"],
            license=rec.get("license"),
            compatibility=rec.get("compatibility"),
            metadata=dict(rec.get("metadata") or {}),
            allowed_tools=tuple(rec.get("allowed_tools") or ()),
        )
        return cls(
            rec["tenant"],
            rec["scope"],
            doc,
            rec["digest"],
            int(rec["version"]),
            {str(k): int(v) for k, v in rec["files"].items()},
            installed_at=int(rec.get("installed_at", 0)),
            installed_by=str(rec.get("installed_by", "")),
        )


class SkillRegistry:
    def __init__(self, host: ExtensionHost) -> None:
        self.host = host
        settings = host.settings
        self.limits = Limits(
            settings.skill_files_max, settings.skill_file_max_bytes, settings.skill_total_max_bytes
        )
        self.scripts = SkillScripts(settings)
        # (tenant, scope, name) -> versions, oldest first (the last is active)
        self._versions: dict[tuple[str, str, str], list[SkillVersion]] = {}
        self._lock = asyncio.Lock()  # one install or removal at a time: version numbers

    # -- start ----------------------------------------------------------------------
    def load(self) -> None:
        """Read the API installs from LMDB and the ``skills_dir`` folder (before serving)."""
        for key, raw in self.host.store.records(DB, b"v\x1f"):
            try:
                version = SkillVersion.from_record(raw)
            except (KeyError, ValueError, TypeError) as exc:
                log.error("skill record %s not loaded: %s", key.decode(errors="replace"), exc)
                continue
            self._versions.setdefault((version.tenant, version.scope, version.name), []).append(
                version
            )
        for versions in self._versions.values():
            versions.sort(key=lambda v: v.version)
        folder = self.host.settings.skills_dir
        if folder:
            for version in self._from_folder(Path(folder)):
                self._versions[(ALL_TENANTS, SERVER_SCOPE, version.name)] = [version]

    def _from_folder(self, folder: Path) -> Iterator[SkillVersion]:
        if not folder.is_dir():
            log.error("skills_dir %s is not a folder: no server skills", folder)
            return
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
            try:
                bundle = build_bundle(read_folder(sub, self.limits))
                self.check_scripts(bundle)
            except (NexusError, OSError) as exc:
                message = exc.message if isinstance(exc, NexusError) else str(exc)
                log.error("skill folder %s not loaded: %s", sub, message)
                continue
            yield SkillVersion(
                ALL_TENANTS,
                SERVER_SCOPE,
                bundle.doc,
                bundle.digest,
                1,
                bundle.sizes(),
                source="folder",
                installed_at=int(time.time() * 1000),
                files=bundle.files,
            )

    def check_scripts(self, bundle: SkillBundle) -> None:
        """BadRequest naming the first script that is not a runnable Wasm module."""
        for path in script_paths(bundle.files):
            self.scripts.check(path, bundle.files[path])

    # -- lookups ----------------------------------------------------------------------
    @staticmethod
    def scopes(room: str | None, agent: str | None) -> list[str]:
        """The scopes a lookup for ``agent`` in ``room`` reads, first one wins."""
        order = [f"agent:{agent}"] if agent else []
        if room:
            order.append(f"room:{room}")
        return [*order, TENANT_SCOPE, SERVER_SCOPE]

    def _active(self, tenant: str, scope: str, name: str) -> SkillVersion | None:
        owner = ALL_TENANTS if scope == SERVER_SCOPE else tenant
        versions = self._versions.get((owner, scope, name))
        return versions[-1] if versions else None

    def resolve(
        self, tenant: str, name: str, room: str | None = None, agent: str | None = None
    ) -> SkillVersion | None:
        """The active version of ``name`` for ``agent`` in ``room`` (first scope wins)."""
        for scope in self.scopes(room, agent):
            found = self._active(tenant, scope, name)
            if found is not None:
                return found
        return None

    def effective(
        self, tenant: str, room: str | None = None, agent: str | None = None
    ) -> list[SkillVersion]:
        """One active version per name that ``agent`` sees in ``room``, by name."""
        wanted = self.scopes(room, agent)
        rank = {scope: i for i, scope in enumerate(wanted)}
        best: dict[str, SkillVersion] = {}
        for (owner, scope, name), versions in self._versions.items():
            if scope not in rank or owner not in (tenant, ALL_TENANTS) or not versions:
                continue
            if scope == SERVER_SCOPE and owner != ALL_TENANTS:
                continue
            current = best.get(name)
            if current is None or rank[scope] < rank[current.scope]:
                best[name] = versions[-1]
        return [best[n] for n in sorted(best)]

    def versions(self, tenant: str, scope: str, name: str) -> list[SkillVersion]:
        owner = ALL_TENANTS if scope == SERVER_SCOPE else tenant
        return list(self._versions.get((owner, scope, name), ()))

    def installed(self, tenant: str) -> list[SkillVersion]:
        """The active version of every (scope, name) of the tenant, and the server's."""
        out = [
            versions[-1]
            for (owner, _, _), versions in self._versions.items()
            if versions and owner in (tenant, ALL_TENANTS)
        ]
        return sorted(out, key=lambda v: (v.name, v.scope))

    def has_any(self, tenant: str) -> bool:
        return any(owner in (tenant, ALL_TENANTS) for owner, _, _ in self._versions)

    def read(self, version: SkillVersion, path: str) -> bytes:
        """One file of a version (NotFound if it has no such file)."""
        if path not in version.sizes:
            raise NotFound(f"skill {version.name} has no file {path}")
        if version.files is not None:
            return version.files[path]
        data = self.host.store.record(DB, file_key(version.digest, path))
        if data is None:
            raise NotFound(f"skill {version.name}: file {path} is missing from the store")
        return bytes(data)

    # -- changes -----------------------------------------------------------------------
    async def install(
        self, tenant: str, scope: str, bundle: SkillBundle, by: str
    ) -> tuple[SkillVersion, bool]:
        """Add ``bundle`` as the active version in ``scope``: (version, new content?)."""
        async with self._lock:
            key = (tenant, scope, bundle.name)
            versions = self._versions.get(key, [])
            number = versions[-1].version + 1 if versions else 1
            same = next((v for v in versions if v.digest == bundle.digest), None)
            if same is not None and same is versions[-1]:
                return same, False
            version = SkillVersion(
                tenant,
                scope,
                bundle.doc,
                bundle.digest,
                number,
                bundle.sizes(),
                installed_at=int(time.time() * 1000),
                installed_by=by,
            )
            ops: list[tuple[str, bytes, bytes | None]] = [
                (DB, version_key(tenant, scope, bundle.name, bundle.digest), version.record())
            ]
            if not self._digest_kept(bundle.digest):
                ops.extend((DB, file_key(bundle.digest, p), d) for p, d in bundle.files.items())
            await self.host.pipeline.submit_meta(ops)
            kept = [v for v in versions if v.digest != bundle.digest]
            self._versions[key] = [*kept, version]
            return version, same is None

    async def remove(self, tenant: str, scope: str, name: str) -> int:
        """Remove every version of ``name`` in ``scope``; how many there were."""
        async with self._lock:
            key = (tenant, scope, name)
            versions = self._versions.get(key)
            if not versions:
                raise NotFound(f"no skill {name} in scope {scope}")
            del self._versions[key]
            ops: list[tuple[str, bytes, bytes | None]] = []
            for v in versions:
                ops.append((DB, version_key(tenant, scope, name, v.digest), None))
                if not self._digest_kept(v.digest):
                    ops.extend((DB, file_key(v.digest, p), None) for p in v.sizes)
            try:
                await self.host.pipeline.submit_meta(ops)
            except BaseException:
                self._versions[key] = versions
                raise
            return len(versions)

    def _digest_kept(self, digest: str) -> bool:
        return any(
            v.digest == digest and v.files is None
            for versions in self._versions.values()
            for v in versions
        )

    def describe(self, version: SkillVersion) -> dict[str, Any]:
        """The public view of a version (no body)."""
        doc = version.doc
        return {
            "name": doc.name,
            "description": doc.description,
            "digest": version.digest,
            "version": version.version,
            "scope": version.scope,
            "source": version.source,
            "license": doc.license,
            "compatibility": doc.compatibility,
            "metadata": doc.metadata,
            "allowed_tools": list(doc.allowed_tools),
            "files": version.sizes,
            "scripts": version.scripts,
            "installed_at": version.installed_at,
            "installed_by": version.installed_by,
        }
