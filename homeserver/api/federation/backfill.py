"""Backfilling and retrieving missing events (backfill.yaml): GET /backfill/{roomId}
and POST /get_missing_events/{roomId}."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.federation.auth import federation_content, origin_of
from homeserver.api.federation.events import V1, room_id_param, transaction
from homeserver.api.http import field, get_hs, json_response
from homeserver.errors import bad_json, invalid_param, missing_param
from homeserver.federation.reads import DEFAULT_MISSING_EVENTS
from homeserver.params import INT64_MAX, parse_int


def _event_ids(values: list[Any], name: str) -> list[str]:
    if not all(isinstance(v, str) and v.startswith("$") for v in values):
        raise invalid_param(f"'{name}' must list event IDs")
    return values


def _int(value: Any, name: str) -> int:
    """A non-negative integer parameter (query string or JSON)."""
    if isinstance(value, str):
        value = parse_int(value, f"'{name}'", minimum=0)
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise invalid_param(f"'{name}' must be a non-negative integer")
    return value


async def get_backfill(request: web.Request) -> web.Response:
    origin = origin_of(request)
    room_id = room_id_param(request)
    from_ids = _event_ids(request.query.getall("v", []), "v")
    if not from_ids:
        raise missing_param("Missing query parameter 'v'")
    raw_limit = request.query.get("limit")
    if raw_limit is None:
        raise missing_param("Missing query parameter 'limit'")
    limit = _int(raw_limit, "limit")
    pdus = await get_hs(request).federation_reads.backfill(origin, room_id, from_ids, limit)
    return json_response(transaction(request, pdus))


async def post_get_missing_events(request: web.Request) -> web.Response:
    origin = origin_of(request)
    room_id = room_id_param(request)
    body = federation_content(request)
    if not isinstance(body, dict):
        raise bad_json("Request body must be a JSON object")
    earliest = _event_ids(field(body, "earliest_events", list, required=True), "earliest_events")
    latest = _event_ids(field(body, "latest_events", list, required=True), "latest_events")
    if not latest:
        raise invalid_param("'latest_events' must not be empty")
    limit = _int(DEFAULT_MISSING_EVENTS if body.get("limit") is None else body["limit"], "limit")
    min_depth = _int(0 if body.get("min_depth") is None else body["min_depth"], "min_depth")
    events = await get_hs(request).federation_reads.missing_events(
        origin, room_id, earliest=earliest, latest=latest, limit=limit, min_depth=min_depth
    )
    return json_response({"events": events})


def register(app: web.Application) -> None:
    app.router.add_get(V1 + "/backfill/{room_id}", get_backfill)
    app.router.add_post(V1 + "/get_missing_events/{room_id}", post_get_missing_events)
