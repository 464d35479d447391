"""Authenticated federation media: our users' files for other servers.

``GET /_matrix/federation/v1/media/download/{mediaId}`` and
``/_matrix/federation/v1/media/thumbnail/{mediaId}`` answer ``multipart/mixed``
with a generated boundary: first ``{}`` as ``application/json`` (the metadata,
empty today), then the file (or thumbnail) with its ``Content-Type`` and
``Content-Disposition``, streamed from storage. The X-Matrix middleware has
authenticated the requesting server (and applied the federation policy) before
these run. Unknown, quarantined or not yet uploaded media is 404 M_NOT_FOUND (or
504 M_NOT_YET_UPLOADED once ``timeout_ms`` has passed for an async upload).
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from federation.multipart import media_head, media_tail, multipart_content_type, new_boundary
from homeserver.api.federation.auth import origin_of
from homeserver.api.http import get_hs, query_bool
from homeserver.errors import MatrixError, missing_param
from homeserver.media.headers import media_headers
from homeserver.params import query_int

PREFIX = "/_matrix/federation/v1/media"
DEFAULT_TIMEOUT_MS = 20_000
READ_SIZE = 256 * 1024


async def _serve(
    request: web.Request, path: str, content_type: str | None, filename: str | None
) -> web.StreamResponse:
    headers = media_headers(content_type, filename)
    boundary = new_boundary()
    head = media_head(
        boundary, {}, content_type=headers["Content-Type"],
        content_disposition=headers["Content-Disposition"],
    )
    tail = media_tail(boundary)
    try:
        f = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        raise MatrixError(404, "M_NOT_FOUND", "Media not found") from None
    try:
        size = await asyncio.to_thread(os.fstat, f.fileno())
        resp = web.StreamResponse(headers={
            "Content-Type": multipart_content_type(boundary),
            "Content-Length": str(len(head) + size.st_size + len(tail)),
        })
        await resp.prepare(request)
        try:
            await resp.write(head)
            left = size.st_size
            while left > 0:
                chunk = await asyncio.to_thread(f.read, min(READ_SIZE, left))
                if not chunk:
                    break  # the file shrank under us: the length sent is now wrong; stop
                left -= len(chunk)
                await resp.write(chunk)
            if left == 0:
                await resp.write(tail)
                await resp.write_eof()
        except ConnectionResetError:
            pass  # the requesting server went away: nothing more to send
        return resp
    finally:
        await asyncio.to_thread(f.close)


def _timeout_ms(request: web.Request) -> int:
    return query_int(request.query, "timeout_ms", DEFAULT_TIMEOUT_MS, minimum=0) or 0


async def download(request: web.Request) -> web.StreamResponse:
    hs = get_hs(request)
    hs.ratelimiter.check_server("federation_media", origin_of(request))
    media = hs.media
    info, path = await media.await_local(request.match_info["media_id"], _timeout_ms(request))
    media.record_access(info)
    return await _serve(request, path, info.content_type, info.filename)


async def thumbnail(request: web.Request) -> web.StreamResponse:
    hs = get_hs(request)
    hs.ratelimiter.check_server("federation_media", origin_of(request))
    media = hs.media
    q = request.query
    if "width" not in q or "height" not in q:
        raise missing_param("width and height are required")
    width = query_int(q, "width", minimum=1, maximum=10_000)
    height = query_int(q, "height", minimum=1, maximum=10_000)
    assert width is not None and height is not None
    method = q.get("method", "scale")
    if method not in ("crop", "scale"):
        raise MatrixError(400, "M_INVALID_PARAM", "method must be crop or scale")
    animated = query_bool(request, "animated", False)
    info, path = await media.await_local(request.match_info["media_id"], _timeout_ms(request))
    thumb_path, thumb_type = await media.thumbnail(info, width, height, method, animated)
    media.record_access(info)
    return await _serve(request, thumb_path, thumb_type, None)


def register(app: web.Application) -> None:
    app.router.add_get(PREFIX + "/download/{media_id}", download, allow_head=False)
    app.router.add_get(PREFIX + "/thumbnail/{media_id}", thumbnail, allow_head=False)
