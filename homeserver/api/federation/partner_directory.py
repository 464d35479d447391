"""The partner directory's server-server API (``org.accord.directory``, unstable).

Every route is signed (the federation auth middleware refuses anything else) and
acts for the X-Matrix origin only: a server publishes, reads and withdraws its
own entry, and asks for recommendations for itself. Bodies and query strings are
validated by the directory service; this module only shapes HTTP.

    PUT    .../v1/profile           publish or replace our profile ({"withdrawn": true} withdraws)
    DELETE .../v1/profile           withdraw it
    GET    .../v1/profile           our entry as listed (verified, expiry)
    GET    .../v1/search            ?q=&specialty=&location=&verified_only=&limit=&since=
    POST   .../v1/search            the same filters as a JSON object
    GET    .../v1/recommendations   ?limit=
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.federation.auth import federation_content, origin_of
from homeserver.api.http import get_hs, json_response
from homeserver.errors import MatrixError, bad_json
from homeserver.partners.directory import SearchQuery
from homeserver.partners.directory_publisher import DIRECTORY_PREFIX


async def _body(request: web.Request) -> dict[str, Any]:
    # The auth middleware read the body, capped at MAX_BODY_BYTES for this prefix.
    body = federation_content(request)
    if body is None:
        raise MatrixError(400, "M_NOT_JSON", "Request body is empty; expected a JSON object")
    if not isinstance(body, dict):
        raise bad_json("Request body must be a JSON object")
    return body


async def put_profile(request: web.Request) -> web.Response:
    origin = origin_of(request)
    body = await _body(request)
    return json_response(await get_hs(request).partner_directory.publish(origin, body, ip=request.remote))


async def delete_profile(request: web.Request) -> web.Response:
    origin = origin_of(request)
    removed = await get_hs(request).partner_directory.withdraw(origin, ip=request.remote)
    return json_response({"server_name": origin, "withdrawn": True, "was_listed": removed})


async def get_profile(request: web.Request) -> web.Response:
    return json_response(await get_hs(request).partner_directory.own_entry(origin_of(request)))


async def get_search(request: web.Request) -> web.Response:
    origin_of(request)
    query = SearchQuery.from_json(request.query, strings=True)
    return json_response(await get_hs(request).partner_directory.search(query))


async def post_search(request: web.Request) -> web.Response:
    origin_of(request)
    query = SearchQuery.from_json(await _body(request))
    return json_response(await get_hs(request).partner_directory.search(query))


async def get_recommendations(request: web.Request) -> web.Response:
    origin = origin_of(request)
    limit = SearchQuery.from_json(request.query, strings=True).limit
    return json_response(await get_hs(request).partner_directory.recommendations(origin, limit))


def register(app: web.Application) -> None:
    app.router.add_put(DIRECTORY_PREFIX + "/profile", put_profile)
    app.router.add_delete(DIRECTORY_PREFIX + "/profile", delete_profile)
    app.router.add_get(DIRECTORY_PREFIX + "/profile", get_profile)
    app.router.add_get(DIRECTORY_PREFIX + "/search", get_search)
    app.router.add_post(DIRECTORY_PREFIX + "/search", post_search)
    app.router.add_get(DIRECTORY_PREFIX + "/recommendations", get_recommendations)
