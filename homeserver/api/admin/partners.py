"""Partnerships, managed by this server's admins (403 M_FORBIDDEN for anyone else).

- ``GET /_accord/admin/v1/partnerships[?state=...&direction=inbound|outbound]``
  -> ``{"partnerships": [...]}``, most recently changed first.
- ``POST /_accord/admin/v1/partnerships`` ``{"server_name": str, "message"?: str}``:
  ask a server for a partnership (accepts its request if it asked us first).
- ``GET /_accord/admin/v1/partnerships/{server_name}``: one partnership.
- ``POST /_accord/admin/v1/partnerships/{server_name}/accept`` | ``/decline``:
  answer its request; ``/cancel``: withdraw our pending (or failed) request
  (400 ``M_BAD_STATE`` for anything else); ``/revoke`` ``{"reason"?: str}``: end the partnership
  (or withdraw our pending request); federation with it stops at once.

Each answers with the partnership: server_name, state (pending, active,
declined, revoked, failed), direction (inbound: they asked; outbound: we
asked), request_id, organization, message, requested_by, created_ts,
updated_ts, updated_by. The service audits every change.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.admin.common import require_admin
from homeserver.api.http import client_ip, get_hs, json_response, read_json
from homeserver.errors import not_found

PREFIX = "/_accord/admin/v1/partnerships"


async def list_partnerships(request: web.Request) -> web.Response:
    await require_admin(request)
    found = await get_hs(request).partners.list(
        state=request.query.get("state"), direction=request.query.get("direction")
    )
    return json_response({"partnerships": [p.to_json() for p in found]})


async def create_request(request: web.Request) -> web.Response:
    req = await require_admin(request)
    body = await read_json(request)
    p = await get_hs(request).partners.request(
        body.get("server_name"), by=req.user_id, message=body.get("message"), ip=client_ip(request)
    )
    return json_response(p.to_json())


async def get_partnership(request: web.Request) -> web.Response:
    await require_admin(request)
    p = await get_hs(request).partners.get(request.match_info["server_name"])
    if p is None:
        raise not_found("No partnership with this server")
    return json_response(p.to_json())


async def post_action(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    server_name = request.match_info["server_name"]
    action = request.match_info["action"]
    ip = client_ip(request)
    if action == "accept":
        p = await hs.partners.accept(server_name, by=req.user_id, ip=ip)
    elif action == "decline":
        p = await hs.partners.decline(server_name, by=req.user_id, ip=ip)
    elif action == "cancel":
        p = await hs.partners.cancel(server_name, by=req.user_id, ip=ip)
    else:
        body = await read_json(request, allow_empty=True)
        p = await hs.partners.revoke(server_name, by=req.user_id, reason=body.get("reason"), ip=ip)
    return json_response(p.to_json())


def register(app: web.Application) -> None:
    app.router.add_get(PREFIX, list_partnerships)
    app.router.add_post(PREFIX, create_request)
    app.router.add_get(PREFIX + "/{server_name}", get_partnership)
    app.router.add_post(PREFIX + "/{server_name}/{action:accept|decline|cancel|revoke}", post_action)
