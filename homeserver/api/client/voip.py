"""GET /_matrix/client/v3/voip/turnServer: TURN credentials (homeserver/voip.py).

The spec lets a homeserver provide no TURN server; without one configured the endpoint
is not implemented here, and answers like any other (404 M_UNRECOGNIZED) rather than
with invented servers or an answer lacking the fields the spec requires.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, requester
from homeserver.errors import MatrixError


async def get_turn_server(request: web.Request) -> web.Response:
    hs = get_hs(request)
    if not hs.turn.configured:
        raise MatrixError(404, "M_UNRECOGNIZED", "No TURN server is configured on this homeserver")
    req = await requester(request, allow_guest=hs.config.voip.turn_allow_guests)
    return json_response(hs.turn.credentials(req.user_id))


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/voip/turnServer", get_turn_server)
