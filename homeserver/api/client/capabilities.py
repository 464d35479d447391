"""GET /capabilities: what this server lets the user do."""

from __future__ import annotations

from aiohttp import web

from federation.events import DEFAULT_ROOM_VERSION, SUPPORTED_ROOM_VERSIONS
from homeserver.api.http import ClientRoutes, get_hs, json_response, requester


async def get_capabilities(request: web.Request) -> web.Response:
    await requester(request, allow_guest=True)
    return json_response(
        {
            "capabilities": {
                "m.change_password": {"enabled": True},
                "m.room_versions": {
                    "default": DEFAULT_ROOM_VERSION,
                    "available": {
                        v: "stable" if rv.stable else "unstable" for v, rv in SUPPORTED_ROOM_VERSIONS.items()
                    },
                },
                "m.set_displayname": {"enabled": True},
                "m.set_avatar_url": {"enabled": True},
                "m.3pid_changes": {"enabled": get_hs(request).config.email.enabled},
                "m.get_login_token": {"enabled": True},
                "m.profile_fields": {"enabled": True},
                "org.matrix.msc3882.get_login_token": {"enabled": False},
                # m.account_moderation is left out: the spec says to omit it when
                # neither lock nor suspend is available.
            }
        }
    )


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/capabilities", get_capabilities)
