"""Reporting content (the spec's report_content module): events, rooms and users, for
the server's admins to review through the admin API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from homeserver.api.http import ClientRoutes, client_ip, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError

#: (reporter, reason, client IP) -> the report made
ReportFn = Callable[[str, str, "str | None"], Awaitable[None]]
MAX_REASON = 1000  # a report's reason is for a human to read, not a place to store data


def _reason(value: object, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing required field 'reason'")
        return None
    if not isinstance(value, str):
        raise MatrixError(400, "M_BAD_JSON", "Field 'reason' must be a string")
    if len(value) > MAX_REASON:
        raise MatrixError(400, "M_INVALID_PARAM", f"Field 'reason' is too long (max {MAX_REASON})")
    return value


async def post_report_event(request: web.Request) -> web.Response:
    """The reporter must be joined and able to see the event; anything else is the same
    404, so a report cannot be used to learn whether an event exists."""
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request)
    reason = _reason(body.get("reason"), required=False)
    score = body.get("score")  # removed from the spec in v1.18; older clients still send it
    if score is not None and (
        not isinstance(score, int) or isinstance(score, bool) or not -100 <= score <= 0
    ):
        raise MatrixError(400, "M_INVALID_PARAM", "Field 'score' must be an integer in the range -100 to 0")
    hs.ratelimiter.check("message", req.user_id, exempt=hs.is_ratelimit_exempt(req.user_id))
    await hs.reports.report_event(
        req.user_id, request.match_info["room_id"], request.match_info["event_id"], reason, score,
        client_ip(request),
    )
    return json_response({})


async def _report_with_reason(request: web.Request, report: ReportFn) -> web.Response:
    """A report whose body must give a reason (rooms, users): anyone may make one."""
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request)
    reason = _reason(body.get("reason"), required=True)
    assert reason is not None
    hs.ratelimiter.check("message", req.user_id, exempt=hs.is_ratelimit_exempt(req.user_id))
    await report(req.user_id, reason, client_ip(request))
    return json_response({})


async def post_report_room(request: web.Request) -> web.Response:
    """Anyone may report a room, joined or not (the spec forbids requiring it)."""
    room_id = request.match_info["room_id"]
    return await _report_with_reason(
        request, lambda user_id, reason, ip: get_hs(request).reports.report_room(user_id, room_id, reason, ip)
    )


async def post_report_user(request: web.Request) -> web.Response:
    """v1.14: anyone may report a user, sharing a room or not."""
    target = request.match_info["user_id"]
    return await _report_with_reason(
        request, lambda user_id, reason, ip: get_hs(request).reports.report_user(user_id, target, reason, ip)
    )


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/rooms/{room_id}/report/{event_id}", post_report_event)
    routes.add("POST", "/rooms/{room_id}/report", post_report_room)
    routes.add("POST", "/users/{user_id}/report", post_report_user)
