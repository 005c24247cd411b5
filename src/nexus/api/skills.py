"""Agent Skills over HTTP: tenant admins install (the request body is the skill's zip or
tar.gz archive) and remove; everyone in the tenant reads the skills they may see. The
registry lives in extensions/skills (docs/skills.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from ..auth import Principal
from ..core.skill_control import SkillControl
from ..errors import BadRequest, NotFound
from .deps import ApiContext, Caller, Ctx, visible_room

router = APIRouter(prefix="/v1", tags=["skills"])
SkillName = Annotated[str, Path(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]
Scope = Annotated[
    str,
    Query(max_length=200, description="tenant (default), room:<name> or agent:<name>"),
]
ARCHIVE_TYPES = frozenset(
    {
        "application/zip",
        "application/x-zip-compressed",
        "application/gzip",
        "application/x-gzip",
        "application/x-tar+gzip",
        "application/x-compressed-tar",
        "application/octet-stream",
    }
)


def _control(ctx: ApiContext) -> SkillControl:
    if ctx.skills is None:
        raise NotFound("skills are not enabled on this server")
    return ctx.skills


def _readable(ctx: ApiContext, who: Principal, scope: str) -> None:
    """A room scope is read by those who may see the room."""
    if scope.startswith("room:"):
        visible_room(ctx, who, scope[len("room:") :])


@router.get("/skills", summary="The skills the caller sees (for a room and an agent)")
async def list_skills(
    ctx: Ctx,
    who: Caller,
    room: Annotated[str | None, Query(max_length=200)] = None,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    installed: Annotated[bool, Query(description="every scope's installs (admins)")] = False,
) -> dict[str, Any]:
    control = _control(ctx)
    if installed:
        ctx.access.require_tenant_admin(who)
        return {"skills": control.installed(who.tenant)}
    if room is not None:
        visible_room(ctx, who, room)
    return {"skills": control.visible(who.tenant, room, agent)}


@router.get("/skills/{name}", summary="One skill: its active version and every kept version")
async def get_skill(
    ctx: Ctx,
    who: Caller,
    name: SkillName,
    scope: Scope | None = None,
    room: Annotated[str | None, Query(max_length=200)] = None,
    agent: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    control = _control(ctx)
    if scope is None:
        if room is not None:
            visible_room(ctx, who, room)
        scope = control.load(who.tenant, name, room, agent)["scope"]
    _readable(ctx, who, scope)
    versions = control.versions(who.tenant, name, scope)
    return {**versions[0], "versions": versions}


@router.get("/skills/{name}/versions/{digest}", summary="One kept version with its instructions")
async def get_version(
    ctx: Ctx, who: Caller, name: SkillName, digest: str, scope: Scope = "tenant"
) -> dict[str, Any]:
    _readable(ctx, who, scope)
    return _control(ctx).version(who.tenant, name, scope, digest)


@router.get(
    "/skills/{name}/versions/{digest}/files/{path:path}",
    summary="One file of a kept version (its bytes)",
    response_class=Response,
    responses={
        200: {
            "description": "the file: text/plain when it is UTF-8",
            "content": {"text/plain": {}, "application/octet-stream": {}},
        }
    },
)
async def get_file(
    ctx: Ctx, who: Caller, name: SkillName, digest: str, path: str, scope: Scope = "tenant"
) -> Response:
    _readable(ctx, who, scope)
    data = _control(ctx).read_file(who.tenant, name, scope, digest, path)
    try:
        data.decode("utf-8")
        kind = "text/plain; charset=utf-8"
    except UnicodeDecodeError:
        kind = "application/octet-stream"
    return Response(data, media_type=kind)


@router.put(
    "/skills/{name}",
    summary="Install a skill from a zip or tar.gz archive (tenant admin)",
    responses={
        201: {"description": "a new version, now active"},
        200: {"description": "this content was kept already: it is the active version"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            # Sent as application/zip or application/gzip; documented as octet-stream (also
            # accepted), the binary type OpenAPI tools know how to send.
            "description": "the skill's zip or tar.gz archive (application/zip, application/gzip)",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def install_skill(
    ctx: Ctx,
    who: Caller,
    name: SkillName,
    request: Request,
    response: Response,
    scope: Scope = "tenant",
) -> dict[str, Any]:
    ctx.access.require_tenant_admin(who)
    control = _control(ctx)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ARCHIVE_TYPES:
        raise BadRequest(
            "the body is the skill's archive: content-type application/zip or application/gzip"
            f" (tar.gz), got {kind or 'none'!r}"
        )
    view, created = await control.install(who, name, scope, await request.body())
    response.status_code = 201 if created else 200
    return view


@router.delete(
    "/skills/{name}",
    status_code=204,
    response_class=Response,
    summary="Remove a skill and every kept version of it from one scope (tenant admin)",
)
async def remove_skill(ctx: Ctx, who: Caller, name: SkillName, scope: Scope = "tenant") -> Response:
    ctx.access.require_tenant_admin(who)
    await _control(ctx).remove(who.tenant, name, scope)
    return Response(status_code=204)
