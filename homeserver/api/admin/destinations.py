"""Synapse's federation destinations admin API, with Accord's figures added:

    GET  /_synapse/admin/v1/federation/destinations[?from=&limit=&destination=&order_by=&dir=]
         -> {"destinations": [...], "total": n, "next_token"?: str}
    GET  /_synapse/admin/v1/federation/destinations/{destination}
    GET  /_synapse/admin/v1/federation/destinations/{destination}/rooms[?from=&limit=&dir=]
         -> {"rooms": [{"room_id", "stream_ordering", "members"}], "total": n, "next_token"?}
    POST /_synapse/admin/v1/federation/destinations/{destination}/reset_connection -> {}

Each destination has Synapse's fields (destination, retry_last_ts, retry_interval,
failure_ts, last_successful_stream_ordering: always null, as our outbox is not ordered
by stream) and ours: queue_depth (PDUs and EDUs waiting), last_success_ts,
consecutive_failures, last_error, refusals (requests our federation policy refused to
or from it), last_refusal_ts, partner (an active partnership), sending (a transaction
in flight). A destination is listed once anything was sent, queued or refused. A destination's rooms are those its users are joined to here, with those
users (`members`, ours: what a partner shares with us).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.admin.common import ADMIN_V1, audit, query_choice, query_int, require_admin
from homeserver.api.http import get_hs, json_response
from homeserver.errors import MatrixError
from homeserver.identifiers import is_valid_server_name

PATH = ADMIN_V1 + "/federation/destinations"
ORDER_BY = ("destination", "retry_last_ts", "retry_interval", "failure_ts", "last_successful_stream_ordering")


async def _all(request: web.Request) -> list[dict[str, Any]]:
    hs = get_hs(request)
    records = {r.destination: r.to_json() for r in await hs.analytics.destinations()}
    depths = await hs.analytics.queue_depths()
    out = []
    for name in sorted(set(records) | set(depths)):
        entry = records.get(name) or {
            "destination": name, "retry_last_ts": 0, "retry_interval": 0, "failure_ts": None,
            "last_successful_stream_ordering": None, "last_success_ts": None, "consecutive_failures": 0,
            "last_error": None, "refusals": 0, "last_refusal_ts": None,
        }
        _, sending = hs.federation_sender.destination_state(name)
        entry.update(queue_depth=depths.get(name, 0), sending=sending,
                     partner=hs.partners.is_partner_cached(name))
        out.append(entry)
    return out


def _destination(request: web.Request) -> str:
    name = request.match_info["destination"]
    if not is_valid_server_name(name):
        raise MatrixError(400, "M_INVALID_PARAM", f"{name!r} is not a server name")
    return name


async def list_destinations(request: web.Request) -> web.Response:
    await require_admin(request)
    start = query_int(request, "from", 0)
    limit = query_int(request, "limit", 100)
    order_by = query_choice(request, "order_by", ORDER_BY, "destination")
    direction = query_choice(request, "dir", ("f", "b"), "f")
    search = request.query.get("destination")
    entries = await _all(request)
    if search:
        entries = [e for e in entries if search.lower() in e["destination"].lower()]
    entries.sort(key=lambda e: (e[order_by] is not None, e[order_by] or 0, e["destination"]),
                 reverse=direction == "b")
    page = entries[start:start + limit]
    out: dict[str, Any] = {"destinations": page, "total": len(entries)}
    if start + limit < len(entries):
        out["next_token"] = str(start + len(page))
    return json_response(out)


async def get_destination(request: web.Request) -> web.Response:
    await require_admin(request)
    name = _destination(request)
    for entry in await _all(request):
        if entry["destination"] == name:
            return json_response(entry)
    raise MatrixError(404, "M_NOT_FOUND", "Unknown destination")


async def destination_rooms(request: web.Request) -> web.Response:
    await require_admin(request)
    name = _destination(request)
    start = query_int(request, "from", 0)
    limit = query_int(request, "limit", 100)
    direction = query_choice(request, "dir", ("f", "b"), "f")
    rooms = await get_hs(request).analytics.rooms_shared_with(name)
    if direction == "b":
        rooms.reverse()
    page = rooms[start:start + limit]
    out: dict[str, Any] = {"rooms": page, "total": len(rooms)}
    if start + limit < len(rooms):
        out["next_token"] = str(start + len(page))
    return json_response(out)


async def reset_connection(request: web.Request) -> web.Response:
    """Retry the destination now instead of at the end of its backoff (Synapse's)."""
    req = await require_admin(request)
    hs = get_hs(request)
    name = _destination(request)
    if await hs.analytics.destination(name) is None and name not in await hs.analytics.queue_depths():
        raise MatrixError(404, "M_NOT_FOUND", "Unknown destination")
    hs.federation_sender.peer_seen(name)
    await audit(request, req, "admin.federation.reset_connection", target=name)
    return json_response({})


def register(app: web.Application) -> None:
    app.router.add_get(PATH, list_destinations)
    app.router.add_get(PATH + "/{destination}", get_destination)
    app.router.add_get(PATH + "/{destination}/rooms", destination_rooms)
    app.router.add_post(PATH + "/{destination}/reset_connection", reset_connection)
