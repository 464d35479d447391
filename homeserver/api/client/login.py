"""Login, logout, token refresh and login tokens (POST /v1/login/get_token)."""

from __future__ import annotations

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


async def get_login(request: web.Request) -> web.Response:
    return json_response({"flows": get_hs(request).login.flows()})


async def post_login(request: web.Request) -> web.Response:
    hs = get_hs(request)
    body = await read_json(request)
    result = await hs.login.login(body, client_ip(request), request.headers.get("User-Agent"))
    return json_response(result)


#: get_token re-authenticates with the account's password, like other sensitive actions.
GET_TOKEN_FLOWS = [["m.login.password"]]


async def post_get_token(request: web.Request) -> web.Response:
    """POST /_matrix/client/v1/login/get_token: after UIA, a short-lived token that
    signs this account in once on another device (m.login.token)."""
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request, allow_empty=True)
    uia = await hs.uia.check(body, uri="/login/get_token", method="POST", flows=GET_TOKEN_FLOWS, requester=req)
    answer = await hs.login.create_login_token(req.user_id)
    await hs.uia.finish(uia)
    return json_response(answer)


async def post_logout(request: web.Request) -> web.Response:
    req = await requester(request, allow_guest=True)
    hs = get_hs(request)
    await hs.auth.logout(req)
    await hs.audit.record(
        "logout", actor=req.user_id, target=req.user_id, ip=client_ip(request),
        details={"device_id": req.device_id},
    )
    return json_response({})


async def post_logout_all(request: web.Request) -> web.Response:
    req = await requester(request, allow_guest=True)
    hs = get_hs(request)
    await hs.auth.delete_devices(req.user_id, None)
    await hs.audit.record("logout.all", actor=req.user_id, target=req.user_id, ip=client_ip(request))
    return json_response({})


async def post_refresh(request: web.Request) -> web.Response:
    hs = get_hs(request)
    body = await read_json(request)
    token = field(body, "refresh_token", str, required=True)
    return json_response(await hs.auth.refresh(token))


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/login", get_login)
    routes.add("POST", "/login", post_login)
    routes.add("POST", "/logout", post_logout)
    routes.add("POST", "/logout/all", post_logout_all)
    routes.add("POST", "/refresh", post_refresh)
    routes.add("POST", "/login/get_token", post_get_token, prefixes=("/_matrix/client/v1",))
