"""GET /_accord/admin/v1/audit_log: the audit trail, newest first, for server admins.

Paging is by entry ID (`from` is the `next_token` of the previous page), so entries
recorded while an admin pages through never shift or repeat what they see."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.admin.common import query_int, require_admin
from homeserver.api.http import get_hs, json_response
from homeserver.errors import MatrixError

PATH = "/_accord/admin/v1/audit_log"
MAX_LIMIT = 1000


async def get_audit_log(request: web.Request) -> web.Response:
    await require_admin(request)
    hs = get_hs(request)
    limit = query_int(request, "limit", 100, minimum=1)
    if limit > MAX_LIMIT:
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter 'limit' must be <= {MAX_LIMIT}")
    before = query_int(request, "from", 0, minimum=1) if "from" in request.query else None
    since = query_int(request, "since", 0) if "since" in request.query else None
    until = query_int(request, "until", 0) if "until" in request.query else None
    filters: dict[str, Any] = {}
    for name in ("action", "actor", "target"):
        value = request.query.get(name)
        if value is not None:
            if not value:
                raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter {name!r} must not be empty")
            filters[name] = value
    entries = await hs.audit.query(
        **filters, since_ts=since, until_ts=until, before_id=before, limit=limit + 1
    )
    out: dict[str, Any] = {"entries": [e.to_json() for e in entries[:limit]]}
    out["next_token"] = str(entries[limit - 1].id) if len(entries) > limit else None
    return json_response(out)


def register(app: web.Application) -> None:
    app.router.add_get(PATH, get_audit_log)
