"""Partnership requests between servers, under
``/_matrix/federation/unstable/org.accord.partners/v1/`` (reachable under any
federation policy: it is how partnerships are made).

- ``PUT .../request/{request_id}`` ``{"organization": str, "message"?: str}``:
  the origin asks us for a partnership; answers ``{"state": "pending"}`` (or
  ``"active"`` when we had asked the origin too).
- ``PUT .../respond/{request_id}`` ``{"response": "accept" | "decline"}``: the
  origin answers our request; answers ``{"state": "active" | "declined"}``.
- ``PUT .../revoke/{request_id}`` ``{"reason"?: str}``: the origin ends the
  partnership (or withdraws its request) that the ID names.

All are signed with X-Matrix (the middleware refuses anything else with 401),
idempotent (a retry gets the same answer) and replay-safe (see
``homeserver/partners/partnerships.py``). The peer is the signing origin,
never a body field.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.federation.auth import federation_content, origin_of
from homeserver.api.http import get_hs, json_response
from homeserver.errors import bad_json
from homeserver.partners.partnerships import API_PREFIX


def _body(request: web.Request) -> dict[str, Any]:
    content = federation_content(request)
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise bad_json("The body must be a JSON object")
    return content


async def put_request(request: web.Request) -> web.Response:
    origin = origin_of(request)
    body = _body(request)
    answer = await get_hs(request).partners.received_request(
        origin, request.match_info["request_id"], body.get("organization"), body.get("message")
    )
    return json_response(answer)


async def put_respond(request: web.Request) -> web.Response:
    origin = origin_of(request)
    body = _body(request)
    response = body.get("response")
    if response not in ("accept", "decline"):
        raise bad_json("Field 'response' must be 'accept' or 'decline'")
    answer = await get_hs(request).partners.received_response(
        origin, request.match_info["request_id"], accept=response == "accept"
    )
    return json_response(answer)


async def put_revoke(request: web.Request) -> web.Response:
    origin = origin_of(request)
    body = _body(request)
    answer = await get_hs(request).partners.received_revoke(
        origin, request.match_info["request_id"], body.get("reason")
    )
    return json_response(answer)


def register(app: web.Application) -> None:
    app.router.add_put(API_PREFIX + "request/{request_id}", put_request)
    app.router.add_put(API_PREFIX + "respond/{request_id}", put_respond)
    app.router.add_put(API_PREFIX + "revoke/{request_id}", put_revoke)
