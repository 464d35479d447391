"""Shared-secret registration: GET/POST /_synapse/admin/v1/register (HMAC nonce flow)."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.registration import LoginRequest
from homeserver.api.http import client_ip, get_hs, json_response, read_json
from homeserver.errors import MatrixError

PATH = "/_synapse/admin/v1/register"


async def get_nonce(request: web.Request) -> web.Response:
    return json_response({"nonce": get_hs(request).registration.new_nonce()})


async def post_register(request: web.Request) -> web.Response:
    hs = get_hs(request)
    body = await read_json(request)
    hs.registration.check_shared_secret_mac(body)
    user_id = hs.registration.check_localpart(body["username"])
    hs.registration.check_password(body["password"])
    displayname = body.get("displayname")
    if displayname is not None and not isinstance(displayname, str):
        raise MatrixError(400, "M_INVALID_PARAM", "Field 'displayname' must be a string")
    result = await hs.registration.create_account(
        user_id,
        body["password"],
        admin=body.get("admin", False),
        user_type=body.get("user_type"),
        displayname=displayname,
        login=LoginRequest(ip=client_ip(request), user_agent=request.headers.get("User-Agent")),
    )
    return json_response(result)


def register(app: web.Application) -> None:
    app.router.add_get(PATH, get_nonce)
    app.router.add_post(PATH, post_register)
