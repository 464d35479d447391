"""X-Matrix authentication of every ``/_matrix/federation/*`` request.

Installed as a middleware so no federation route can forget it: the request is
checked before routing, so an unsigned request gets 401 M_UNAUTHORIZED whether
or not the path exists. Peers are identified by the key that signed the
request, never by their address. Routes the spec leaves unauthenticated
(``/version``) accept unsigned requests, but a signature that is present must
still verify.

Handlers read the authenticated origin with :func:`origin_of` and the parsed
body with :func:`federation_content` (the middleware has consumed the body).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from federation.request_auth import (
    RequestAuthError,
    XMatrixAuth,
    parse_authorization_header,
    verify_request,
)
from homeserver.api.http import Handler, get_hs
from homeserver.errors import MatrixError

FEDERATION_PREFIX = "/_matrix/federation/"
PUBLIC_PATHS = frozenset({"/_matrix/federation/v1/version"})

ORIGIN_KEY: web.RequestKey[str] = web.RequestKey("federation_origin", str)
CONTENT_KEY: web.RequestKey[Any] = web.RequestKey("federation_content", object)


def unauthorized(message: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", message)


def origin_of(request: web.Request) -> str:
    """The server that signed this request (only on authenticated routes)."""
    origin = request.get(ORIGIN_KEY)
    if not isinstance(origin, str):
        raise unauthorized("Request is not signed")
    return origin


def federation_content(request: web.Request) -> Any:
    """The request's parsed JSON body, None when it had none."""
    return request.get(CONTENT_KEY)


def _x_matrix_headers(request: web.Request) -> list[str]:
    return [
        h for h in request.headers.getall("Authorization", [])
        if h[:9].lower() == "x-matrix "
    ]


async def authenticate(request: web.Request) -> str | None:
    """Check the request's X-Matrix signature; returns the origin, None if unsigned.

    Raises 401 M_UNAUTHORIZED for a malformed header, a destination other than
    us, a key we cannot obtain, or a signature that does not verify.
    """
    hs = get_hs(request)
    raw = await request.read()
    content: Any = None
    if raw.strip():
        try:
            content = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise MatrixError(400, "M_NOT_JSON", "Content not JSON") from None
    request[CONTENT_KEY] = content
    headers = _x_matrix_headers(request)
    if not headers:
        return None
    # A sender signing with several keys may send several headers; one valid is enough.
    last_error = "Invalid X-Matrix signature"
    for header in headers:
        try:
            auth: XMatrixAuth = parse_authorization_header(header)
        except RequestAuthError as exc:
            last_error = str(exc)
            continue
        if auth.destination is not None and auth.destination != hs.config.server_name:
            last_error = "X-Matrix destination is not this server"
            continue
        keys = await hs.keyring.get_verify_keys(auth.origin, [auth.key_id])
        verify_key = keys.get(auth.key_id)
        if verify_key is None:
            last_error = f"Cannot find key {auth.key_id} of {auth.origin}"
            continue
        try:
            verify_request(
                auth,
                method=request.method,
                uri=request.raw_path,
                our_server_name=hs.config.server_name,
                verify_key=verify_key,
                content=content,
            )
        except RequestAuthError as exc:
            last_error = str(exc)
            continue
        request[ORIGIN_KEY] = auth.origin
        return auth.origin
    raise unauthorized(last_error)


@web.middleware
async def federation_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(FEDERATION_PREFIX) and request.method != "OPTIONS":
        origin = await authenticate(request)
        if origin is None and request.path not in PUBLIC_PATHS:
            raise unauthorized("Missing X-Matrix Authorization header")
        if origin is not None:
            # The federation policy, once we know who is asking: 403 for a server
            # we do not federate with (only partnership endpoints stay open to it).
            await get_hs(request).federation_policy.check_inbound(origin, request.path, request.remote)
    return await handler(request)


def install(app: web.Application) -> None:
    """Add the middleware inside ``matrix_middleware`` so its errors become JSON."""
    app.middlewares.append(federation_auth_middleware)
