"""Synapse's override_ratelimit admin API: a user's own message rate, or none at all.

0 messages per second with a burst of 0 means "never limit" (a bot's setting); any
other value replaces the server's message rate for that user."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.admin.common import ADMIN_V1, audit, body_int, require_admin, user_id_param
from homeserver.api.http import get_hs, json_response, read_json

PATH = ADMIN_V1 + "/users/{user_id}/override_ratelimit"


def _value(body: dict[str, Any], name: str) -> int:
    value = body_int(body, name, f"{name!r} parameter must be a positive integer",
                     default=0, nullable=False, minimum=0)
    assert value is not None
    return value


def _json(override: tuple[int, int] | None) -> dict[str, Any]:
    if override is None:
        return {}
    return {"messages_per_second": override[0], "burst_count": override[1]}


async def get_override(request: web.Request) -> web.Response:
    await require_admin(request)
    user_id = user_id_param(request)
    return json_response(_json(await get_hs(request).user_admin.get_ratelimit_override(user_id)))


async def set_override(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Only local users can be ratelimited")
    await hs.user_admin.get(user_id)
    body = await read_json(request, allow_empty=True)
    override = (_value(body, "messages_per_second"), _value(body, "burst_count"))
    await hs.user_admin.set_ratelimit_override(user_id, override)
    await audit(request, req, "admin.ratelimit.set", target=user_id, details=_json(override))
    return json_response(_json(override))


async def delete_override(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    user_id = user_id_param(request, local_message="Only local users can be ratelimited")
    await hs.user_admin.get(user_id)
    await hs.user_admin.set_ratelimit_override(user_id, None)
    await audit(request, req, "admin.ratelimit.delete", target=user_id)
    return json_response({})


def register(app: web.Application) -> None:
    app.router.add_get(PATH, get_override)
    app.router.add_post(PATH, set_override)
    app.router.add_delete(PATH, delete_override)
