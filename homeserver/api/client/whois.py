"""GET /_matrix/client/v3/admin/whois/{userId}: a user's devices and where they were
last seen, for server admins and for the user themself (the spec lets a server
restrict it so).

What is recorded is one connection per device: the IP address, user agent and time of
the login that created it (DeviceStore.touch exists, but requests do not update it
yet), and a device has one session (that login), so that is what the answer holds. The admin API's /_synapse/admin/v1/whois answers the
same document.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.admin.common import user_id_param
from homeserver.api.http import ClientRoutes, get_hs, json_response, requester
from homeserver.errors import MatrixError


async def get_whois(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    target = request.match_info["user_id"]
    # Authorisation before any lookup, so the endpoint cannot be used to enumerate accounts.
    if target != req.user_id and not await hs.user_admin.is_admin(req.user_id):
        raise MatrixError(403, "M_FORBIDDEN", "You may only look up yourself")
    user_id = user_id_param(request, local_message="Can only whois a local user")
    await hs.user_admin.get(user_id)  # 404 for an unknown account
    return json_response(await hs.user_admin.whois(user_id))


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/admin/whois/{user_id}", get_whois)
