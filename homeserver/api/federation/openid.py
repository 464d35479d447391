"""GET /_matrix/federation/v1/openid/userinfo?access_token=: which user of ours an
OpenID token was issued to. Asked by third parties that hold no server key, so it
is served without an X-Matrix signature (PUBLIC_PATHS); the token is the proof."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import get_hs, json_response
from homeserver.errors import MatrixError

USERINFO_PATH = "/_matrix/federation/v1/openid/userinfo"


async def userinfo(request: web.Request) -> web.Response:
    hs = get_hs(request)
    token = request.query.get("access_token", "")
    if not token:
        raise MatrixError(401, "M_MISSING_TOKEN", "No access_token given")
    user_id = await hs.openid.user_of(token)
    if user_id is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired")
    return json_response({"sub": user_id})


def register(app: web.Application) -> None:
    app.router.add_get(USERINFO_PATH, userinfo)
