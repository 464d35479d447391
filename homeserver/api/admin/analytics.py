"""GET /_accord/admin/v1/analytics?days=N (1..366, default 30): the network analytics,
read from the daily rollups the server keeps (homeserver/analytics/service.py).

    {"days": ["2026-11-03", ...],                       oldest first, today last (UTC)
     "messages": {"internal": [...], "federated": [...]},
     "active_users": [...], "partners": [...],          one number per day
     "partner_traffic": [{"server_name", "sent", "received"}],   totals over the range
     "response_times": [{"server_name", "transactions", "avg_ms"}]}
"""

from __future__ import annotations

from aiohttp import web

from homeserver.analytics.service import MAX_DAYS
from homeserver.api.admin.common import query_int, require_admin
from homeserver.api.http import get_hs, json_response
from homeserver.errors import MatrixError

PATH = "/_accord/admin/v1/analytics"


async def get_analytics(request: web.Request) -> web.Response:
    await require_admin(request)
    days = query_int(request, "days", 30, minimum=1)
    if days > MAX_DAYS:
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter 'days' must be <= {MAX_DAYS}")
    return json_response(await get_hs(request).analytics.report(days))


def register(app: web.Application) -> None:
    app.router.add_get(PATH, get_analytics)
