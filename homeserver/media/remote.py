"""Other servers' media: fetched over federation into the repository's remote cache.

``mxc://{server}/{id}`` is fetched from ``server`` itself (the spec: "Servers MUST
use the server described in the Matrix Content URI"), with the authenticated
federation endpoint ``GET /_matrix/federation/v1/media/download/{mediaId}``,
signed. Its answer is ``multipart/mixed``: a JSON metadata part, then either the
bytes or a ``Location`` to fetch them from. A ``Location`` is fetched through the
outbound guard (plain HTTPS, redirects followed a few hops) and never cached as a
URL: the file it leads to is. A server that does not know the endpoint (404
M_UNRECOGNIZED) is asked the deprecated ``/_matrix/media/v3/download/{server}/{id}``
with ``allow_remote=false``, as the spec says.

A thumbnail of remote media whose original is cached is made here (as for local
media). Otherwise the origin's own is asked for (``/thumbnail/{mediaId}``, with the
same fallback) and kept, under a row without content that lapses with the remote
cache's retention (so quarantine and deletion reach it); when the origin has none
to give (an error answer other than 403, 404 or 504), the original is fetched and
thumbnailed here.

Errors, as the download routes pass them on:

- 404 M_NOT_FOUND: a malformed media ID or server name, media the origin does not
  have, or federation turned off;
- 403 M_FORBIDDEN: the federation policy (``partners``) does not federate with that
  server (nothing is sent; Synapse answers a ``federation_domain_whitelist``
  refusal the same way);
- 502 M_TOO_LARGE: the file is over ``max_bytes`` (the spec's answer for remote
  media too large to proxy), found from its declared length or while streaming;
- 502 M_UNKNOWN: the origin could not be reached or answered nonsense;
- 504: the origin did not start answering within ``timeout_ms``, or (passed on)
  its own 504 M_NOT_YET_UPLOADED.

Concurrent requests for one file share one fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.message import Message
from typing import TypeVar

import aiohttp

from federation.client import (
    ConnectError,
    DestinationRefusedError,
    FederationClient,
    RemoteError,
    quote_path_segment,
)
from federation.multipart import (
    MultipartError,
    PartTooLargeError,
    boundary_of,
    read_media_multipart,
)
from federation.single_flight import SingleFlight
from homeserver.errors import MatrixError, not_found
from homeserver.media.fetch import FetchError, UrlFetcher
from homeserver.media.headers import base_type, valid_content_type, valid_filename
from homeserver.media.ids import valid_media_id, valid_server_name
from homeserver.media.repository import MediaRepository, RemoteFile
from homeserver.media.thumbnails import ThumbnailParams
from homeserver.records.media import MediaInfo

__all__ = ["FederatedRemoteMedia"]

logger = logging.getLogger(__name__)

# How long the transfer of a file may take once the origin started answering
# (timeout_ms bounds the wait for the answer to start).
TRANSFER_TIMEOUT_S = 300.0
CONNECT_S = 5.0
MAX_TIMEOUT_MS = 60_000
MAX_REDIRECTS = 5
MAX_THUMBNAIL_BYTES = 20 * 1024 * 1024
# What a thumbnail may be (the spec's list for the federation thumbnail endpoint).
THUMBNAIL_TYPES = frozenset({"image/png", "image/apng", "image/jpeg", "image/gif", "image/webp"})

T = TypeVar("T")
READ_SIZE = 64 * 1024


def filename_of(content_disposition: str | None) -> str | None:
    """The file name a Content-Disposition gives (``filename*`` preferred), if sane."""
    if not content_disposition:
        return None
    msg = Message()
    msg["Content-Disposition"] = content_disposition
    try:
        name = msg.get_filename()
    except (ValueError, LookupError):
        return None
    return name if isinstance(name, str) and valid_filename(name) else None


def _content_type(value: str | None) -> str | None:
    return value if value and valid_content_type(value) else None


async def _chunks(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    while True:
        chunk = await stream.read(READ_SIZE)
        if not chunk:
            return
        yield chunk


# Where an answer's bytes go: (content type, file name, chunks) -> what was stored.
Sink = Callable[[str | None, str | None, AsyncIterator[bytes]], Awaitable[T]]


class FederatedRemoteMedia:
    """``RemoteMedia`` over federation (see the module's docstring)."""

    def __init__(
        self, *, repository: MediaRepository, client: FederationClient | None,
        fetcher: UrlFetcher, server_allowed: Callable[[str], bool],
    ) -> None:
        self.repository = repository
        self.client = client
        self.fetcher = fetcher
        self.server_allowed = server_allowed
        self._flights: SingleFlight[tuple[str, str], MediaInfo] = SingleFlight()
        self._thumb_flights: SingleFlight[tuple[str, str, ThumbnailParams], RemoteFile | None] = SingleFlight()
        self.fetches = 0  # files and thumbnails actually requested from other servers

    async def fetch(
        self, server_name: str, media_id: str, *, thumbnail: ThumbnailParams | None,
        max_bytes: int, timeout_ms: int,
    ) -> RemoteFile:
        if (
            not valid_media_id(media_id) or not valid_server_name(server_name)
            or self.repository.is_local(server_name)  # never a fetch from ourselves
        ):
            raise not_found("Media not found")
        cached = await self.repository.get_cached_remote(server_name, media_id)
        if cached is not None:
            info, path = cached
        else:
            known = await self.repository.store.get(server_name, media_id)
            if known is not None and known.quarantined:
                # Quarantine outlives the cached bytes: never fetched (and un-quarantined) again.
                raise not_found("Media not found")
            if self.client is None:
                raise not_found("Media not found (federation is off)")
            if not self.server_allowed(server_name):
                raise MatrixError(403, "M_FORBIDDEN", f"This server does not federate with {server_name}")
            if thumbnail is not None:
                thumb = await self._thumb_flights.run(
                    (server_name, media_id, thumbnail),
                    lambda: self._origin_thumbnail(server_name, media_id, thumbnail, max_bytes, timeout_ms),
                )
                if thumb is not None:
                    self.repository.record_access(thumb.info)
                    return thumb
            info = await self._flights.run(
                (server_name, media_id),
                lambda: self._download(server_name, media_id, max_bytes, timeout_ms),
            )
            got = await self.repository.get_cached_remote(server_name, media_id)
            if got is None:
                raise not_found("Media not found")
            info, path = got
        self.repository.record_access(info)
        if thumbnail is None:
            return RemoteFile(info, path, info.content_type)
        thumb_path, thumb_type = await self.repository.thumbnail(
            info, thumbnail.width, thumbnail.height, thumbnail.method, thumbnail.animated
        )
        return RemoteFile(info, thumb_path, thumb_type)

    async def _download(self, server_name: str, media_id: str, max_bytes: int, timeout_ms: int) -> MediaInfo:
        """The original, fetched into the remote cache."""

        async def sink(content_type: str | None, filename: str | None, chunks: AsyncIterator[bytes]) -> MediaInfo:
            return await self.repository.store_remote(
                server_name, media_id, content_type, filename, chunks, max_bytes
            )

        ids = f"{quote_path_segment(server_name)}/{quote_path_segment(media_id)}"
        with _mapped_errors(server_name, media_id):
            return await self._fetch_with(
                server_name, f"/_matrix/federation/v1/media/download/{quote_path_segment(media_id)}",
                f"/_matrix/media/v3/download/{ids}", {}, max_bytes, timeout_ms, sink,
            )

    async def _origin_thumbnail(
        self, server_name: str, media_id: str, params: ThumbnailParams, max_bytes: int, timeout_ms: int,
    ) -> RemoteFile | None:
        """The origin's own thumbnail, kept for next time (``None``: the origin made
        none, and the original is fetched and thumbnailed here instead)."""
        kept = await self.repository.cached_remote_thumbnail(server_name, media_id, params)
        if kept is not None:
            return RemoteFile(*kept)

        async def sink(
            content_type: str | None, filename: str | None, chunks: AsyncIterator[bytes],
        ) -> tuple[MediaInfo, str, str]:
            if content_type is None or base_type(content_type) not in THUMBNAIL_TYPES:
                raise MultipartError(f"a thumbnail of type {content_type}")
            return await self.repository.store_remote_thumbnail(
                server_name, media_id, params, content_type, chunks, min(max_bytes, MAX_THUMBNAIL_BYTES)
            )

        query = {
            "width": str(params.width), "height": str(params.height), "method": params.method,
            "animated": "true" if params.animated else "false",
        }
        ids = f"{quote_path_segment(server_name)}/{quote_path_segment(media_id)}"
        try:
            with _mapped_errors(server_name, media_id):
                kept = await self._fetch_with(
                    server_name, f"/_matrix/federation/v1/media/thumbnail/{quote_path_segment(media_id)}",
                    f"/_matrix/media/v3/thumbnail/{ids}", query, max_bytes, timeout_ms, sink,
                )
        except MatrixError as e:
            if e.status in (403, 404, 504):
                raise  # refused, unknown, or not uploaded yet: the original would be too
            logger.info("remote thumbnail %s/%s: %s; fetching the original", server_name, media_id, e)
            return None
        return RemoteFile(*kept)

    async def _fetch_with(
        self, server_name: str, path: str, legacy_path: str, query: dict[str, str], max_bytes: int,
        timeout_ms: int, sink: Sink[T],
    ) -> T:
        """The authenticated endpoint at ``path``; on 404 M_UNRECOGNIZED the deprecated
        one at ``legacy_path`` (``allow_remote=false``); the bytes go to ``sink``."""
        assert self.client is not None
        self.fetches += 1
        wait_ms = max(0, min(timeout_ms, MAX_TIMEOUT_MS))
        query = {**query, "timeout_ms": str(wait_ms)}
        try:
            async with self._answer(server_name, path, query, wait_ms, True) as resp:
                boundary = boundary_of(resp.headers.get("Content-Type"))
                part = await read_media_multipart(resp.content, boundary, max_bytes=max_bytes)
                if part.location is not None:
                    return await self._follow(part.location, max_bytes, sink)
                assert part.chunks is not None
                return await sink(
                    _content_type(part.content_type), filename_of(part.content_disposition), part.chunks
                )
        except RemoteError as e:
            if e.status not in (400, 404, 405) or e.errcode != "M_UNRECOGNIZED":
                raise
        async with self._answer(server_name, legacy_path, {**query, "allow_remote": "false"}, wait_ms, False) as resp:
            return await self._store_plain(resp, max_bytes, sink)

    @contextlib.asynccontextmanager
    async def _answer(
        self, server_name: str, path: str, query: dict[str, str], wait_ms: int, signed: bool,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The origin's 2xx answer, which must start within ``wait_ms`` (plus
        CONNECT_S to connect, and for the origin to fetch our keys); its body may
        then take TRANSFER_TIMEOUT_S."""
        assert self.client is not None
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(wait_ms / 1000 + CONNECT_S):
                    resp = await stack.enter_async_context(self.client.stream(
                        "GET", server_name, path, query=query, signed=signed,
                        timeout_s=TRANSFER_TIMEOUT_S,
                    ))
            except TimeoutError:
                raise ConnectError(f"GET {server_name}{path} did not answer in time") from TimeoutError()
            yield resp

    async def _follow(self, location: str, max_bytes: int, sink: Sink[T]) -> T:
        """What a ``Location`` part points at (fetched now, never remembered as a URL)."""
        async with self.fetcher.get(location, timeout_s=TRANSFER_TIMEOUT_S, max_redirects=MAX_REDIRECTS) as resp:
            if not 200 <= resp.status < 300:
                raise MatrixError(502, "M_UNKNOWN", f"The media's location answered {resp.status}")
            return await self._store_plain(resp, max_bytes, sink)

    async def _store_plain(self, resp: aiohttp.ClientResponse, max_bytes: int, sink: Sink[T]) -> T:
        if resp.content_length is not None and resp.content_length > max_bytes:
            raise _too_large()
        return await sink(
            _content_type(resp.headers.get("Content-Type")),
            filename_of(resp.headers.get("Content-Disposition")), _chunks(resp.content),
        )


@contextlib.contextmanager
def _mapped_errors(server_name: str, media_id: str) -> Iterator[None]:
    """A failed fetch from another server as the MatrixError the client gets."""
    try:
        yield
    except DestinationRefusedError:
        raise MatrixError(403, "M_FORBIDDEN", f"This server does not federate with {server_name}") from None
    except RemoteError as e:
        raise _remote_error(e) from None
    except ConnectError as e:
        if isinstance(e.__cause__, TimeoutError):
            raise MatrixError(504, "M_UNKNOWN", "Timed out fetching remote media") from None
        logger.info("remote media %s/%s: %s", server_name, media_id, e)
        raise MatrixError(502, "M_UNKNOWN", "Could not fetch remote media") from None
    except PartTooLargeError:
        raise _too_large() from None
    except MultipartError as e:
        logger.info("remote media %s/%s: bad answer: %s", server_name, media_id, e)
        raise MatrixError(502, "M_UNKNOWN", "The remote server's answer was not usable") from None
    except FetchError as e:
        logger.info("remote media %s/%s: redirect: %s", server_name, media_id, e)
        if e.kind == "timeout":
            raise MatrixError(504, "M_UNKNOWN", "Timed out fetching remote media") from None
        raise MatrixError(502, "M_UNKNOWN", "Could not fetch remote media") from None


def _too_large() -> MatrixError:
    return MatrixError(502, "M_TOO_LARGE", "Remote media is too large")


def _remote_error(e: RemoteError) -> MatrixError:
    if e.status == 404:
        return not_found("Media not found")
    if e.status == 504 and e.errcode == "M_NOT_YET_UPLOADED":
        return MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
    if e.errcode == "M_TOO_LARGE":
        return _too_large()
    return MatrixError(502, "M_UNKNOWN", f"The remote server answered {e.status} {e.errcode}")
