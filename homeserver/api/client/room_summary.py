"""GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (`via`): a room's summary
for a client that may preview it; without an access token for open rooms.

Also under MSC3266's unstable paths (`/_matrix/client/unstable/im.nheko.summary/summary/...`
and `.../rooms/{roomIdOrAlias}/summary`), which matrix-js-sdk's getRoomSummary uses; those
answers repeat `room_version` and `encryption` under the MSC's prefixed names."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import token_from_request
from homeserver.api.http import ClientRoutes, get_hs, json_response, requester

CLIENT_V1 = ("/_matrix/client/v1",)
UNSTABLE = ("/_matrix/client/unstable/im.nheko.summary",)
_UNSTABLE_NAMES = {"room_version": "im.nheko.summary.room_version", "encryption": "im.nheko.summary.encryption"}


async def _summary(request: web.Request) -> dict[str, Any]:
    user_id = None
    if token_from_request(request):
        user_id = (await requester(request, allow_guest=True)).user_id
    via = request.query.getall("via", [])
    return await get_hs(request).room_summaries.summary(user_id, request.match_info["room"], via)


async def get_summary(request: web.Request) -> web.Response:
    return json_response(await _summary(request))


async def get_unstable_summary(request: web.Request) -> web.Response:
    summary = await _summary(request)
    summary.update({name: summary[key] for key, name in _UNSTABLE_NAMES.items() if key in summary})
    return json_response(summary)


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/room_summary/{room}", get_summary, prefixes=CLIENT_V1)
    routes.add("GET", "/summary/{room}", get_unstable_summary, prefixes=UNSTABLE)
    routes.add("GET", "/rooms/{room}/summary", get_unstable_summary, prefixes=UNSTABLE)
