"""Synapse's registration token admin API: list, create, get, update, delete."""

from __future__ import annotations

import hashlib
import secrets
import string
from typing import Any

from aiohttp import web

from homeserver.api.admin.common import (
    ADMIN_V1,
    audit,
    body_int,
    query_optional_bool,
    require_admin,
)
from homeserver.api.http import get_hs, json_response, read_json
from homeserver.errors import MatrixError

PATH = ADMIN_V1 + "/registration_tokens"
_ALLOWED = frozenset(string.ascii_letters + string.digits + "._~-")


def _invalid(message: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", message)


def _token_json(token: str, info: tuple[int | None, int, int, int | None]) -> dict[str, Any]:
    uses_allowed, pending, completed, expiry_time = info
    return {
        "token": token, "uses_allowed": uses_allowed, "pending": pending,
        "completed": completed, "expiry_time": expiry_time,
    }


def _fingerprint(token: str) -> str:
    """How the audit log names a token: the token itself is a credential and stays out."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _changes(request: web.Request, body: dict[str, Any]) -> dict[str, int | None]:
    """The uses_allowed / expiry_time a body sets, validated; absent keys are absent."""
    out: dict[str, int | None] = {}
    if "uses_allowed" in body:
        out["uses_allowed"] = body_int(
            body, "uses_allowed", "uses_allowed must be a non-negative integer or null", minimum=0
        )
    if "expiry_time" in body:
        value = body_int(body, "expiry_time", "expiry_time must be an integer or null")
        if value is not None and value < get_hs(request).clock.time_ms():
            raise _invalid("expiry_time must not be in the past")
        out["expiry_time"] = value
    return out


async def list_tokens(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    valid = query_optional_bool(request, "valid")
    out = [_token_json(token, info) for token, info in await hs.registration_token_admin.tokens(valid)]
    return json_response({"registration_tokens": out})


async def create_token(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    body = await read_json(request, allow_empty=True)
    if "token" in body:
        token = body["token"]
        if not isinstance(token, str):
            raise _invalid("token must be a string")
        if not 0 < len(token) <= 64:
            raise _invalid("token must not be empty and must not be longer than 64 characters")
        if not set(token) <= _ALLOWED:
            raise _invalid("token must consist only of characters matched by the regex [A-Za-z0-9._~-]")
    else:
        length = body.get("length", 16)
        if not _is_int(length):
            raise _invalid("length must be an integer")
        if not 0 < length <= 64:
            raise _invalid("length must be greater than zero and not greater than 64")
        alphabet = sorted(_ALLOWED)
        token = "".join(secrets.choice(alphabet) for _ in range(length))
    changes = _changes(request, body)
    uses_allowed, expiry_time = changes.get("uses_allowed"), changes.get("expiry_time")
    if not await hs.registration_token_admin.create(token, uses_allowed, expiry_time):
        raise _invalid(f"Token already exists: {token}")
    await audit(request, req, "admin.registration_token.create", target=_fingerprint(token),
                details={"uses_allowed": uses_allowed, "expiry_time": expiry_time})
    return json_response(_token_json(token, (uses_allowed, 0, 0, expiry_time)))


async def _existing(request: web.Request) -> tuple[str, tuple[int | None, int, int, int | None]]:
    token = request.match_info["token"]
    info = await get_hs(request).registration_token_admin.get(token)
    if info is None:
        raise MatrixError(404, "M_NOT_FOUND", f"No such registration token: {token}")
    return token, info


async def get_token(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(_token_json(*await _existing(request)))


async def update_token(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    body = await read_json(request, allow_empty=True)
    changes = _changes(request, body)
    token, _ = await _existing(request)
    if not await hs.registration_token_admin.update(token, changes):
        raise MatrixError(404, "M_NOT_FOUND", f"No such registration token: {token}")
    await audit(request, req, "admin.registration_token.update", target=_fingerprint(token), details=dict(changes))
    return json_response(_token_json(*await _existing(request)))


async def delete_token(request: web.Request) -> web.Response:
    req = await require_admin(request)
    token = request.match_info["token"]
    if not await get_hs(request).registration_token_admin.delete(token):
        raise MatrixError(404, "M_NOT_FOUND", f"No such registration token: {token}")
    await audit(request, req, "admin.registration_token.delete", target=_fingerprint(token))
    return json_response({})


def register(app: web.Application) -> None:
    r = app.router
    r.add_get(PATH, list_tokens)
    r.add_post(PATH + "/new", create_token)
    r.add_get(PATH + "/{token}", get_token)
    r.add_put(PATH + "/{token}", update_token)
    r.add_delete(PATH + "/{token}", delete_token)
