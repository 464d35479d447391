"""HTTP plumbing shared by every API: JSON in and out, errors, CORS, routing helpers.

Every response, including errors raised by aiohttp itself (unknown path, wrong
method, oversized body), leaves through `serve_matrix` 's handler, so clients always
get the spec's JSON error shape and CORS headers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from federation.events.json_bounds import JSONBoundsError, loads_bounded
from homeserver.api.routing import RouteGroup, group_key
from homeserver.errors import MatrixError, bad_json, missing_param
from homeserver.params import parse_int
from homeserver.records import encoded_json

if TYPE_CHECKING:
    from homeserver.accounts.auth import Requester
    from homeserver.server import HomeServer

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HS_KEY: web.AppKey[HomeServer] = web.AppKey("hs")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}

CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")


def get_hs(request: web.Request) -> HomeServer:
    return request.app[HS_KEY]


def encode_json(data: Any) -> bytes:
    """A response body. Everything accepted since the nesting bound
    (:mod:`federation.events.json_bounds`) encodes with orjson; data stored before it
    existed may nest deeper than orjson allows (254 levels) or hold integers
    beyond 64 bits, and the standard library encodes those instead of failing
    every read that includes them. Parts encoded already (`EncodedJSON`) are
    embedded as they are."""
    return encoded_json.dumps(data)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=encode_json(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(err: MatrixError) -> web.Response:
    return json_response(err.to_json(), status=err.status, headers=err.headers or None)


def serve_matrix(app: web.Application) -> None:
    """Make `app` answer every request through `handle`: the spec's JSON error shape
    for anything raised (MatrixError, aiohttp's 404/405/413, and a 500 M_UNKNOWN that
    never leaks the exception), CORS headers, 204 for preflights, and the request
    metrics. Call it once the routes are registered.

    This wraps the application's own request entry point rather than being an aiohttp
    middleware: aiohttp runs any middleware through a chain of its own (a cached
    partial and a wrapper that tracks the current sub-application) on every request,
    which cost more than the work done here. Wrapping the entry point also covers the
    router's own errors, so tests (aiohttp's test server) and listeners answer alike.
    """
    inner = app._handle
    hs = app[HS_KEY]

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if request.method == "OPTIONS":
            resp: web.StreamResponse = web.Response(status=204)
        else:
            try:
                resp = await inner(request)
            except MatrixError as e:
                resp = error_response(e)
            except web.HTTPNotFound:
                resp = error_response(MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request"))
            except web.HTTPMethodNotAllowed:
                resp = error_response(MatrixError(405, "M_UNRECOGNIZED", "Method not allowed"))
            except web.HTTPRequestEntityTooLarge:
                resp = error_response(too_large())
            except web.HTTPException as e:
                resp = error_response(MatrixError(e.status, "M_UNKNOWN", e.reason))
            except Exception:
                logger.exception("unhandled error in %s %s", request.method, request.path)
                resp = error_response(MatrixError(500, "M_UNKNOWN", "Internal server error"))
        if not resp.prepared:
            resp.headers.update(CORS_HEADERS)
        # A preflight is answered before routing: no route to name (nor is there one
        # if routing itself failed).
        match_info: web.UrlMappingMatchInfo | None = request._match_info
        resource = match_info.route.resource if match_info is not None else None
        template = resource.canonical if resource is not None else "unmatched"
        hs.metrics.observe_request(request.method, template, resp.status, time.perf_counter() - started)
        hs.heap_trimmer.after_response(resp.content_length)
        return resp

    app._handle = handle  # type: ignore[method-assign]


def too_large() -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", "Request body too large")


async def read_body(request: web.Request, cap: int) -> bytes:
    """The raw body, refused (413 M_TOO_LARGE) from its declared length or as soon as
    more than ``cap`` bytes arrive, so an oversized body is never held whole."""
    length = request.content_length
    if length is not None and length > cap:
        raise too_large()
    if length is not None and hdrs.CONTENT_ENCODING not in request.headers:
        # The declared length is the body's (no compression aiohttp would undo into
        # more bytes) and within the cap: one read, which returns at once when the body
        # came in with its headers, as almost every API request's does.
        if length == 0:
            return b""
        try:
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError as e:
            return e.partial  # the client stopped short: what came, as the loop below
    body = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        body.extend(chunk)
        if len(body) > cap:
            raise too_large()
    return bytes(body)


async def read_json(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object, or the spec's error for anything else."""
    body = await read_body(request, get_hs(request).config.limits.max_request_body_bytes)
    if not body.strip():
        if allow_empty:
            return {}
        raise MatrixError(400, "M_NOT_JSON", "Request body is empty; expected a JSON object")
    data = parse_json(body)
    if not isinstance(data, dict):
        raise bad_json("Request body must be a JSON object")
    return data


