"""URL previews: ``GET /_matrix/client/v1/media/preview_url``, and the deprecated
``/_matrix/media/v3/preview_url`` (authenticated too) where the legacy media
endpoints are served (``media.legacy_unauthenticated``).

When ``media.url_preview.enabled`` is false the server has no previewer and the
endpoint answers 404 M_UNRECOGNIZED, as for any endpoint a server does not serve."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, requester
from homeserver.errors import missing_param, unrecognized
from homeserver.params import query_int

PREFIXES = ("/_matrix/client/v1",)
LEGACY_PREFIXES = ("/_matrix/media/v3", "/_matrix/media/r0")
PREVIEW_REGISTERED: web.AppKey[bool] = web.AppKey("preview_url_routes")


async def preview_url(request: web.Request) -> web.Response:
    hs = get_hs(request)
    legacy = request.path.startswith("/_matrix/media/")
    if hs.url_previewer is None or (legacy and not hs.config.media.legacy_unauthenticated):
        raise unrecognized()
    user = await requester(request)
    hs.ratelimiter.check_user("url_preview", user.user_id)
    url = request.query.get("url")
    if not url:
        raise missing_param("Missing url")
    ts = query_int(request.query, "ts", minimum=0)
    return json_response(await hs.url_previewer.preview(url, ts, user.user_id))


def register(routes: ClientRoutes) -> None:
    """Once per application (the ``client`` and ``media`` resources both serve it)."""
    if routes.app.get(PREVIEW_REGISTERED):
        return
    routes.app[PREVIEW_REGISTERED] = True
    routes.add("GET", "/media/preview_url", preview_url, prefixes=PREFIXES)
    routes.add("GET", "/preview_url", preview_url, prefixes=LEGACY_PREFIXES)
