"""GET /sync."""

from __future__ import annotations

from typing import NamedTuple

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, query_bool, requester
from homeserver.errors import MatrixError
from homeserver.params import query_int
from homeserver.sync.tokens import SyncToken

MAX_TIMEOUT_MS = 5 * 60 * 1000


class _Params(NamedTuple):
    """/sync's query parameters, checked."""

    since: SyncToken | None
    timeout_ms: int
    full_state: bool
    set_presence: str
    filter: str | None
    use_state_after: bool


# Query string -> its parameters, for query strings whose every parameter is valid: the
# long-polling readers of a busy room renew their polls with the same few query strings
# (the same token and timeout), parsed once instead of at every renewal.
_PARSED: dict[str, _Params] = {}
_PARSED_MAX = 1024


async def get_sync(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    query_string = request.query_string
    params = _PARSED.get(query_string)
    if params is None:
        # Each parameter checked in turn, its error raised where it was always raised.
        since_param = request.query.get("since")
        since = SyncToken.parse(since_param) if since_param else None
        timeout_ms = query_int(request.query, "timeout", 0) or 0
        timeout_ms = max(0, min(timeout_ms, MAX_TIMEOUT_MS))
        full_state = query_bool(request, "full_state")
        set_presence = request.query.get("set_presence", "online")
        if set_presence not in ("online", "offline", "unavailable"):
            raise MatrixError(400, "M_INVALID_PARAM", "set_presence must be online, offline or unavailable")
        filter_param = request.query.get("filter")
        sync_filter = await hs.filters.sync_filter(req.user_id, filter_param)
        await hs.presence.sync_activity(req.user_id, set_presence)
        use_state_after = query_bool(request, "use_state_after")
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[query_string] = _Params(since, timeout_ms, full_state, set_presence, filter_param, use_state_after)
    else:
        since, timeout_ms, full_state, set_presence, filter_param, use_state_after = params
        sync_filter = await hs.filters.sync_filter(req.user_id, filter_param)
        await hs.presence.sync_activity(req.user_id, set_presence)
    result = await hs.sync.sync(req, since, timeout_ms, sync_filter, full_state, use_state_after)
    return json_response(result)


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/sync", get_sync)