def parse_json(raw: bytes | str) -> Any:
    """Parse a JSON body or parameter under the one nesting bound
    (:mod:`federation.events.json_bounds`): M_NOT_JSON when it is not JSON, M_BAD_JSON
    when it nests too deep."""
    try:
        return loads_bounded(raw)
    except JSONBoundsError as e:
        if e.not_json:
            raise MatrixError(400, "M_NOT_JSON", "Content not JSON") from None
        raise bad_json(str(e)) from None


_TYPE_NAMES = {str: "a string", bool: "a boolean", int: "an integer", dict: "an object", list: "an array"}


def field(body: dict[str, Any], name: str, tp: type, *, required: bool = False, default: Any = None) -> Any:
    """A typed field of a JSON body; M_MISSING_PARAM / M_BAD_JSON name the field on failure."""
    if name not in body or body[name] is None:
        if required:
            raise missing_param(f"Missing required field '{name}'")
        return default
    value = body[name]
    ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    if not ok:
        raise bad_json(f"Field '{name}' must be {_TYPE_NAMES.get(tp, tp.__name__)}")
    return value


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    v = request.query.get(name)
    if v is None:
        return default
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter '{name}' must be true or false")


def timestamp_query(request: web.Request) -> tuple[int, bool]:
    """`ts` and `dir` of the two /timestamp_to_event endpoints (client and federation):
    (timestamp, whether backwards); M_MISSING_PARAM or M_INVALID_PARAM otherwise."""
    raw_ts = request.query.get("ts")
    if raw_ts is None:
        raise missing_param("Missing query parameter 'ts'")
    ts = parse_int(raw_ts, "Query parameter 'ts'")  # compared in SQL: 64-bit at most
    direction = request.query.get("dir")
    if direction is None:
        raise missing_param("Missing query parameter 'dir'")
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'dir' must be 'f' or 'b'")
    return ts, direction == "b"


# The application's route groups (`homeserver/api/routing.py`), by router index entry.
ROUTE_GROUPS_KEY: web.AppKey[dict[str, RouteGroup]] = web.AppKey("route_groups")


class ClientRoutes:
    """Registers client-server endpoints under every supported version prefix. Paths
    with variables go to the application's `RouteGroup` for their router index entry
    (``/rooms/{room_id}/...``: found by the segment after the room, not by trying
    each room route in turn)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def add(self, method: str, path: str, handler: Handler, prefixes: tuple[str, ...] = CLIENT_PREFIXES) -> None:
        for prefix in prefixes:
            full = prefix + path
            key = group_key(full)
            if key is None:
                self.app.router.add_route(method, full, handler)
                continue
            if ROUTE_GROUPS_KEY not in self.app:
                self.app[ROUTE_GROUPS_KEY] = {}
            groups = self.app[ROUTE_GROUPS_KEY]
            group = groups.get(key)
            if group is None:
                group = groups[key] = RouteGroup(key)
                self.app.router.register_resource(group)
            group.add_route(method, full, handler)


X_FORWARDED_KEY: web.AppKey[bool] = web.AppKey("x_forwarded")


def client_ip(request: web.Request) -> str:
    """The client's address; X-Forwarded-For is trusted only on listeners configured for it."""
    if request.app.get(X_FORWARDED_KEY):
        fwd = request.headers.get("X-Forwarded-For")
        if fwd:
            return fwd.split(",")[0].strip()
    return request.remote or "unknown"


async def requester(request: web.Request, *, allow_guest: bool = False) -> Requester:
    """The authenticated user of a request (401/403 per the spec otherwise)."""
    return await get_hs(request).auth.get_requester(request, allow_guest=allow_guest, ip=client_ip(request))
