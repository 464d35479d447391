"""End-to-end encryption keys: POST /keys/upload, /keys/query, /keys/claim,
/keys/device_signing/upload and /keys/signatures/upload (homeserver/e2ee/)."""

from __future__ import annotations

from typing import Any

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


def query_body(body: dict[str, Any]) -> dict[str, list[str]]:
    """`device_keys` of a /keys/query body (client or federation)."""
    wanted = field(body, "device_keys", dict, required=True)
    parsed: dict[str, list[str]] = {}
    for user_id, devices in wanted.items():
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise _bad("device_keys must map user IDs to lists of device IDs")
        parsed[user_id] = list(dict.fromkeys(devices))
    return parsed


def claim_body(body: dict[str, Any]) -> dict[str, dict[str, str]]:
    """`one_time_keys` of a /keys/claim body (client or federation)."""
    wanted = field(body, "one_time_keys", dict, required=True)
    parsed: dict[str, dict[str, str]] = {}
    for user_id, devices in wanted.items():
        if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
            raise _bad("one_time_keys must map user IDs to objects of device IDs to algorithms")
        parsed[user_id] = devices
    return parsed


def _timeout(body: dict[str, Any]) -> int | None:
    """The optional `timeout` (ms) for other servers' answers."""
    timeout: int | None = field(body, "timeout", int)
    return timeout


async def query_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await read_json(request)
    wanted = query_body(body)
    return json_response(await get_hs(request).keys.query(req.user_id, wanted, _timeout(body)))


async def claim_keys(request: web.Request) -> web.Response:
    await requester(request)
    body = await read_json(request)
    wanted = claim_body(body)
    return json_response(await get_hs(request).keys.claim(wanted, _timeout(body)))


PASSWORD_FLOWS = [["m.login.password"]]


async def upload_cross_signing_keys(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request)
    keys = hs.cross_signing.check_upload(req.user_id, body)
    uia = None
    if await hs.cross_signing.needs_auth(req.user_id, keys):
        uia = await hs.uia.check(
            body, uri="/keys/device_signing/upload", method="POST", flows=PASSWORD_FLOWS, requester=req
        )
    await hs.cross_signing.upload(req.user_id, keys)
    if uia is not None:
        await hs.uia.finish(uia)
    return json_response({})


async def upload_signatures(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await read_json(request)
    failures = await get_hs(request).cross_signing.upload_signatures(req.user_id, body)
    return json_response({"failures": failures})


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/keys/upload", upload_keys)
    routes.add("POST", "/keys/query", query_keys)
    routes.add("POST", "/keys/claim", claim_keys)
    routes.add("POST", "/keys/device_signing/upload", upload_cross_signing_keys)
    routes.add("POST", "/keys/signatures/upload", upload_signatures)
