"""Third-party networks (the spec's third_party_lookup module): the protocols, portal
rooms and users that application services (bridges) provide. This server runs no
application services, so it knows no protocol: the list is empty and every lookup is
the spec's 404 for what was not found, which is the truth and what clients that ask
at login (Element does) read as "no bridges" rather than as an error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from homeserver.api.http import ClientRoutes, json_response, requester
from homeserver.errors import MatrixError, not_found


async def get_protocols(request: web.Request) -> web.Response:
    await requester(request, allow_guest=True)
    return json_response({})


async def get_protocol(request: web.Request) -> web.Response:
    await requester(request, allow_guest=True)
    raise not_found("Unknown protocol")


async def lookup_by_protocol(request: web.Request) -> web.Response:
    await requester(request, allow_guest=True)
    raise not_found("Unknown protocol")


def _reverse_lookup(param: str, message: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A lookup by Matrix ID (`param`, required), which no protocol can answer."""

    async def handler(request: web.Request) -> web.Response:
        await requester(request, allow_guest=True)
        if not request.query.get(param):
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing required parameter {param!r}")
        raise not_found(message)

    return handler


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/thirdparty/protocols", get_protocols)
    routes.add("GET", "/thirdparty/protocol/{protocol}", get_protocol)
    routes.add("GET", "/thirdparty/location/{protocol}", lookup_by_protocol)
    routes.add("GET", "/thirdparty/user/{protocol}", lookup_by_protocol)
    routes.add("GET", "/thirdparty/location", _reverse_lookup("alias", "No portal room has this alias"))
    routes.add("GET", "/thirdparty/user", _reverse_lookup("userid", "No third-party user has this user ID"))
