"""GET /pushers and POST /pushers/set (the spec's Push notifications module)."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, read_json, requester


async def get_pushers(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response({"pushers": await get_hs(request).pushers.list(req.user_id)})


async def set_pusher(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await read_json(request)
    await get_hs(request).pushers.set(req.user_id, req.device_id, body)
    return json_response({})


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/pushers", get_pushers)
    routes.add("POST", "/pushers/set", set_pusher)
