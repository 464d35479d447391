"""Synapse's device admin API, so operators' tools (and the console) manage a user's devices:

    GET    /_synapse/admin/v2/users/{user_id}/devices               -> {"devices": [...], "total": n}
    GET    /_synapse/admin/v2/users/{user_id}/devices/{device_id}   -> one device
    PUT    /_synapse/admin/v2/users/{user_id}/devices/{device_id}   {"display_name": str} -> {}
    DELETE /_synapse/admin/v2/users/{user_id}/devices/{device_id}   -> {} (also when already gone)
    POST   /_synapse/admin/v2/users/{user_id}/delete_devices        {"devices": [str]} -> {}

A device is shown as Synapse shows it: device_id, display_name, last_seen_ip,
last_seen_ts, last_seen_user_agent, user_id. Deleting a device logs it out (its tokens
go with it) and tells the device lists, exactly as a user's own logout does.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.admin.common import ADMIN_V2, audit, require_admin, user_id_param
from homeserver.api.http import get_hs, json_response, read_json
from homeserver.errors import MatrixError

MAX_DISPLAY_NAME = 100  # what the client API allows a device name
MAX_DELETE = 1000


def _device_id(request: web.Request) -> str:
    device_id = request.match_info["device_id"]
    if not device_id or len(device_id) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid device ID")
    return device_id


async def list_devices(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Can only lookup local users")
    devices = await hs.user_admin.list_devices(user_id)
    return json_response({"devices": devices, "total": len(devices)})


async def get_device(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Can only lookup local users")
    return json_response(await hs.user_admin.get_device(user_id, _device_id(request)))


async def put_device(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Can only lookup local users")
    device_id = _device_id(request)
    body = await read_json(request)
    name = body.get("display_name")
    if name is not None and not isinstance(name, str):
        raise MatrixError(400, "M_BAD_JSON", "'display_name' must be a string")
    if name is not None and len(name) > MAX_DISPLAY_NAME:
        raise MatrixError(400, "M_TOO_LARGE", f"'display_name' is longer than {MAX_DISPLAY_NAME} characters")
    await hs.user_admin.rename_device(user_id, device_id, name)
    await audit(request, req, "admin.device.rename", target=user_id, details={"device_id": device_id})
    return json_response({})


async def delete_device(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Can only lookup local users")
    device_id = _device_id(request)
    await hs.user_admin.delete_devices(user_id, [device_id])
    await audit(request, req, "admin.device.delete", target=user_id, details={"devices": [device_id]})
    return json_response({})


async def delete_devices(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Can only lookup local users")
    body = await read_json(request)
    devices: Any = body.get("devices")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise MatrixError(400, "M_BAD_JSON" if "devices" in body else "M_MISSING_PARAM",
                          "'devices' must be a list of device IDs")
    if len(devices) > MAX_DELETE:
        raise MatrixError(400, "M_TOO_LARGE", f"At most {MAX_DELETE} devices at a time")
    await hs.user_admin.delete_devices(user_id, list(dict.fromkeys(devices)))
    await audit(request, req, "admin.device.delete", target=user_id, details={"devices": devices[:50]})
    return json_response({})


def register(app: web.Application) -> None:
    r = app.router
    r.add_get(ADMIN_V2 + "/users/{user_id}/devices", list_devices)
    r.add_get(ADMIN_V2 + "/users/{user_id}/devices/{device_id}", get_device)
    r.add_put(ADMIN_V2 + "/users/{user_id}/devices/{device_id}", put_device)
    r.add_delete(ADMIN_V2 + "/users/{user_id}/devices/{device_id}", delete_device)
    r.add_post(ADMIN_V2 + "/users/{user_id}/delete_devices", delete_devices)
