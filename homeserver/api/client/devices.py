"""Device management: list, query, rename and delete devices."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.http import (
    ClientRoutes,
    client_ip,
    field,
    get_hs,
    json_response,
    read_json,
    requester,
)
from homeserver.errors import MatrixError, not_found
from homeserver.records.devices import DeviceRecord

PASSWORD_FLOWS = [["m.login.password"]]


def _device_json(d: DeviceRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"device_id": d.device_id}
    if d.display_name is not None:
        out["display_name"] = d.display_name
    if d.last_seen_ip is not None:
        out["last_seen_ip"] = d.last_seen_ip
    if d.last_seen_ts is not None:
        out["last_seen_ts"] = d.last_seen_ts
    return out


async def get_devices(request: web.Request) -> web.Response:
    req = await requester(request)
    devices = await get_hs(request).accounts.list_devices(req.user_id)
    return json_response({"devices": [_device_json(d) for d in devices]})


async def get_device(request: web.Request) -> web.Response:
    req = await requester(request)
    d = await get_hs(request).accounts.get_device(req.user_id, request.match_info["device_id"])
    if d is None:
        raise not_found("Device not found")
    return json_response(_device_json(d))


async def put_device(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await read_json(request, allow_empty=True)
    name = field(body, "display_name", str)
    if name is not None and len(name) > 100:
        raise MatrixError(400, "M_INVALID_PARAM", "Device display name is too long (max 100)")
    hs = get_hs(request)
    device_id = request.match_info["device_id"]
    if name is None:
        # The spec: without display_name the name is unchanged (not cleared).
        if await hs.accounts.get_device(req.user_id, device_id) is None:
            raise not_found("Device not found")
        return json_response({})
    if not await hs.accounts.rename_device(req.user_id, device_id, name):
        raise not_found("Device not found")
    return json_response({})


async def delete_device(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    device_id = request.match_info["device_id"]
    body = await read_json(request, allow_empty=True)
    # No 404 for an unknown device: the spec answers 200 for a device "removed
    # previously", so a client retrying a deletion whose answer it lost still succeeds.
    uia = await hs.uia.check(
        body, uri=f"/devices/{device_id}", method="DELETE", flows=PASSWORD_FLOWS, requester=req
    )
    await hs.auth.delete_devices(req.user_id, [device_id])
    await hs.uia.finish(uia)
    await hs.audit.record(
        "device.delete", actor=req.user_id, target=req.user_id, ip=client_ip(request),
        details={"device_ids": [device_id]},
    )
    return json_response({})


async def post_delete_devices(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request)
    devices = field(body, "devices", list, required=True)
    if not all(isinstance(d, str) for d in devices):
        raise MatrixError(400, "M_BAD_JSON", "Field 'devices' must be an array of strings")
    uia = await hs.uia.check(
        body, uri="/delete_devices", method="POST", flows=PASSWORD_FLOWS, requester=req
    )
    await hs.auth.delete_devices(req.user_id, list(dict.fromkeys(devices)))
    await hs.uia.finish(uia)
    await hs.audit.record(
        "device.delete", actor=req.user_id, target=req.user_id, ip=client_ip(request),
        details={"device_ids": list(dict.fromkeys(devices))},
    )
    return json_response({})


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/devices", get_devices)
    routes.add("GET", "/devices/{device_id}", get_device)
    routes.add("PUT", "/devices/{device_id}", put_device)
    routes.add("DELETE", "/devices/{device_id}", delete_device)
    routes.add("POST", "/delete_devices", post_delete_devices)
