"""Synapse's room admin API: list, details, members, state, block, and delete (v1, and
v2 with its delete status)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.admin.rooms import ShutdownParams
from homeserver.api.admin.common import (
    ADMIN_V1,
    ADMIN_V2,
    audit,
    body_bool,
    query_choice,
    query_int,
    query_optional_bool,
    require_admin,
    room_id_param,
)
from homeserver.api.http import get_hs, json_response, read_json
from homeserver.errors import MatrixError
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.client_format import client_event

# Orders Synapse documents as "largest to smallest" going forwards.
_DESCENDING = {"joined_members", "joined_local_members", "version", "state_events"}
_ORDERS = {
    "alphabetical": "name", "size": "joined_members",  # deprecated aliases
    **{k: k for k in (
        "name", "canonical_alias", "joined_members", "joined_local_members", "version", "creator",
        "encryption", "federatable", "public", "join_rules", "guest_access", "history_visibility",
        "state_events",
    )},
}


async def _room(request: web.Request) -> RoomRecord:
    room = await get_hs(request).room_admin.get_room(room_id_param(request))
    if room is None:
        raise MatrixError(404, "M_NOT_FOUND", "Room not found")
    return room


async def list_rooms(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    start = query_int(request, "from", 0)
    limit = query_int(request, "limit", 100)
    order_by = _ORDERS[query_choice(request, "order_by", tuple(_ORDERS), "name")]
    backwards = query_choice(request, "dir", ("f", "b"), "f") == "b"
    search_term = request.query.get("search_term")
    if search_term == "":
        raise MatrixError(400, "M_INVALID_PARAM", "search_term cannot be an empty string")
    rooms = await hs.room_admin.list_rooms(
        search_term, query_optional_bool(request, "public_rooms"), query_optional_bool(request, "empty_rooms")
    )

    def key(s: dict[str, Any]) -> tuple[Any, ...]:
        value = s[order_by]
        if order_by == "version":
            value = int(value) if str(value).isdigit() else 0
        if order_by in _DESCENDING:
            return (False, -value, "", s["room_id"])
        if isinstance(value, str):  # as people read names: case aside
            return (False, value.lower(), value, s["room_id"])
        # Rooms without the field sort after those with it.
        return (value is None, value if value is not None else "", "", s["room_id"])

    rooms.sort(key=key, reverse=backwards)
    page = rooms[start : start + limit]
    out: dict[str, Any] = {"rooms": page, "offset": start, "total_rooms": len(rooms)}
    if start + limit < len(rooms):
        out["next_batch"] = start + len(page)
    if start > 0:
        out["prev_batch"] = max(0, start - limit)
    return json_response(out)


async def get_room(request: web.Request) -> web.Response:
    await require_admin(request)
    room = await _room(request)
    return json_response(await get_hs(request).room_admin.summary(room, details=True))


async def get_members(request: web.Request) -> web.Response:
    await require_admin(request)
    room = await _room(request)
    members = await get_hs(request).room_admin.joined_members(room)
    return json_response({"members": members, "total": len(members)})


async def get_state(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    room = await _room(request)
    wanted = request.query.get("type")
    events = await hs.room_service.current_state_events(room)
    now = hs.clock.time_ms()
    state = [
        client_event(ev, room.room_id, room.room_version, now)
        for key, ev in sorted(events.items())
        if wanted is None or key[0] == wanted
    ]
    return json_response({"state": state})


def _shutdown_params(body: dict[str, Any], requester: str) -> ShutdownParams:
    params = ShutdownParams(
        requester=requester,
        block=body_bool(body, "block", False),
        purge=body_bool(body, "purge", True),
        force_purge=body_bool(body, "force_purge", False),
    )
    for name in ("new_room_user_id", "room_name", "message"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise MatrixError(400, "M_BAD_JSON", f"Param '{name}' must be a string, if given")
    params.new_room_user_id = body.get("new_room_user_id")
    params.room_name = body.get("room_name")
    params.message = body.get("message")
    return params


async def delete_room_v1(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    room_id = room_id_param(request)
    params = _shutdown_params(await read_json(request, allow_empty=True), req.user_id)
    try:
        result = await hs.room_admin.shutdown(room_id, params)
        if params.purge:
            await hs.room_admin.purge(room_id, force=params.force_purge, missing_ok=params.block)
    except MatrixError as e:
        await audit(request, req, "admin.room.delete", target=room_id, outcome="failed",
                    details={"error": e.message})
        raise
    await audit(request, req, "admin.room.delete", target=room_id,
                details={"block": params.block, "purge": params.purge, "kicked": result["kicked_users"]})
    return json_response(result)


async def delete_room_v2(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    room_id = room_id_param(request)
    # The v2 API wants at least "{}".
    params = _shutdown_params(await read_json(request), req.user_id)
    task = await hs.room_admin.delete_room(room_id, params)
    await audit(
        request, req, "admin.room.delete", target=room_id,
        outcome="ok" if task.error is None else "failed",
        details={"delete_id": task.delete_id, "block": params.block, "purge": params.purge,
                 "status": task.status, "error": task.error},
    )
    return json_response({"delete_id": task.delete_id})


async def get_delete_status_by_room(request: web.Request) -> web.Response:
    await require_admin(request)
    room_id = room_id_param(request)
    tasks = get_hs(request).room_admin.tasks_for_room(room_id)
    if not tasks:
        raise MatrixError(404, "M_NOT_FOUND", f"No delete task for room_id '{room_id}' found")
    return json_response({"results": [t.to_json() for t in tasks]})


async def get_delete_status(request: web.Request) -> web.Response:
    await require_admin(request)
    delete_id = request.match_info["delete_id"]
    task = get_hs(request).room_admin.task(delete_id)
    if task is None:
        raise MatrixError(404, "M_NOT_FOUND", f"delete id '{delete_id}' not found")
    return json_response(task.to_json())


async def get_block(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    by = await hs.room_admin.blocked_by(room_id_param(request))
    return json_response({"block": True, "user_id": by} if by is not None else {"block": False})


async def put_block(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    room_id = room_id_param(request)
    body = await read_json(request)
    if not isinstance(body.get("block"), bool):
        raise MatrixError(400, "M_BAD_JSON", "Param 'block' must be a boolean.")
    await hs.room_admin.set_blocked(room_id, body["block"], req.user_id)
    await audit(request, req, "admin.room.block", target=room_id, details={"block": body["block"]})
    return json_response({"block": body["block"]})


def register(app: web.Application) -> None:
    r = app.router
    r.add_get(ADMIN_V1 + "/rooms", list_rooms)
    r.add_get(ADMIN_V1 + "/rooms/{room_id}", get_room)
    r.add_delete(ADMIN_V1 + "/rooms/{room_id}", delete_room_v1)
    r.add_get(ADMIN_V1 + "/rooms/{room_id}/members", get_members)
    r.add_get(ADMIN_V1 + "/rooms/{room_id}/state", get_state)
    r.add_get(ADMIN_V1 + "/rooms/{room_id}/block", get_block)
    r.add_put(ADMIN_V1 + "/rooms/{room_id}/block", put_block)
    # The fixed path first: "delete_status" must not be taken for a room ID.
    r.add_get(ADMIN_V2 + "/rooms/delete_status/{delete_id}", get_delete_status)
    r.add_delete(ADMIN_V2 + "/rooms/{room_id}", delete_room_v2)
    r.add_get(ADMIN_V2 + "/rooms/{room_id}/delete_status", get_delete_status_by_room)
