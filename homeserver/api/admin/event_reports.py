"""Synapse's event report admin API: list, show and delete what users reported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from homeserver.api.admin.common import ADMIN_V1, audit, query_choice, query_int, require_admin
from homeserver.api.http import get_hs, json_response
from homeserver.errors import MatrixError
from homeserver.params import try_parse_int
from homeserver.records.event_reports import EventReport

if TYPE_CHECKING:
    from homeserver.server import HomeServer

PATH = ADMIN_V1 + "/event_reports"


async def _report_json(hs: HomeServer, report: EventReport) -> dict[str, Any]:
    """A report with the room's current name and canonical alias (null once the room is gone)."""
    name = alias = None
    room = await hs.room_store.get_room(report.room_id)
    if room is not None:
        state = await hs.room_service.current_state_events(
            room, [("m.room.name", ""), ("m.room.canonical_alias", "")]
        )
        name_ev, alias_ev = state.get(("m.room.name", "")), state.get(("m.room.canonical_alias", ""))
        if name_ev is not None and isinstance(name_ev.event["content"].get("name"), str):
            name = name_ev.event["content"]["name"]
        if alias_ev is not None and isinstance(alias_ev.event["content"].get("alias"), str):
            alias = alias_ev.event["content"]["alias"]
    return {
        "id": report.id,
        "received_ts": report.received_ts,
        "room_id": report.room_id,
        "name": name,
        "event_id": report.event_id,
        "user_id": report.user_id,
        "reason": report.reason,
        "score": report.score,
        "sender": report.sender,
        "canonical_alias": alias,
    }


def _report_id(request: web.Request) -> int:
    raw = request.match_info["report_id"]
    report_id = try_parse_int(raw, minimum=0)
    if report_id is None:
        raise MatrixError(400, "M_INVALID_PARAM", "The report_id parameter must be a string representing a positive integer.")
    return report_id


async def list_reports(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    start = query_int(request, "from", 0)
    limit = query_int(request, "limit", 100)
    newest_first = query_choice(request, "dir", ("b", "f"), "b") == "b"
    reports, total = await hs.event_reports.page(
        offset=start, limit=limit, newest_first=newest_first,
        user_id=request.query.get("user_id"), room_id=request.query.get("room_id"),
        event_sender=request.query.get("event_sender_user_id"),
    )
    out: dict[str, Any] = {"event_reports": [await _report_json(hs, r) for r in reports], "total": total}
    if start + len(reports) < total:
        out["next_token"] = start + len(reports)
    return json_response(out)


async def get_report(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    report = await hs.event_reports.get(_report_id(request))
    if report is None:
        raise MatrixError(404, "M_NOT_FOUND", "Event report not found")
    out = await _report_json(hs, report)
    event = await hs.event_store.get_event(report.event_id)
    out["event_json"] = event.event if event is not None else None
    return json_response(out)


async def delete_report(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    report_id = _report_id(request)
    if not await hs.event_reports.delete(report_id):
        raise MatrixError(404, "M_NOT_FOUND", "Event report not found")
    await audit(request, req, "admin.event_report.delete", target=str(report_id))
    return json_response({})


def register(app: web.Application) -> None:
    app.router.add_get(PATH, list_reports)
    app.router.add_get(PATH + "/{report_id}", get_report)
    app.router.add_delete(PATH + "/{report_id}", delete_report)
