"""End-to-end encryption keys: POST /keys/upload, /keys/query, /keys/claim,
/keys/device_signing/upload and /keys/signatures/upload (homeserver/e2ee/)."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, field, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError


def _bad(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", message)


async def upload_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await read_json(request, allow_empty=True)
    for name in ("device_keys", "one_time_keys", "fallback_keys"):
        field(body, name, dict)
    counts = await get_hs(request).keys.upload(req.user_id, req.device_id, body)
    return json_response({"one_time_key_counts": counts})


async def query_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await read_json(request)
    wanted = field(body, "device_keys", dict, required=True)
    parsed: dict[str, list[str]] = {}
    for user_id, devices in wanted.items():
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise _bad("device_keys must map user IDs to lists of device IDs")
        parsed[user_id] = list(dict.fromkeys(devices))
    return json_response(await get_hs(request).keys.query(req.user_id, parsed))


async def claim_keys(request: web.Request) -> web.Response:
    await requester(request)
    body = await read_json(request)
    wanted = field(body, "one_time_keys", dict, required=True)
    parsed: dict[str, dict[str, str]] = {}
    for user_id, devices in wanted.items():
        if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
            raise _bad("one_time_keys must map user IDs to objects of device IDs to algorithms")
        parsed[user_id] = devices
    return json_response(await get_hs(request).keys.claim(parsed))


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/keys/upload", upload_keys)
    routes.add("POST", "/keys/query", query_keys)
    routes.add("POST", "/keys/claim", claim_keys)
