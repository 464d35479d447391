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

#: kind -> (the list's key, its substring filters as query parameters)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "room": ("room_reports", ("user_id", "room_id")),
    "user": ("user_reports", ("user_id", "target_user_id")),
}


def _routes(kind: str) -> list[web.RouteDef]:
    key, filters = KINDS[kind]
    missing = f"{kind.capitalize()} report not found"

    async def list_reports(request: web.Request) -> web.Response:
        await require_admin(request)
        start = query_int(request, "from", 0)
        reports, total = await get_hs(request).reports.page_of(
            kind, offset=start, limit=query_int(request, "limit", 100),
            newest_first=query_choice(request, "dir", ("b", "f"), "b") == "b",
            filters={name: request.query.get(name) for name in filters},
        )
        out: dict[str, Any] = {key: [asdict(r) for r in reports], "total": total}
        if start + len(reports) < total:
            out["next_token"] = start + len(reports)
        return json_response(out)

    async def get_report(request: web.Request) -> web.Response:
        await require_admin(request)
        report = await get_hs(request).reports.get_of(kind, report_id_param(request))
        if report is None:
            raise MatrixError(404, "M_NOT_FOUND", missing)
        return json_response(asdict(report))

    async def delete_report(request: web.Request) -> web.Response:
        req = await require_admin(request)
        report_id = report_id_param(request)
        if not await get_hs(request).reports.delete_of(kind, report_id):
            raise MatrixError(404, "M_NOT_FOUND", missing)
        await audit(request, req, f"admin.{kind}_report.delete", target=str(report_id))
        return json_response({})

    path = f"{PREFIX}/{key}"
    return [
        web.get(path, list_reports),
        web.get(path + "/{report_id}", get_report),
        web.delete(path + "/{report_id}", delete_report),
    ]


def register(app: web.Application) -> None:
    for kind in KINDS:
        app.router.add_routes(_routes(kind))
