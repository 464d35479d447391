"""GET /notifications (the spec's Push notifications module: the events that
notified the user, newest first)."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, requester
from homeserver.params import parse_int, query_int

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


async def get_notifications(request: web.Request) -> web.Response:
    req = await requester(request)
    raw_from = request.query.get("from")
    before = parse_int(raw_from, "Query parameter 'from'", minimum=1) if raw_from else None
    limit = query_int(request.query, "limit", DEFAULT_LIMIT, minimum=0)
    assert limit is not None
    only_highlight = request.query.get("only") == "highlight"
    body = await get_hs(request).notification_inbox.page(req.user_id, before, min(limit, MAX_LIMIT), only_highlight)
    return json_response(body)


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/notifications", get_notifications)
