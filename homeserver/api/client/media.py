"""The content repository (spec: "Content repository"): upload, async upload,
authenticated download and thumbnails, the config, and the deprecated
unauthenticated ``/_matrix/media/v3`` download and thumbnail endpoints (frozen by
default: config ``media.legacy_unauthenticated``).

Request bodies are streamed to disk (`MediaRepository`); the declared length is
checked against the limit and the user's quota before any of the body is read.
Files are served from disk (sendfile) with `homeserver.media.headers`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, query_bool, requester
from homeserver.errors import MatrixError, missing_param, not_found
from homeserver.media.headers import media_headers, valid_content_type, valid_filename
from homeserver.media.ids import valid_media_id, valid_server_name
from homeserver.media.thumbnails import METHODS, ThumbnailParams
from homeserver.params import query_int
from homeserver.records.media import MediaInfo

CLIENT_V1 = ("/_matrix/client/v1",)
MEDIA_V3 = ("/_matrix/media/v3", "/_matrix/media/r0")
MEDIA_V1 = ("/_matrix/media/v1",)
MEDIA_REGISTERED: web.AppKey[bool] = web.AppKey("media_routes")
READ_CHUNK = 256 * 1024
MAX_THUMBNAIL_SIDE = 65535


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives. The request has passed its checks by the time
    this is read, so the connection may read more than the server's default 16 KiB
    per socket read (`homeserver.api.read_buffers`) for the rest of this body: a large
    upload then costs far fewer event loop turns."""
    transport = request.transport
    widen = transport is not None and isinstance(getattr(type(transport), "max_size", None), int)
    if widen:
        transport.max_size = READ_CHUNK  # type: ignore[union-attr]
    try:
        async for chunk in request.content.iter_chunked(READ_CHUNK):
            yield chunk
    finally:
        if widen and "max_size" in vars(transport):
            del transport.max_size  # type: ignore[union-attr]


def _upload_meta(request: web.Request) -> tuple[str | None, str | None]:
    content_type = request.headers.get("Content-Type")
    if content_type is not None and not valid_content_type(content_type.strip()):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid Content-Type")
    filename = request.query.get("filename")
    if filename is not None and not valid_filename(filename):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid filename")
    return (content_type.strip() if content_type else None), filename or None


