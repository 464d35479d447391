"""End-to-end encryption over federation (user_keys.yaml, user_devices.yaml):
GET /user/devices/{userId}, POST /user/keys/query and /user/keys/claim.

This server's users only (a server speaks for its own users, and answering for
others would let a peer launder their keys through us); other servers' users in
a body are left out of the answer. Display names of devices are not served to
other servers. Rate limited per origin server (``federation_query``). The
federation policy has already refused a server we do not federate with.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.client.keys import claim_body, query_body
from homeserver.api.federation.auth import federation_content, origin_of
from homeserver.api.federation.events import V1
from homeserver.api.http import get_hs, json_response
from homeserver.errors import MatrixError, invalid_param
from homeserver.identifiers import parse_user_id


def _body(request: web.Request) -> dict[str, Any]:
    body = federation_content(request)
    if not isinstance(body, dict):
        raise MatrixError(400, "M_NOT_JSON", "Body must be a JSON object")
    return body


async def get_user_devices(request: web.Request) -> web.Response:
    hs = get_hs(request)
    hs.ratelimiter.check_server("federation_query", origin_of(request))
    user_id = request.match_info["user_id"]
    parsed = parse_user_id(user_id)
    if parsed is None:
        raise invalid_param("Not a user ID")
    if parsed[1] != hs.config.server_name:
        raise invalid_param("User is not hosted on this server")
    return json_response(await hs.keys.user_devices(user_id))


async def query_user_keys(request: web.Request) -> web.Response:
    hs = get_hs(request)
    hs.ratelimiter.check_server("federation_query", origin_of(request))
    return json_response(await hs.keys.federation_query(query_body(_body(request))))


async def claim_user_keys(request: web.Request) -> web.Response:
    hs = get_hs(request)
    hs.ratelimiter.check_server("federation_query", origin_of(request))
    return json_response({"one_time_keys": await hs.keys.claim_local(claim_body(_body(request)))})


def register(app: web.Application) -> None:
    app.router.add_get(V1 + "/user/devices/{user_id}", get_user_devices)
    app.router.add_post(V1 + "/user/keys/query", query_user_keys)
    app.router.add_post(V1 + "/user/keys/claim", claim_user_keys)
