"""GET /keys/changes?from=&to=: the users whose devices changed between two sync
tokens (`changed`), and those the requester no longer shares an encrypted room
with (`left`), as /sync's device_lists would say (homeserver/e2ee/device_lists.py)."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, requester
from homeserver.errors import MatrixError
from homeserver.sync.tokens import SyncToken


def _token(request: web.Request, name: str) -> SyncToken:
    value = request.query.get(name)
    if value is None:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing query parameter '{name}'")
    return SyncToken.parse(value)


async def get_keys_changes(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    start, end = _token(request, "from"), _token(request, "to")
    upto = min(end.device_lists, await hs.device_lists.current_position())
    changed, left = await hs.device_lists.changes_for(req.user_id, start.device_lists, upto)
    return json_response({"changed": changed, "left": left})


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/keys/changes", get_keys_changes)
