"""The partner directory for users (``/_matrix/client/unstable/org.accord.directory``).

A user searches through their own homeserver, which asks every directory in
``partner_directory.search`` and merges the answers; users never talk to a
directory themselves (directories only answer signed server requests). An
organization's server admin can ask a found organization for a partnership.

    GET  .../search?q=&specialty=&location=&verified_only=&limit=&since=
    GET  .../recommendations?limit=
    POST .../request_partnership   {"server_name": "...", "message": "..."}   (server admins)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.admin.partner_directory import require_server_admin
from homeserver.api.http import (
    ClientRoutes,
    client_ip,
    field,
    get_hs,
    json_response,
    read_json,
    requester,
)
from homeserver.errors import MatrixError, invalid_param
from homeserver.identifiers import is_valid_server_name
from homeserver.partners.directory import SearchQuery

PREFIX = "/_matrix/client/unstable/org.accord.directory"
MAX_MESSAGE = 2000


async def search(request: web.Request) -> web.Response:
    await requester(request)
    query = SearchQuery.from_json(request.query, strings=True)
    return json_response(await get_hs(request).partner_directory_search.search(query))


async def recommendations(request: web.Request) -> web.Response:
    await requester(request)
    limit = SearchQuery.from_json(request.query, strings=True).limit
    return json_response(await get_hs(request).partner_directory_search.recommendations(limit))


async def request_partnership(request: web.Request) -> web.Response:
    admin = await require_server_admin(request)
    hs = get_hs(request)
    body = await read_json(request)
    server_name = field(body, "server_name", str, required=True)
    message = field(body, "message", str, default="")
    if not is_valid_server_name(server_name):
        raise invalid_param("'server_name' is not a server name")
    if server_name == hs.config.server_name:
        raise invalid_param("An organization cannot partner with itself")
    if len(message) > MAX_MESSAGE:
        raise MatrixError(400, "M_TOO_LARGE", f"'message' is longer than {MAX_MESSAGE} characters")
    # Partnerships are their own service; this endpoint only lets a directory
    # search lead straight to a request.
    partners = getattr(hs, "partners", None)
    if partners is None or not hasattr(partners, "request"):
        raise MatrixError(404, "M_UNRECOGNIZED", "Partnerships are not available on this server")
    result: Any = await partners.request(server_name, by=admin, message=message, ip=client_ip(request))
    if hasattr(result, "to_json"):
        result = result.to_json()
    return json_response(result if isinstance(result, dict) else {"server_name": server_name})


def register(routes: ClientRoutes) -> None:
    prefixes = (PREFIX,)
    routes.add("GET", "/search", search, prefixes)
    routes.add("GET", "/recommendations", recommendations, prefixes)
    routes.add("POST", "/request_partnership", request_partnership, prefixes)
