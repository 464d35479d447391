"""PUT /sendToDevice/{eventType}/{txnId}: messages straight to devices.

The body's `messages` maps user IDs to device IDs (or "*", all the user's
devices) to each message's content. Rate limited per sender
(`rate_limits.actions.to_device`); a retransmission with the same transaction ID
is answered without delivering again. Messages for other servers' users go out
as m.direct_to_device EDUs (see homeserver/e2ee/to_device.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.http import ClientRoutes, field, get_hs, json_response, read_json, requester


async def put_send_to_device(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    hs.ratelimiter.check_user("to_device", req.user_id)
    body = await read_json(request)
    messages: dict[str, Any] = field(body, "messages", dict, required=True)
    await hs.to_device.send(
        req.user_id, req.device_id, request.match_info["txn_id"], request.match_info["event_type"], messages
    )
    return json_response({})


def register(routes: ClientRoutes) -> None:
    routes.add("PUT", "/sendToDevice/{event_type}/{txn_id}", put_send_to_device)
