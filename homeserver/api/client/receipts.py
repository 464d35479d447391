"""Receipts and read markers: POST /rooms/{roomId}/receipt/{receiptType}/{eventId}
and POST /rooms/{roomId}/read_markers.

Both need the user to be joined to the room (403 otherwise) and every named
event to be in the room and visible to them (404 otherwise). /read_markers
checks all its events before changing anything, so a request either applies
whole or not at all.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.client.rooms import member_room
from homeserver.api.http import ClientRoutes, get_hs, json_response, read_json, requester
from homeserver.errors import bad_json, invalid_param
from homeserver.receipts import FULLY_READ, READ, READ_PRIVATE, RECEIPT_TYPES, check_thread_id


async def post_receipt(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    hs.ratelimiter.check_user("receipt", req.user_id)  # each one is sent to every member and server
    receipt_type = request.match_info["receipt_type"]
    if receipt_type not in (*RECEIPT_TYPES, FULLY_READ):
        raise invalid_param(f"Receipt type must be one of {', '.join((*RECEIPT_TYPES, FULLY_READ))}")
    # The spec marks the body required, yet most clients send none for unthreaded receipts.
    body = await read_json(request, allow_empty=True)
    thread_id = check_thread_id(body, receipt_type)
    room = await member_room(request, req.user_id)
    event = await hs.receipts.target_event(room, req.user_id, request.match_info["event_id"])
    if receipt_type == FULLY_READ:
        await hs.receipts.set_fully_read(room, req.user_id, event)
    else:
        if thread_id is not None:
            await hs.receipts.check_thread(event, thread_id)
        await hs.receipts.send_receipt(room, req.user_id, receipt_type, event, thread_id)
    return json_response({})


async def post_read_markers(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    hs.ratelimiter.check_user("receipt", req.user_id)
    body = await read_json(request)
    wanted: dict[str, str] = {}
    for key in (FULLY_READ, READ, READ_PRIVATE):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise bad_json(f"Field '{key}' must be an event ID")
        wanted[key] = value
    room = await member_room(request, req.user_id)
    events = {key: await hs.receipts.target_event(room, req.user_id, eid) for key, eid in wanted.items()}
    for key, event in events.items():
        if key == FULLY_READ:
            await hs.receipts.set_fully_read(room, req.user_id, event)
        else:
            await hs.receipts.send_receipt(room, req.user_id, key, event, None)
    return json_response({})


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/rooms/{room_id}/receipt/{receipt_type}/{event_id}", post_receipt)
    routes.add("POST", "/rooms/{room_id}/read_markers", post_read_markers)
