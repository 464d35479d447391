"""make_join (v1) and send_join (v2): remote users joining our rooms."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.federation.auth import federation_content, origin_of
from homeserver.api.http import get_hs, json_response


async def get_make_join(request: web.Request) -> web.Response:
    hs = get_hs(request)
    versions = request.query.getall("ver", ["1"])
    answer = await hs.federated_joins.make_join(
        origin_of(request), request.match_info["room_id"], request.match_info["user_id"], versions
    )
    return json_response(answer)


async def put_send_join(request: web.Request) -> web.Response:
    hs = get_hs(request)
    answer = await hs.federated_joins.send_join(
        origin_of(request), request.match_info["room_id"], request.match_info["event_id"],
        federation_content(request),
    )
    return json_response(answer)


def register(app: web.Application) -> None:
    app.router.add_get("/_matrix/federation/v1/make_join/{room_id}/{user_id}", get_make_join)
    app.router.add_put("/_matrix/federation/v2/send_join/{room_id}/{event_id}", put_send_join)
