"""POST /user_directory/search (the spec's "User Directory")."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, field, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_TERM_LENGTH = 1000


async def search(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await read_json(request)
    term = field(body, "search_term", str, required=True)
    limit = field(body, "limit", int, default=DEFAULT_LIMIT)
    if limit < 0:
        raise MatrixError(400, "M_INVALID_PARAM", "'limit' must not be negative")
    if len(term) > MAX_TERM_LENGTH:
        raise MatrixError(400, "M_INVALID_PARAM", f"'search_term' is longer than {MAX_TERM_LENGTH} characters")
    users, limited = await get_hs(request).user_directory.search(req.user_id, term, min(limit, MAX_LIMIT))
    results = []
    for user in users:
        entry = {"user_id": user.user_id}
        if user.display_name is not None:
            entry["display_name"] = user.display_name
        if user.avatar_url is not None:
            entry["avatar_url"] = user.avatar_url
        results.append(entry)
    return json_response({"results": results, "limited": limited})


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/user_directory/search", search)
