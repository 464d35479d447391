"""What every admin endpoint shares: the server-admin check, path and query parsing in
Synapse's manner (so tools see the errors they expect), and the audit record of writes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Requester
from homeserver.api.http import client_ip, get_hs
from homeserver.errors import MatrixError
from homeserver.identifiers import parse_user_id
from homeserver.params import INT64_MAX, INT64_MIN, try_parse_int

ADMIN_V1 = "/_synapse/admin/v1"
ADMIN_V2 = "/_synapse/admin/v2"


async def require_admin(request: web.Request) -> Requester:
    """The requester, who must be a server admin: 401 without a valid token, 403 otherwise.

    Guests are let through the token check so that they get the same 403 as any other
    non-admin rather than a guest-specific code that would reveal nothing useful."""
    hs = get_hs(request)
    req = await hs.auth.get_requester(request, allow_guest=True, ip=client_ip(request))
    if not await hs.user_admin.is_admin(req.user_id):
        raise MatrixError(403, "M_FORBIDDEN", "You are not a server admin")
    return req


def user_id_param(request: web.Request, *, local_message: str = "Can only look up local users") -> str:
    """The path's user ID, which must be well-formed and one of ours."""
    user_id = request.match_info["user_id"]
    parsed = parse_user_id(user_id)
    if parsed is None:
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user id: {user_id!r}")
    if parsed[1] != get_hs(request).config.server_name:
        raise MatrixError(400, "M_UNKNOWN", local_message)
    return user_id


def room_id_param(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not room_id.startswith("!") or len(room_id) < 2:
        raise MatrixError(400, "M_INVALID_PARAM", f"{room_id} is not a legal room ID")
    return room_id


def query_int(request: web.Request, name: str, default: int, *, minimum: int = 0) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = try_parse_int(raw)  # 64-bit: it ends up in SQL
    if value is None:
        raise MatrixError(
            400, "M_INVALID_PARAM", f"Query parameter {name!r} must be a string representing an integer"
        )
    if value < minimum:
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter {name!r} must be >= {minimum}")
    return value


def query_optional_bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw == "true":
        return True
    if raw == "false":
        return False
    raise MatrixError(400, "M_INVALID_PARAM", f"Boolean query parameter {name!r} must be one of ['true', 'false']")


def query_bool(request: web.Request, name: str, default: bool) -> bool:
    value = query_optional_bool(request, name)
    return default if value is None else value


def query_choice(request: web.Request, name: str, choices: tuple[str, ...], default: str) -> str:
    raw = request.query.get(name, default)
    if raw not in choices:
        raise MatrixError(
            400, "M_INVALID_PARAM", f"Query parameter {name!r} must be one of [{', '.join(choices)}]"
        )
    return raw


def body_int(
    body: dict[str, Any],
    name: str,
    message: str,
    *,
    default: int | None = None,
    nullable: bool = True,
    minimum: int = INT64_MIN,
    maximum: int = INT64_MAX,
    errcode: str = "M_INVALID_PARAM",
) -> int | None:
    """An integer field of an admin request body: ``default`` when absent (or null, if
    ``nullable``), otherwise a JSON integer (not a boolean) in [minimum, maximum], or 400
    ``errcode`` with ``message`` (Synapse's wording, which each endpoint passes).

    The bounds never go past signed 64 bits: every such value is stored, and a JSON integer
    the database cannot hold (JSON sets no limit; 2^63 to 2^64-1 still parse as integers)
    must be refused here rather than fail its INSERT with a 500."""
    if name not in body or (body[name] is None and nullable):
        return default
    value = body[name]
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not max(minimum, INT64_MIN) <= value <= min(maximum, INT64_MAX)
    ):
        raise MatrixError(400, errcode, message)
    return value


def body_bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise MatrixError(400, "M_BAD_JSON", f"Param '{name}' must be a boolean, if given")
    return value


async def audit(
    request: web.Request,
    req: Requester,
    action: str,
    *,
    target: str | None = None,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> None:
    """Record one admin write (scrubbed of credentials by the audit log itself)."""
    await get_hs(request).audit.record(
        action, actor=req.user_id, target=target, ip=client_ip(request), outcome=outcome, details=details
    )
