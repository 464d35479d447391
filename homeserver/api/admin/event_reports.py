"""Synapse's event report admin API: list, show and delete what users reported."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.admin.common import ADMIN_V1, audit, query_choice, query_int, require_admin
from homeserver.api.http import get_hs, json_response
from homeserver.errors import MatrixError
from homeserver.params import try_parse_int

PATH = ADMIN_V1 + "/event_reports"


def report_id_param(request: web.Request) -> int:
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
    reports, total = await hs.reports.page(
        offset=start, limit=limit, newest_first=newest_first,
        user_id=request.query.get("user_id"), room_id=request.query.get("room_id"),
        event_sender=request.query.get("event_sender_user_id"),
    )
    out: dict[str, Any] = {"event_reports": [await hs.reports.report_json(r) for r in reports], "total": total}
    if start + len(reports) < total:
        out["next_token"] = start + len(reports)
    return json_response(out)


async def get_report(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    report = await hs.reports.get(report_id_param(request))
    if report is None:
        raise MatrixError(404, "M_NOT_FOUND", "Event report not found")
    out = await hs.reports.report_json(report)
    out["event_json"] = await hs.reports.reported_event(report)
    return json_response(out)


async def delete_report(request: web.Request) -> web.Response:
    req = await require_admin(request)
    hs = get_hs(request)
    report_id = report_id_param(request)
    if not await hs.reports.delete(report_id):
        raise MatrixError(404, "M_NOT_FOUND", "Event report not found")
    await audit(request, req, "admin.event_report.delete", target=str(report_id))
    return json_response({})


def register(app: web.Application) -> None:
    app.router.add_get(PATH, list_reports)
    app.router.add_get(PATH + "/{report_id}", get_report)
    app.router.add_delete(PATH + "/{report_id}", delete_report)
