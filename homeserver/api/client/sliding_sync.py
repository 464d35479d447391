"""POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync: simplified
sliding sync (MSC4186), as Synapse 1.163 serves it (homeserver/sync/sliding/)."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.client.sync import MAX_TIMEOUT_MS
from homeserver.api.http import ClientRoutes, get_hs, json_response, read_json, requester
from homeserver.params import query_int

UNSTABLE = ("/_matrix/client/unstable/org.matrix.simplified_msc3575",)


async def post_sliding_sync(request: web.Request) -> web.Response:
    # Imported with the service, at the first request (an idle server has neither).
    from homeserver.sync.sliding.config import parse_request

    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    body = parse_request(await read_json(request, allow_empty=True))
    timeout_ms = max(0, min(query_int(request.query, "timeout", 0) or 0, MAX_TIMEOUT_MS))
    pos = request.query.get("pos") or None
    await hs.presence.sync_activity(req.user_id, "online")
    return json_response(await hs.sliding_sync.sync_for(req, body, pos, timeout_ms))


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/sync", post_sliding_sync, prefixes=UNSTABLE)
