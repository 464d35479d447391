"""GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (`via`): a room's summary
for a client that may preview it; without an access token for open rooms."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import token_from_request
from homeserver.api.http import ClientRoutes, get_hs, json_response, requester

CLIENT_V1 = ("/_matrix/client/v1",)


async def get_summary(request: web.Request) -> web.Response:
    user_id = None
    if token_from_request(request):
        user_id = (await requester(request, allow_guest=True)).user_id
    via = request.query.getall("via", [])
    summary = await get_hs(request).room_summaries.summary(user_id, request.match_info["room"], via)
    return json_response(summary)


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/room_summary/{room}", get_summary, prefixes=CLIENT_V1)