async def upload(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    hs.ratelimiter.check_user("media_upload", req.user_id)
    content_type, filename = _upload_meta(request)
    info = await hs.media.upload(
        req.user_id, content_type, filename, _body(request), request.content_length
    )
    return json_response({"content_uri": info.mxc})


async def create(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    hs.ratelimiter.check_user("media_upload", req.user_id)
    info = await hs.media.create_pending(req.user_id)
    return json_response({"content_uri": info.mxc, "unused_expires_at": info.unused_expires_at})


async def upload_to(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    hs.ratelimiter.check_user("media_upload", req.user_id)
    server_name, media_id = request.match_info["server_name"], request.match_info["media_id"]
    if server_name != hs.config.server_name or not valid_media_id(media_id):
        raise not_found("Media not found")
    content_type, filename = _upload_meta(request)
    await hs.media.upload_pending(
        req.user_id, media_id, content_type, filename, _body(request), request.content_length
    )
    return json_response({})


async def media_config(request: web.Request) -> web.Response:
    hs = get_hs(request)
    await requester(request)
    return json_response({"m.upload.size": hs.config.media.max_upload_size})


def _ids(request: web.Request) -> tuple[str, str]:
    """The path's server name and media ID, checked against the spec's grammar
    (nothing else ever reaches a path on disk); 404 otherwise."""
    server_name, media_id = request.match_info["server_name"], request.match_info["media_id"]
    if not valid_server_name(server_name) or not valid_media_id(media_id):
        raise not_found("Media not found")
    return server_name, media_id


def _check_legacy(request: web.Request, info: MediaInfo) -> None:
    """The unauthenticated endpoints are frozen: 404 unless enabled, and then for
    media uploaded (or cached) after the freeze."""
    cfg = get_hs(request).config.media
    if not cfg.legacy_unauthenticated or (
        cfg.legacy_freeze_ts is not None and info.created_ts > cfg.legacy_freeze_ts
    ):
        raise not_found("Media not found")


def _timeout_ms(request: web.Request) -> int:
    value = query_int(request.query, "timeout_ms", 20000, minimum=0)
    assert value is not None
    return value


async def _serve(path: str, content_type: str | None, filename: str | None) -> web.FileResponse:
    return web.FileResponse(path, headers=media_headers(content_type, filename))


async def _find(
    request: web.Request, *, legacy: bool, thumbnail: bool,
) -> tuple[MediaInfo, str, str | None, ThumbnailParams | None, bool]:
    """The file a download or thumbnail request names, after its checks (token or
    the legacy freeze, IDs, parameters): (info, path, content type, thumbnail
    parameters, fetched), where ``fetched`` means another server's answer was just
    cached and ``path`` is already what was asked for (the thumbnail when one was)."""
    hs = get_hs(request)
    if not legacy:
        await requester(request, allow_guest=True)  # guests may read media since v1.12
    elif not hs.config.media.legacy_unauthenticated:
        raise not_found("Media not found")
    server_name, media_id = _ids(request)
    if not valid_filename(request.match_info.get("file_name", "x")):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid file name")
    params = _thumbnail_params(request) if thumbnail else None
    timeout_ms = _timeout_ms(request)
    fetched = False
    if server_name == hs.config.server_name:
        info, path = await hs.media.await_local(media_id, timeout_ms)
        content_type = info.content_type
    elif (cached := await hs.media.get_cached_remote(server_name, media_id)) is not None:
        info, path = cached
        content_type = info.content_type
    else:
        if hs.media.remote is None or (legacy and hs.config.media.legacy_freeze_ts is not None):
            raise not_found("Media not found")
        remote = await hs.media.remote.fetch(
            server_name, media_id, thumbnail=params,
            max_bytes=hs.config.media.max_upload_size, timeout_ms=timeout_ms,
        )
        info, path, content_type, fetched = remote.info, remote.path, remote.content_type, True
    if legacy:
        _check_legacy(request, info)
    hs.media.record_access(info)
    return info, path, content_type, params, fetched


async def _download(request: web.Request, *, legacy: bool) -> web.StreamResponse:
    info, path, content_type, _, _ = await _find(request, legacy=legacy, thumbnail=False)
    return await _serve(path, content_type, request.match_info.get("file_name") or info.filename)


async def download(request: web.Request) -> web.StreamResponse:
    return await _download(request, legacy=False)


async def legacy_download(request: web.Request) -> web.StreamResponse:
    return await _download(request, legacy=True)


def _thumbnail_params(request: web.Request) -> ThumbnailParams:
    q = request.query
    if "width" not in q or "height" not in q:
        raise missing_param("width and height are required")
    width = query_int(q, "width", minimum=1, maximum=MAX_THUMBNAIL_SIDE)
    height = query_int(q, "height", minimum=1, maximum=MAX_THUMBNAIL_SIDE)
    assert width is not None and height is not None
    method = q.get("method", "scale")
    if method not in METHODS:
        raise MatrixError(400, "M_INVALID_PARAM", "method must be crop or scale")
    return ThumbnailParams(width, height, method, query_bool(request, "animated", False))


async def _thumbnail(request: web.Request, *, legacy: bool) -> web.StreamResponse:
    info, path, content_type, params, fetched = await _find(request, legacy=legacy, thumbnail=True)
    if params is not None and not fetched:
        path, content_type = await get_hs(request).media.thumbnail(
            info, params.width, params.height, params.method, params.animated
        )
    return await _serve(path, content_type, None)


async def thumbnail(request: web.Request) -> web.StreamResponse:
    return await _thumbnail(request, legacy=False)


async def legacy_thumbnail(request: web.Request) -> web.StreamResponse:
    return await _thumbnail(request, legacy=True)


def register(routes: ClientRoutes) -> None:
    """The media endpoints, once per application (both the ``client`` and the ``media``
    listener resources serve them)."""
    if routes.app.get(MEDIA_REGISTERED):
        return
    routes.app[MEDIA_REGISTERED] = True
    download_path = "/media/download/{server_name}/{media_id}"
    thumbnail_path = "/media/thumbnail/{server_name}/{media_id}"
    routes.add("GET", "/media/config", media_config, prefixes=CLIENT_V1)
    routes.add("GET", download_path, download, prefixes=CLIENT_V1)
    routes.add("GET", download_path + "/{file_name}", download, prefixes=CLIENT_V1)
    routes.add("GET", thumbnail_path, thumbnail, prefixes=CLIENT_V1)
    routes.add("POST", "/upload", upload, prefixes=MEDIA_V3)
    routes.add("PUT", "/upload/{server_name}/{media_id}", upload_to, prefixes=MEDIA_V3)
    routes.add("POST", "/create", create, prefixes=MEDIA_V1)
    routes.add("GET", "/config", media_config, prefixes=MEDIA_V3)
    routes.add("GET", download_path.removeprefix("/media"), legacy_download, prefixes=MEDIA_V3)
    routes.add("GET", download_path.removeprefix("/media") + "/{file_name}", legacy_download, prefixes=MEDIA_V3)
    routes.add("GET", thumbnail_path.removeprefix("/media"), legacy_thumbnail, prefixes=MEDIA_V3)


def register_routes(app: web.Application) -> None:
    """For a listener serving ``media`` without ``client``."""
    register(ClientRoutes(app))
    from homeserver.api.client import media_preview

    media_preview.register(ClientRoutes(app))
