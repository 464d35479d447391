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

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from federation.events.builder import MAX_PDU_SIZE
from federation.request_auth import (
    RequestAuthError,
    XMatrixAuth,
    parse_authorization_header,
    verify_request,
)
from homeserver.api.http import Handler, client_ip, get_hs, parse_json, read_body, too_large
from homeserver.errors import MatrixError
from homeserver.partners.directory_profile import MAX_BODY_BYTES as DIRECTORY_MAX_BODY_BYTES
from homeserver.partners.directory_publisher import DIRECTORY_PREFIX

FEDERATION_PREFIX = "/_matrix/federation/"
# Served without a signature: who we are, and OpenID userinfo (asked by third parties
# holding no server key; the token it checks is the proof).
PUBLIC_PATHS = frozenset({"/_matrix/federation/v1/version", "/_matrix/federation/v1/openid/userinfo"})

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


# How many X-Matrix headers of one request are looked at: a sender signing with
# several keys sends one per key, and each may cost a key fetch.
MAX_AUTH_HEADERS = 4
# A /send transaction holds at most 50 PDUs and 100 EDUs (the spec's limits); a
# PDU is at most 64 KiB and we allow an EDU as much, plus room for the envelope.
SEND_BODY_CAP = (50 + 100) * MAX_PDU_SIZE + 64 * 1024
# Bodies of other endpoints: one event with its stripped state, a query, a
# partnership request. Directory entries have their own, smaller, cap.
_BODY_CAPS: tuple[tuple[str, int], ...] = (
    ("/_matrix/federation/v1/send/", SEND_BODY_CAP),
    (DIRECTORY_PREFIX, DIRECTORY_MAX_BODY_BYTES),
)
# Requests of one origin whose bodies are read and verified at once. A forged
# signature is only found out after its whole body is read, so this bounds the
# memory any one claimed origin can make us hold (a real peer sends one
# transaction at a time).
MAX_BODY_READS_PER_ORIGIN = 4


def body_cap(path: str, default: int) -> int:
    """The largest body a federation endpoint takes."""
    for prefix, cap in _BODY_CAPS:
        if path.startswith(prefix):
            return cap
    return default


class _BodyReads:
    """One semaphore per origin with requests being read, dropped when idle."""

    def __init__(self) -> None:
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, origin: str) -> AsyncIterator[None]:
        sem, users = self._slots.get(origin, (None, 0))
        if sem is None:
            sem = asyncio.Semaphore(MAX_BODY_READS_PER_ORIGIN)
        self._slots[origin] = (sem, users + 1)
        try:
            async with sem:
                yield
        finally:
            sem, users = self._slots[origin]
            if users <= 1:
                del self._slots[origin]
            else:
                self._slots[origin] = (sem, users - 1)


BODY_READS_KEY: web.AppKey[_BodyReads] = web.AppKey("federation_body_reads", _BodyReads)


async def _read_body(request: web.Request, cap: int) -> Any:
    """The parsed JSON body (None when empty), read no further than ``cap`` bytes."""
    raw = await read_body(request, cap)
    return parse_json(raw) if raw.strip() else None


async def authenticate(request: web.Request) -> str | None:
    """Check the request's X-Matrix signature; returns the origin, None if unsigned.

    The work is ordered so that nothing costly happens for a request that will
    be refused anyway: the headers are parsed and the destination checked, the
    federation policy is applied to the claimed origin, the body's declared
    size is checked against the endpoint's cap, the origin's keys are fetched,
    and only then is the body read (capped, a few requests per origin at a
    time) and the signature verified. An unsigned request's body is never read.

    Raises 401 M_UNAUTHORIZED for a malformed header, a destination other than
    us, a key we cannot obtain, or a signature that does not verify; 403 for an
    origin our policy refuses; 413 for a body over the endpoint's cap.
    """
    hs = get_hs(request)
    headers = _x_matrix_headers(request)
    if not headers:
        return None
    last_error = "Invalid X-Matrix signature"
    claims: list[XMatrixAuth] = []
    for header in headers[:MAX_AUTH_HEADERS]:
        try:
            auth: XMatrixAuth = parse_authorization_header(header)
        except RequestAuthError as exc:
            last_error = str(exc)
            continue
        if auth.destination is not None and auth.destination != hs.config.server_name:
            last_error = "X-Matrix destination is not this server"
            continue
        claims.append(auth)
    if not claims:
        raise unauthorized(last_error)
    origin = claims[0].origin
    if any(auth.origin != origin for auth in claims):
        raise unauthorized("X-Matrix headers name different origins")
    # The federation policy, on the origin the request claims: a server we do
    # not federate with costs no key fetch and no body read.
    await hs.federation_policy.check_inbound(origin, request.path, request.remote)
    cap = body_cap(request.path, hs.config.limits.max_request_body_bytes)
    if request.content_length is not None and request.content_length > cap:
        raise too_large()
    keys = await hs.keyring.get_verify_keys(
        origin, [auth.key_id for auth in claims], requester=client_ip(request)
    )
    usable = [(auth, keys[auth.key_id]) for auth in claims if auth.key_id in keys]
    if not usable:
        raise unauthorized(f"Cannot find key {claims[0].key_id} of {origin}")
    async with request.app[BODY_READS_KEY].slot(origin):
        content = await _read_body(request, cap)
        for auth, verify_key in usable:
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
            request[CONTENT_KEY] = content
            request[ORIGIN_KEY] = auth.origin
            if hs.federation_sender is not None:
                # A sign of life: what we queued for it goes now, not after its backoff.
                hs.federation_sender.peer_seen(auth.origin)
            return auth.origin
    raise unauthorized(last_error)


@web.middleware
async def federation_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(FEDERATION_PREFIX) and request.method != "OPTIONS":
        origin = await authenticate(request)
        if origin is None and request.path not in PUBLIC_PATHS:
            raise unauthorized("Missing X-Matrix Authorization header")
    return await handler(request)


def install(app: web.Application) -> None:
    """Add the middleware; it runs inside ``serve_matrix``'s handler, so its errors become JSON."""
    app[BODY_READS_KEY] = _BodyReads()
    app.middlewares.append(federation_auth_middleware)
