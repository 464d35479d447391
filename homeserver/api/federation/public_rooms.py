"""Published Room Directory (public_rooms.yaml): GET and POST /publicRooms.

The same listing, filters and paging tokens as the client API's /publicRooms,
from `PublicRoomsService.public_rooms`; only the parameter parsing is federation's.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.federation.auth import federation_content, origin_of
from homeserver.api.federation.events import V1
from homeserver.api.http import field, get_hs, json_response, query_bool
from homeserver.errors import bad_json, invalid_param
from homeserver.params import INT64_MAX, parse_int


def _limit(value: Any) -> int | None:
    """A page size; absent or 0 means every room."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_int(value, "'limit'", minimum=0)
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise invalid_param("'limit' must be a non-negative integer")
    return value or None


def _networks(include_all: bool, instance: str | None) -> None:
    if include_all and instance is not None:
        raise invalid_param("'third_party_instance_id' cannot be used with 'include_all_networks'")


async def get_public_rooms(request: web.Request) -> web.Response:
    origin_of(request)
    hs = get_hs(request)
    limit = _limit(request.query.get("limit"))
    instance = request.query.get("third_party_instance_id")
    _networks(query_bool(request, "include_all_networks"), instance)
    return json_response(
        await hs.public_rooms.public_rooms(
            limit=limit, since=request.query.get("since"), third_party_instance_id=instance
        )
    )


async def post_public_rooms(request: web.Request) -> web.Response:
    origin_of(request)
    hs = get_hs(request)
    body = federation_content(request)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise bad_json("Request body must be a JSON object")
    flt = field(body, "filter", dict, default={})
    room_types = field(flt, "room_types", list)
    if room_types is not None and not all(t is None or isinstance(t, str) for t in room_types):
        raise bad_json("'room_types' must list strings or null")
    instance = field(body, "third_party_instance_id", str)
    _networks(field(body, "include_all_networks", bool, default=False), instance)
    return json_response(
        await hs.public_rooms.public_rooms(
            limit=_limit(body.get("limit")),
            since=field(body, "since", str),
            search_term=field(flt, "generic_search_term", str),
            room_types=room_types,
            third_party_instance_id=instance,
        )
    )


def register(app: web.Application) -> None:
    app.router.add_get(V1 + "/publicRooms", get_public_rooms)
    app.router.add_post(V1 + "/publicRooms", post_public_rooms)
