"""Account registration: POST /register, /register/available and registration-token validity."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import check_device_id
from homeserver.accounts.registration import LoginRequest
from homeserver.accounts.uia import EMAIL_IDENTITY, REGISTRATION_TOKEN
from homeserver.api.client.threepids import browser_languages
from homeserver.api.http import ClientRoutes, client_ip, field, get_hs, json_response, read_json
from homeserver.errors import MatrixError


async def post_register(request: web.Request) -> web.Response:
    hs = get_hs(request)
    ip = client_ip(request)
    ua = request.headers.get("User-Agent")
    kind = request.query.get("kind", "user")
    body = await read_json(request, allow_empty=True)
    hs.ratelimiter.check("registration", ip)
    if kind == "guest":
        return json_response(await hs.registration.register_guest(body, ip, ua))
    if kind != "user":
        raise MatrixError(400, "M_INVALID_PARAM", "kind must be 'user' or 'guest'")
    if hs.config.registration.policy == "closed":
        raise MatrixError(403, "M_FORBIDDEN", "Registration has been disabled")

    # The spec requires the username checks before user-interactive auth starts.
    _check_fields(body)
    username = field(body, "username", str)
    password = body.get("password")
    guest_token = field(body, "guest_access_token", str)
    guest: str | None = None
    if guest_token is not None:
        # A guest upgrading: the username must be its own localpart, which exists.
        guest = await hs.auth.guest_of_token(guest_token)
        if username is None:
            raise MatrixError(400, "M_MISSING_PARAM", "A guest upgrading must give its username")
        if username != guest[1:].split(":", 1)[0]:
            raise MatrixError(400, "M_INVALID_USERNAME", "A guest keeps its own username when upgrading")
    elif username is not None:
        await hs.registration.check_available(username)
    if password is not None:
        hs.registration.check_password(password)

    # The session keeps the password's hash, never the password, so the final request
    # may carry only `auth`; the other parameters are kept as sent, later ones winning.
    remember = {"password_hash": await hs.registration.hash_password(password)} if password else None
    uia = await hs.uia.check(
        body, uri="/register", method="POST", flows=hs.registration.flows(), remember=remember
    )
    params = uia.params
    login = LoginRequest(
        inhibit=field(params, "inhibit_login", bool, default=False),
        device_id=field(params, "device_id", str),
        device_display_name=field(params, "initial_device_display_name", str),
        want_refresh=field(params, "refresh_token", bool, default=False),
        ip=ip,
        user_agent=ua,
    )
    registered = params.get("registered_user_id")
    if isinstance(registered, str):
        # This session already made an account (its answer may have been lost): the same one.
        return json_response(await hs.registration.login_registered(registered, login))
    password_hash = params.get("password_hash")
    if guest is not None:
        if password is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing required field 'password'")
        return json_response(await hs.registration.upgrade_guest(guest, password, login, uia_session=uia.session_id))
    username = field(params, "username", str)
    if username is None:
        user_id = await hs.registration.generate_user_id()
    else:
        user_id = await hs.registration.check_available(username)
    if not isinstance(password_hash, str):
        raise MatrixError(400, "M_MISSING_PARAM", "Missing required field 'password'")
    result = await hs.registration.create_account(
        user_id,
        None,
        password_hash=password_hash,
        registration_token=uia.completed.get(REGISTRATION_TOKEN),
        uia_session=uia.session_id,
        login=login,
    )
    address = uia.completed.get(EMAIL_IDENTITY)
    if isinstance(address, str):
        await hs.threepids.bind_registered(user_id, address)
    return json_response(result)


async def email_request_token(request: web.Request) -> web.Response:
    """POST /register/email/requestToken: validating the address a registration will use."""
    hs = get_hs(request)
    if hs.config.registration.email == "off" or hs.config.registration.policy == "closed":
        raise MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "Registration does not take e-mail addresses")
    body = await read_json(request)
    return json_response(await hs.threepids.request_token(body, client_ip(request), languages=browser_languages(request)))


def _check_fields(body: dict[str, Any]) -> None:
    """Refuse wrongly typed fields on every request, so the session never stores them."""
    field(body, "username", str)
    check_device_id(field(body, "device_id", str))
    field(body, "initial_device_display_name", str)
    field(body, "inhibit_login", bool)
    field(body, "refresh_token", bool)


async def get_available(request: web.Request) -> web.Response:
    hs = get_hs(request)
    hs.ratelimiter.check("registration", client_ip(request))
    username = request.query.get("username")
    if username is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing query parameter 'username'")
    await hs.registration.check_available(username)
    return json_response({"available": True})


async def get_token_validity(request: web.Request) -> web.Response:
    hs = get_hs(request)
    if hs.config.registration.policy != "token":
        raise MatrixError(403, "M_FORBIDDEN", "Registration tokens are not enabled")
    hs.ratelimiter.check("registration", client_ip(request))
    token = request.query.get("token")
    if token is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing query parameter 'token'")
    return json_response({"valid": await hs.registration.token_is_valid(token)})


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/register", post_register)
    routes.add("POST", "/register/email/requestToken", email_request_token)
    routes.add("GET", "/register/available", get_available)
    routes.add("GET", "/register/m.login.registration_token/validity", get_token_validity)
    routes.add(
        "GET",
        "/register/m.login.registration_token/validity",
        get_token_validity,
        prefixes=("/_matrix/client/v1",),
    )
