"""Room and user reports for admins (/_accord/admin/v1/room_reports, /user_reports):
list, show and delete, in the event report API's manner (from/limit/dir paging,
substring filters, next_token), which has no counterpart for these in Synapse's API."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from homeserver.api.admin.common import audit, query_choice, query_int, require_admin
from homeserver.api.admin.event_reports import report_id_param
from homeserver.api.http import get_hs, json_response
from homeserver.errors import MatrixError

PREFIX = "/_accord/admin/v1"


def _paging(request: web.Request) -> tuple[int, int, bool]:
    return (query_int(request, "from", 0), query_int(request, "limit", 100),
            query_choice(request, "dir", ("b", "f"), "b") == "b")


def _listing(key: str, items: list[Any], start: int, total: int) -> web.Response:
    out: dict[str, Any] = {key: [asdict(r) for r in items], "total": total}
    if start + len(items) < total:
        out["next_token"] = start + len(items)
    return json_response(out)


async def list_room_reports(request: web.Request) -> web.Response:
    await require_admin(request)
    start, limit, newest_first = _paging(request)
    reports, total = await get_hs(request).reports.room_reports(
        offset=start, limit=limit, newest_first=newest_first,
        user_id=request.query.get("user_id"), room_id=request.query.get("room_id"),
    )
    return _listing("room_reports", reports, start, total)


async def list_user_reports(request: web.Request) -> web.Response:
    await require_admin(request)
    start, limit, newest_first = _paging(request)
    reports, total = await get_hs(request).reports.user_reports(
        offset=start, limit=limit, newest_first=newest_first,
        user_id=request.query.get("user_id"), target_user_id=request.query.get("target_user_id"),
    )
    return _listing("user_reports", reports, start, total)


async def get_room_report(request: web.Request) -> web.Response:
    await require_admin(request)
    report = await get_hs(request).reports.get_room_report(report_id_param(request))
    if report is None:
        raise MatrixError(404, "M_NOT_FOUND", "Room report not found")
    return json_response(asdict(report))


async def get_user_report(request: web.Request) -> web.Response:
    await require_admin(request)
    report = await get_hs(request).reports.get_user_report(report_id_param(request))
    if report is None:
        raise MatrixError(404, "M_NOT_FOUND", "User report not found")
    return json_response(asdict(report))


async def delete_room_report(request: web.Request) -> web.Response:
    req = await require_admin(request)
    report_id = report_id_param(request)
    if not await get_hs(request).reports.delete_room_report(report_id):
        raise MatrixError(404, "M_NOT_FOUND", "Room report not found")
    await audit(request, req, "admin.room_report.delete", target=str(report_id))
    return json_response({})


async def delete_user_report(request: web.Request) -> web.Response:
    req = await require_admin(request)
    report_id = report_id_param(request)
    if not await get_hs(request).reports.delete_user_report(report_id):
        raise MatrixError(404, "M_NOT_FOUND", "User report not found")
    await audit(request, req, "admin.user_report.delete", target=str(report_id))
    return json_response({})


def register(app: web.Application) -> None:
    app.router.add_get(PREFIX + "/room_reports", list_room_reports)
    app.router.add_get(PREFIX + "/room_reports/{report_id}", get_room_report)
    app.router.add_delete(PREFIX + "/room_reports/{report_id}", delete_room_report)
    app.router.add_get(PREFIX + "/user_reports", list_user_reports)
    app.router.add_get(PREFIX + "/user_reports/{report_id}", get_user_report)
    app.router.add_delete(PREFIX + "/user_reports/{report_id}", delete_user_report)
