"""Our organization's profile, as admins edit it at run time:

    GET /_accord/admin/v1/organization   -> the profile, its source ("config" or "edited"),
                                            when and by whom it was last changed, and where
                                            it is published (each directory's last outcome)
    PUT /_accord/admin/v1/organization   {name, description, specialties, location, website,
                                          contacts, rooms, publish_partners} -> the same

A PUT replaces the whole profile (absent fields are emptied), validated by the
directory's own rules (400 M_BAD_JSON / M_INVALID_PARAM / M_TOO_LARGE / M_MISSING_PARAM),
stored, audited and re-published to the configured directories at once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.admin.common import require_admin
from homeserver.api.http import client_ip, get_hs, json_response, read_json

PATH = "/_accord/admin/v1/organization"


async def _answer(request: web.Request, profile: dict[str, Any]) -> web.Response:
    status = await get_hs(request).partner_directory_publisher.status()
    return json_response({**profile, "publication": status})


async def get_organization(request: web.Request) -> web.Response:
    await require_admin(request)
    return await _answer(request, get_hs(request).organization.to_json())


async def put_organization(request: web.Request) -> web.Response:
    req = await require_admin(request)
    body = await read_json(request)
    profile = await get_hs(request).organization.update(body, by=req.user_id, ip=client_ip(request))
    return await _answer(request, profile)


def register(app: web.Application) -> None:
    app.router.add_get(PATH, get_organization)
    app.router.add_put(PATH, put_organization)
