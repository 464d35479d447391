"""Retrieving events (events.yaml, event_auth.yaml): GET /event/{eventId},
/state/{roomId}, /state_ids/{roomId}, /event_auth/{roomId}/{eventId} and
/timestamp_to_event/{roomId}.

Only HTTP here: the origin comes from the X-Matrix middleware, the decisions
(room gate, history visibility, auth chains) from `FederationReads`.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.federation.auth import origin_of
from homeserver.api.http import get_hs, json_response, timestamp_query
from homeserver.errors import invalid_param, missing_param

V1 = "/_matrix/federation/v1"


def required_query(request: web.Request, name: str) -> str:
    """A required query parameter: M_MISSING_PARAM when absent or empty."""
    value = request.query.get(name)
    if not value:
        raise missing_param(f"Missing query parameter '{name}'")
    return value


def event_id_param(value: str, name: str = "event_id") -> str:
    if not value.startswith("$"):
        raise invalid_param(f"'{name}' is not an event ID")
    return value


def room_id_param(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not room_id.startswith("!"):
        raise invalid_param("Not a room ID")
    return room_id


def transaction(request: web.Request, pdus: list[dict]) -> dict:
    """The transaction shape /event and /backfill answer with."""
    hs = get_hs(request)
    return {"origin": hs.config.server_name, "origin_server_ts": hs.clock.time_ms(), "pdus": pdus}


async def get_event(request: web.Request) -> web.Response:
    origin = origin_of(request)
    event_id = event_id_param(request.match_info["event_id"], "eventId")
    pdu = await get_hs(request).federation_reads.event(origin, event_id)
    return json_response(transaction(request, [pdu]))


async def get_state(request: web.Request) -> web.Response:
    origin = origin_of(request)
    room_id = room_id_param(request)
    event_id = event_id_param(required_query(request, "event_id"))
    return json_response(await get_hs(request).federation_reads.state(origin, room_id, event_id))


async def get_state_ids(request: web.Request) -> web.Response:
    origin = origin_of(request)
    room_id = room_id_param(request)
    event_id = event_id_param(required_query(request, "event_id"))
    return json_response(await get_hs(request).federation_reads.state_ids(origin, room_id, event_id))


async def get_event_auth(request: web.Request) -> web.Response:
    origin = origin_of(request)
    room_id = room_id_param(request)
    event_id = event_id_param(request.match_info["event_id"], "eventId")
    return json_response(await get_hs(request).federation_reads.event_auth(origin, room_id, event_id))


async def get_timestamp_to_event(request: web.Request) -> web.Response:
    origin = origin_of(request)
    room_id = room_id_param(request)
    ts, backwards = timestamp_query(request)
    return json_response(await get_hs(request).timestamp_lookup.for_server(origin, room_id, ts, backwards))


def register(app: web.Application) -> None:
    app.router.add_get(V1 + "/event/{event_id}", get_event)
    app.router.add_get(V1 + "/state/{room_id}", get_state)
    app.router.add_get(V1 + "/state_ids/{room_id}", get_state_ids)
    app.router.add_get(V1 + "/event_auth/{room_id}/{event_id}", get_event_auth)
    app.router.add_get(V1 + "/timestamp_to_event/{room_id}", get_timestamp_to_event)
