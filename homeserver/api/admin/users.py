"""Synapse's user admin API: list, query, create or modify, deactivate, reset password,
whois, and log in as a user (how bots get long-lived tokens)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.admin.users import BOT, USER_TYPES
from homeserver.api.admin.common import (
    ADMIN_V1,
    ADMIN_V2,
    audit,
    body_bool,
    body_int,
    query_bool,
    query_choice,
    query_int,
    query_optional_bool,
    require_admin,
    user_id_param,
)
from homeserver.api.http import client_ip, get_hs, json_response, read_json
from homeserver.errors import MatrixError
from homeserver.records.users import USER_ORDER_BY, UserFilter


async def list_users(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    start = query_int(request, "from", 0)
    limit = query_int(request, "limit", 100)
    flt = UserFilter(
        user_id=request.query.get("user_id"),
        name=request.query.get("name"),
        guests=query_bool(request, "guests", True),
        deactivated=query_bool(request, "deactivated", False),
        admins=query_optional_bool(request, "admins"),
        locked=query_bool(request, "locked", False),
        not_user_types=tuple(request.query.getall("not_user_type", [])),
    )
    order_by = query_choice(request, "order_by", USER_ORDER_BY, "name")
    direction = query_choice(request, "dir", ("f", "b"), "f")
    users, total = await hs.user_admin.list_users(
        flt, order_by=order_by, backwards=direction == "b", offset=start, limit=limit
    )
    out: dict[str, Any] = {"users": users, "total": total}
    if start + limit < total:
        out["next_token"] = str(start + len(users))
    return json_response(out)


async def get_user(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    user = await hs.user_admin.get(user_id_param(request))
    return json_response(await hs.user_admin.user_json(user))


def _validate_put(body: dict[str, Any]) -> None:
    """Every field is checked before anything changes, so a bad request changes nothing."""
    user_type = body.get("user_type")
    if user_type is not None and user_type not in USER_TYPES:
        raise MatrixError(400, "M_UNKNOWN", "Invalid user type")
    body_bool(body, "admin", False)
    password = body.get("password")
    if password is not None and (not isinstance(password, str) or len(password) > 512):
        raise MatrixError(400, "M_UNKNOWN", "Invalid password")
    for name in ("logout_devices", "deactivated", "locked"):
        if not isinstance(body.get(name, False), bool):
            raise MatrixError(400, "M_UNKNOWN", f"'{name}' parameter is not of type boolean")
    if body.get("deactivated") is True and body.get("locked") is True:
        raise MatrixError(400, "M_UNKNOWN", "An user can't be deactivated and locked")
    for name in ("displayname", "avatar_url"):
        if name in body and body[name] is not None and not isinstance(body[name], str):
            raise MatrixError(400, "M_BAD_JSON", f"Param '{name}' must be a string, if given")
    avatar = body.get("avatar_url")
    if isinstance(avatar, str) and avatar and not avatar.startswith("mxc://"):
        raise MatrixError(400, "M_INVALID_PARAM", "avatar_url must be an MXC URI")
    for name in ("threepids", "external_ids"):
        if body.get(name):
            # Accord stores neither third-party IDs nor SSO identities: refusing beats
            # silently dropping what the admin asked for.
            raise MatrixError(400, "M_UNRECOGNIZED", f"'{name}' is not supported by this server")


async def put_user(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="This endpoint can only be used with local users")
    body = await read_json(request)
    _validate_put(body)
    admin = hs.user_admin
    existing = await admin.find(user_id)
    if existing is None:
        return await _create_user(request, req.user_id, user_id, body)

    changed = sorted(k for k in body if k in (
        "password", "displayname", "avatar_url", "admin", "deactivated", "locked", "user_type",
    ))
    if "admin" in body and body["admin"] != existing.admin:
        if user_id == req.user_id and not body["admin"]:
            raise MatrixError(400, "M_UNKNOWN", "You may not demote yourself.")
    if body.get("deactivated") is False and existing.deactivated and not body.get("password"):
        raise MatrixError(400, "M_UNKNOWN", "Must provide a password to re-activate an account.")
    if "password" in body and body["password"] is not None:
        hs.registration.check_password(body["password"])
    # Reactivation first: the other changes (a profile) must land on a live account.
    if body.get("deactivated") is False and existing.deactivated:
        await admin.reactivate(user_id, body["password"])
    elif body.get("password") is not None:
        await admin.set_password(user_id, body["password"], body.get("logout_devices", True))
    for name in ("displayname", "avatar_url"):
        if name in body:
            value = body[name] or None  # "" removes it, as Synapse does
            # The admin API changes the profile only, not the user's member events.
            if value is None:
                await hs.profiles.delete_field(user_id, name, propagate=False)
            else:
                await hs.profiles.set_field(user_id, name, value, propagate=False)
    if "admin" in body and body["admin"] != existing.admin:
        await admin.set_admin(user_id, body["admin"])
    if "locked" in body and body["locked"] != existing.locked:
        await admin.set_locked(user_id, body["locked"])
    if "user_type" in body:
        await admin.set_user_type(user_id, body["user_type"])
    if body.get("deactivated") is True and not existing.deactivated:
        await admin.deactivate(user_id, erase=False)
    await audit(request, req, "admin.user.modify", target=user_id, details={"changed": changed})
    return json_response(await admin.user_json(await admin.get(user_id)))


async def _create_user(request: web.Request, actor: str, user_id: str, body: dict[str, Any]) -> web.Response:
    hs = get_hs(request)
    localpart = user_id[1:].split(":", 1)[0]
    if hs.registration.check_localpart(localpart) != user_id:
        raise MatrixError(400, "M_INVALID_USERNAME", "User ID can only contain characters a-z, 0-9, or '=_-./+'")
    password = body.get("password")
    if password is not None:
        hs.registration.check_password(password)
    user_type = body.get("user_type")
    await hs.registration.create_account(
        user_id, password, admin=body.get("admin", False), user_type=user_type,
        displayname=body.get("displayname") or None, login=False,
    )
    if isinstance(body.get("avatar_url"), str) and body["avatar_url"]:
        await hs.profiles.set_field(user_id, "avatar_url", body["avatar_url"], propagate=False)
    if body.get("locked"):
        await hs.user_admin.set_locked(user_id, True)
    if user_type == BOT:
        await hs.user_admin.set_ratelimit_override(user_id, (0, 0))
    if body.get("deactivated"):
        await hs.user_admin.deactivate(user_id, erase=False)
    await hs.audit.record(
        "admin.user.create", actor=actor, target=user_id, ip=client_ip(request),
        details={"admin": bool(body.get("admin", False)), "user_type": user_type},
    )
    user = await hs.user_admin.get(user_id)
    return json_response(await hs.user_admin.user_json(user), status=201)


async def post_deactivate(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Can only deactivate local users")
    await hs.user_admin.get(user_id)
    body = await read_json(request, allow_empty=True)
    erase = body.get("erase", False)
    if not isinstance(erase, bool):
        raise MatrixError(400, "M_BAD_JSON", "Param 'erase' must be a boolean, if given")
    await hs.user_admin.deactivate(user_id, erase)
    await audit(request, req, "admin.user.deactivate", target=user_id, details={"erase": erase})
    return json_response({"id_server_unbind_result": "success"})


async def post_reset_password(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Can only reset passwords of local users")
    body = await read_json(request)
    password = body.get("new_password")
    if password is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing params: ['new_password']")
    if not isinstance(password, str):
        raise MatrixError(400, "M_INVALID_PARAM", "Param 'new_password' must be a string")
    logout_devices = body_bool(body, "logout_devices", True)
    user = await hs.user_admin.get(user_id)
    if user.deactivated:
        raise MatrixError(400, "M_UNKNOWN", "Cannot set the password of a deactivated user")
    hs.registration.check_password(password)
    await hs.user_admin.set_password(user_id, password, logout_devices)
    await audit(
        request, req, "admin.user.reset_password", target=user_id,
        details={"logout_devices": logout_devices},
    )
    return json_response({})


async def get_whois(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Can only whois a local user")
    await hs.user_admin.get(user_id)
    return json_response(await hs.user_admin.whois(user_id))


async def post_login_as(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Only local users can be logged in as")
    body = await read_json(request, allow_empty=True)
    user = await hs.user_admin.get(user_id)
    valid_until_ms = body_int(
        body, "valid_until_ms", "'valid_until_ms' parameter must be an int", errcode="M_UNKNOWN"
    )
    if user_id == req.user_id:
        raise MatrixError(400, "M_UNKNOWN", "Cannot use admin API to login as self")
    if user.deactivated:
        raise MatrixError(400, "M_UNKNOWN", "Cannot log in as a deactivated user")
    token = await hs.user_admin.login_as(user_id, valid_until_ms)
    await audit(
        request, req, "admin.user.login", target=user_id, details={"valid_until_ms": valid_until_ms}
    )
    return json_response({"access_token": token})


async def get_is_admin(request: web.Request) -> web.Response:
    await require_admin(request)
    user = await get_hs(request).user_admin.get(user_id_param(request))
    return json_response({"admin": user.admin})


async def put_is_admin(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Only local users can be admins of this homeserver")
    body = await read_json(request)
    if not isinstance(body.get("admin"), bool):
        raise MatrixError(400, "M_MISSING_PARAM" if "admin" not in body else "M_BAD_JSON",
                          "Param 'admin' must be a boolean")
    await hs.user_admin.get(user_id)
    if user_id == req.user_id and not body["admin"]:
        raise MatrixError(400, "M_UNKNOWN", "You may not demote yourself.")
    await hs.user_admin.set_admin(user_id, body["admin"])
    await audit(request, req, "admin.user.set_admin", target=user_id, details={"admin": body["admin"]})
    return json_response({})


def register(app: web.Application) -> None:
    app.router.add_get(ADMIN_V2 + "/users", list_users)
    app.router.add_get(ADMIN_V2 + "/users/{user_id}", get_user)
    app.router.add_put(ADMIN_V2 + "/users/{user_id}", put_user)
    app.router.add_post(ADMIN_V1 + "/deactivate/{user_id}", post_deactivate)
    app.router.add_post(ADMIN_V1 + "/reset_password/{user_id}", post_reset_password)
    app.router.add_get(ADMIN_V1 + "/whois/{user_id}", get_whois)
    app.router.add_post(ADMIN_V1 + "/users/{user_id}/login", post_login_as)
    app.router.add_get(ADMIN_V1 + "/users/{user_id}/admin", get_is_admin)
    app.router.add_put(ADMIN_V1 + "/users/{user_id}/admin", put_is_admin)
