"""Wasm plugins over HTTP (tenant admins): install or replace (module + manifest in one
JSON body, the module base64-encoded), list with state and figures, enable, disable,
reload, remove; the manifest's JSON Schema. The runtime lives in extensions/plugins."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import Field

from ..core.plugin_control import PluginControl
from ..errors import BadRequest, NotFound
from .deps import ApiContext, Caller, Ctx
from .schemas import Strict

router = APIRouter(prefix="/v1", tags=["plugins"])
PluginName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


class PluginInstall(Strict):
    manifest: dict[str, Any] | str = Field(
        description="the manifest: a JSON object, or TOML text with manifest_format = toml"
    )
    manifest_format: Literal["json", "toml"] = "json"
    module: str = Field(min_length=8, description="the WebAssembly module, base64")


def _control(ctx: ApiContext, who: Any) -> PluginControl:
    ctx.access.require_tenant_admin(who)
    if ctx.plugins is None:
        raise NotFound("plugins are not enabled on this server")
    return ctx.plugins


@router.get("/plugins", summary="The tenant's plugins, with state (tenant admin)")
async def list_plugins(ctx: Ctx, who: Caller) -> dict[str, Any]:
    return {"plugins": _control(ctx, who).list(who.tenant)}


@router.get("/plugins/schema", summary="The plugin manifest's JSON Schema")
async def manifest_schema(ctx: Ctx, who: Caller) -> dict[str, Any]:
    return _control(ctx, who).schema()


@router.get("/plugins/{name}", summary="One plugin with its figures (tenant admin)")
async def get_plugin(ctx: Ctx, who: Caller, name: PluginName) -> dict[str, Any]:
    return _control(ctx, who).get(who.tenant, name)


@router.put(
    "/plugins/{name}",
    summary="Install or replace a plugin (tenant admin); a replacement is a hot reload",
    responses={201: {"description": "installed"}, 200: {"description": "replaced"}},
)
async def install_plugin(
    ctx: Ctx, who: Caller, name: PluginName, body: PluginInstall, response: Response
) -> dict[str, Any]:
    control = _control(ctx, who)
    try:
        module = base64.b64decode(body.module, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("module is not valid base64") from None
    view, created = await control.install(who, name, body.manifest, body.manifest_format, module)
    response.status_code = 201 if created else 200
    return view


@router.post("/plugins/{name}/enable", summary="Enable a plugin (and release a quarantine)")
async def enable_plugin(ctx: Ctx, who: Caller, name: PluginName) -> dict[str, Any]:
    return await _control(ctx, who).set_enabled(who.tenant, name, True)


@router.post("/plugins/{name}/disable", summary="Disable a plugin: no hook runs, events pass")
async def disable_plugin(ctx: Ctx, who: Caller, name: PluginName) -> dict[str, Any]:
    return await _control(ctx, who).set_enabled(who.tenant, name, False)


@router.post(
    "/plugins/{name}/reload", summary="Fresh instances (on_load again), quarantine released"
)
async def reload_plugin(ctx: Ctx, who: Caller, name: PluginName) -> dict[str, Any]:
    return await _control(ctx, who).reload(who.tenant, name)


@router.delete(
    "/plugins/{name}", status_code=204, response_class=Response, summary="Remove a plugin"
)
async def remove_plugin(ctx: Ctx, who: Caller, name: PluginName) -> Response:
    await _control(ctx, who).remove(who.tenant, name)
    return Response(status_code=204)
