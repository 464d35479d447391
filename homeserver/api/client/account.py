"""Account management: whoami, password change, deactivation."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.uia import EMAIL_IDENTITY
from homeserver.api.client.threepids import browser_languages
from homeserver.api.http import (
    ClientRoutes,
    client_ip,
    field,
    get_hs,
    json_response,
    read_json,
    requester,
)
from homeserver.errors import MatrixError

PASSWORD_FLOWS = [["m.login.password"]]


async def get_whoami(request: web.Request) -> web.Response:
    req = await requester(request, allow_guest=True)
    return json_response(
        {"user_id": req.user_id, "device_id": req.device_id, "is_guest": req.is_guest}
    )


def _has_token(request: web.Request) -> bool:
    return "Authorization" in request.headers or "access_token" in request.query


async def post_password(request: web.Request) -> web.Response:
    """A signed-in user's password change (their password as the UIA stage) or, when
    e-mail is on, a forgotten password's reset without a login: the stage is then an
    address of the account validated through POST /account/password/email/requestToken."""
    hs = get_hs(request)
    reset = not _has_token(request) and hs.mailer is not None
    req = None if reset else await requester(request)
    body = await read_json(request)
    new_password = field(body, "new_password", str)
    logout_devices = field(body, "logout_devices", bool, default=True)
    if new_password is not None:
        hs.registration.check_password(new_password)
    flows = [[EMAIL_IDENTITY]] if reset else PASSWORD_FLOWS
    uia = await hs.uia.check(body, uri="/account/password", method="POST", flows=flows, requester=req)
    if new_password is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing required field 'new_password'")
    user_id = req.user_id if req is not None else str(uia.completed[EMAIL_IDENTITY])
    await hs.accounts.change_password(
        user_id, new_password, logout_devices, keep_device=req.device_id if req is not None else None
    )
    await hs.uia.finish(uia)
    await hs.audit.record(
        "password.reset" if reset else "password.change", actor=user_id, target=user_id, ip=client_ip(request),
        details={"logout_devices": logout_devices},
    )
    return json_response({})


async def password_email_token(request: web.Request) -> web.Response:
    hs = get_hs(request)
    body = await read_json(request)
    return json_response(await hs.threepids.request_token(
        body, client_ip(request), for_reset=True, languages=browser_languages(request)
    ))


async def post_deactivate(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request, allow_empty=True)
    field(body, "erase", bool)
    field(body, "id_server", str)
    uia = await hs.uia.check(
        body, uri="/account/deactivate", method="POST", flows=PASSWORD_FLOWS, requester=req
    )
    await hs.accounts.deactivate(req.user_id)
    await hs.uia.finish(uia)
    await hs.audit.record("account.deactivate", actor=req.user_id, target=req.user_id, ip=client_ip(request))
    # Accord binds no third-party identifiers, so there is never anything to unbind,
    # and the spec requires "success" in that case.
    return json_response({"id_server_unbind_result": "success"})


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/account/whoami", get_whoami)
    routes.add("POST", "/account/password", post_password)
    routes.add("POST", "/account/password/email/requestToken", password_email_token)
    routes.add("POST", "/account/deactivate", post_deactivate)
