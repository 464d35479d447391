"""The media admin API, as Synapse has it: a user's media, deleting and quarantining
files (one, or every file a room's events mention), and purging the remote cache."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.admin.common import (
    ADMIN_V1,
    audit,
    query_choice,
    query_int,
    require_admin,
    room_id_param,
    user_id_param,
)
from homeserver.api.http import get_hs, json_response
from homeserver.errors import MatrixError
from homeserver.media.ids import valid_media_id, valid_server_name
from homeserver.records.media import MediaInfo

ORDER_BY = ("media_id", "upload_name", "created_ts", "last_access_ts", "media_length", "media_type",
            "quarantined_by", "safe_from_quarantine")


def _media_json(info: MediaInfo) -> dict[str, Any]:
    return {
        "media_id": info.media_id,
        "media_type": info.content_type,
        "media_length": info.size,
        "upload_name": info.filename,
        "created_ts": info.created_ts,
        "last_access_ts": info.last_access_ts,
        "quarantined_by": info.quarantined_by,
        "safe_from_quarantine": False,
    }


def _media_path(request: web.Request) -> tuple[str, str]:
    server_name, media_id = request.match_info["server_name"], request.match_info["media_id"]
    if not valid_server_name(server_name) or not valid_media_id(media_id):
        raise MatrixError(404, "M_NOT_FOUND", "Unknown media")
    return server_name, media_id


async def list_user_media(request: web.Request) -> web.Response:
    await require_admin(request)
    user_id = user_id_param(request)
    start = query_int(request, "from", 0)
    limit = query_int(request, "limit", 100)
    order_by = query_choice(request, "order_by", ORDER_BY, "created_ts")
    direction = query_choice(request, "dir", ("f", "b"), "f")
    media, total = await get_hs(request).media.list_user_media(user_id, start, limit, order_by, direction)
    body: dict[str, Any] = {"media": [_media_json(m) for m in media], "total": total}
    if start + len(media) < total:
        body["next_token"] = start + len(media)
    return json_response(body)


async def delete_user_media(request: web.Request) -> web.Response:
    req = await require_admin(request)
    user_id = user_id_param(request)
    hs = get_hs(request)
    ids = [m.media_id for m in (await hs.media.list_user_media(user_id, 0, 1 << 31, "created_ts", "f"))[0]]
    deleted = [media_id for media_id in ids if await hs.media.delete(hs.config.server_name, media_id)]
    await audit(request, req, "admin.media.delete_user_media", target=user_id, details={"count": len(deleted)})
    return json_response({"deleted_media": deleted, "total": len(deleted)})


async def get_media(request: web.Request) -> web.Response:
    await require_admin(request)
    server_name, media_id = _media_path(request)
    info = await get_hs(request).media.info(server_name, media_id)
    if info is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown media")
    body = _media_json(info) | {"media_origin": info.origin, "user_id": info.uploader, "sha256": info.sha256}
    return json_response({"media_info": body})


async def delete_media(request: web.Request) -> web.Response:
    req = await require_admin(request)
    server_name, media_id = _media_path(request)
    hs = get_hs(request)
    if server_name != hs.config.server_name:
        raise MatrixError(400, "M_UNKNOWN", "Can only delete local media")
    if not await hs.media.delete(server_name, media_id):
        raise MatrixError(404, "M_NOT_FOUND", "Unknown media")
    await audit(request, req, "admin.media.delete", target=f"mxc://{server_name}/{media_id}")
    return json_response({"deleted_media": [media_id], "total": 1})


async def quarantine_media(request: web.Request) -> web.Response:
    req = await require_admin(request)
    server_name, media_id = _media_path(request)
    await get_hs(request).media.quarantine(server_name, media_id, req.user_id)
    await audit(request, req, "admin.media.quarantine", target=f"mxc://{server_name}/{media_id}")
    return json_response({})


async def unquarantine_media(request: web.Request) -> web.Response:
    req = await require_admin(request)
    server_name, media_id = _media_path(request)
    await get_hs(request).media.quarantine(server_name, media_id, None)
    await audit(request, req, "admin.media.unquarantine", target=f"mxc://{server_name}/{media_id}")
    return json_response({})


async def quarantine_room_media(request: web.Request) -> web.Response:
    req = await require_admin(request)
    room_id = room_id_param(request)
    count = await get_hs(request).media.quarantine_room_media(room_id, req.user_id)
    await audit(request, req, "admin.media.quarantine_room", target=room_id, details={"count": count})
    return json_response({"num_quarantined": count})


async def list_room_media(request: web.Request) -> web.Response:
    await require_admin(request)
    local, remote = await get_hs(request).media.room_media(room_id_param(request))
    return json_response({"local": local, "remote": remote})


async def purge_media_cache(request: web.Request) -> web.Response:
    req = await require_admin(request)
    if "before_ts" not in request.query:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing integer query parameter 'before_ts'")
    before_ts = query_int(request, "before_ts", 0)
    deleted = await get_hs(request).media.purge_remote_cache(before_ts)
    await audit(request, req, "admin.media.purge_cache", details={"before_ts": before_ts, "deleted": deleted})
    return json_response({"deleted": deleted})


def register(app: web.Application) -> None:
    r = app.router
    r.add_get(ADMIN_V1 + "/users/{user_id}/media", list_user_media)
    r.add_delete(ADMIN_V1 + "/users/{user_id}/media", delete_user_media)
    r.add_get(ADMIN_V1 + "/media/{server_name}/{media_id}", get_media)
    r.add_delete(ADMIN_V1 + "/media/{server_name}/{media_id}", delete_media)
    r.add_post(ADMIN_V1 + "/media/quarantine/{server_name}/{media_id}", quarantine_media)
    r.add_post(ADMIN_V1 + "/media/unquarantine/{server_name}/{media_id}", unquarantine_media)
    for prefix in ("/room", "/rooms"):
        r.add_post(ADMIN_V1 + prefix + "/{room_id}/media/quarantine", quarantine_room_media)
        r.add_get(ADMIN_V1 + prefix + "/{room_id}/media", list_room_media)
    r.add_post(ADMIN_V1 + "/purge_media_cache", purge_media_cache)
