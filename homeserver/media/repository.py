"""The media repository: local uploads, the cache of remote media, thumbnails.

Bytes are streamed to storage (never held whole in memory), hashed (sha256) as they
pass, and made visible atomically (`StorageProvider`); metadata lives in the
`media` table (`MediaStore`). Files are keyed by paths derived from the media ID
only: local IDs are generated here (24 URL-safe characters) and every ID that comes
from a request is checked against the spec's grammar (`A-Za-z0-9_-`) first.

Fetching other servers' media is not done here: a `RemoteMedia` (the federation side)
fetches and stores through `store_remote`, and the download routes ask it for any
server name that is not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from homeserver.clock import Clock
from homeserver.config import MediaConfig
from homeserver.errors import MatrixError, not_found
from homeserver.media.ids import parse_mxc, valid_media_id, valid_server_name
from homeserver.media.storage_provider import StorageProvider
from homeserver.media.thumbnails import (
    METHODS,
    ThumbnailError,
    ThumbnailParams,
    ThumbnailSize,
    can_thumbnail,
    choose_size,
    make_thumbnail,
)
from homeserver.records.media import MediaInfo, ThumbnailInfo
from homeserver.storage.media import MediaStore

logger = logging.getLogger(__name__)

MAX_TIMEOUT_MS_DEFAULT = 20000
# Thumbnails kept per file: sizes requested beyond the configured ones are made on demand
# until a file has this many; then requests get the nearest larger one (disk stays bounded).
MAX_THUMBNAILS_PER_FILE = 24
WRITE_BATCH = 1 << 20  # bytes of an upload held before they are written


@dataclass(frozen=True)
class RemoteFile:
    """What `RemoteMedia.fetch` returns: the cached file's metadata, the local path to
    serve (the file itself, or the thumbnail when one was asked for) and its type."""

    info: MediaInfo
    path: str
    content_type: str | None


class RemoteMedia(Protocol):
    """Other servers' media (implemented by the federation side, homeserver/media/remote.py).

    ``fetch`` returns a file already stored in the repository's remote cache (through
    `MediaRepository.store_remote`; for a thumbnail, `MediaRepository.thumbnail` of it
    or the remote server's thumbnail) or raises MatrixError: 404 M_NOT_FOUND,
    502 M_TOO_LARGE (over ``max_bytes``), 504 M_NOT_YET_UPLOADED / timeout."""

    async def fetch(
        self, server_name: str, media_id: str, *, thumbnail: ThumbnailParams | None,
        max_bytes: int, timeout_ms: int,
    ) -> RemoteFile: ...


class MediaRepository:
    def __init__(
        self, *, server_name: str, store: MediaStore, storage: StorageProvider,
        config: MediaConfig, clock: Clock, remote: RemoteMedia | None = None,
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.storage = storage
        self.config = config
        self.clock = clock
        self.remote = remote
        self.thumbnail_sizes = [ThumbnailSize(s.width, s.height, s.method) for s in config.thumbnail_sizes]
        self._waiters: dict[str, asyncio.Event] = {}  # pending async uploads, by media ID
        self._uploading: set[str] = set()  # async uploads whose PUT is in progress
        self._remote_inflight: dict[tuple[str, str], asyncio.Future[MediaInfo]] = {}
        self._thumb_inflight: dict[str, asyncio.Future[tuple[str, str]]] = {}
        self._thumb_slots = asyncio.Semaphore(2)  # Pillow work at once (threads)
        self._accesses: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------------

    def set_remote(self, remote: RemoteMedia) -> None:
        self.remote = remote

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.flush_accesses()

    # --- keys: paths derived from IDs only ------------------------------------------

    def is_local(self, origin: str) -> bool:
        return origin == self.server_name

    def _shard(self, origin: str, media_id: str) -> str:
        if not valid_media_id(media_id):
            raise not_found("Media not found")
        if self.is_local(origin) and len(media_id) >= 5:
            return f"{media_id[0:2]}/{media_id[2:4]}/{media_id[4:]}"
        digest = hashlib.sha256(f"{origin}/{media_id}".encode()).hexdigest()
        return f"{digest[0:2]}/{digest[2:4]}/{digest[4:]}"

    def _content_key(self, origin: str, media_id: str) -> str:
        top = "local_content" if self.is_local(origin) else "remote_content"
        return f"{top}/{self._shard(origin, media_id)}"

    def _thumb_dir(self, origin: str, media_id: str) -> str:
        top = "local_thumbnails" if self.is_local(origin) else "remote_thumbnails"
        return f"{top}/{self._shard(origin, media_id)}"

    def _thumb_key(self, origin: str, media_id: str, size: ThumbnailSize, animated: bool) -> str:
        suffix = "-animated" if animated else ""
        return f"{self._thumb_dir(origin, media_id)}/{size.width}x{size.height}-{size.method}{suffix}"

    # --- streaming into storage -----------------------------------------------------

    async def _stream_to(
        self, key: str, chunks: AsyncIterator[bytes], max_bytes: int, too_large: Callable[[], MatrixError],
    ) -> tuple[int, str]:
        """Write ``chunks`` to ``key`` atomically, counting and hashing as they pass;
        ``too_large()`` is raised (and nothing kept) once more than ``max_bytes`` came.
        Bytes are written in a worker thread, up to `WRITE_BATCH` at a time, so a disk
        that is slow to take them (writeback throttling) never stalls the event loop."""
        pending = await asyncio.to_thread(self.storage.begin, key)
        digest = hashlib.sha256()
        size = 0
        batch = bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise too_large()
                digest.update(chunk)
                batch += chunk
                if len(batch) >= WRITE_BATCH:
                    await asyncio.to_thread(pending.write, batch)
                    batch = bytearray()
            if batch:
                await asyncio.to_thread(pending.write, batch)
            await asyncio.to_thread(pending.commit)
        except BaseException:
            await asyncio.to_thread(pending.abort)
            raise
        return size, digest.hexdigest()

    # --- local uploads --------------------------------------------------------------

    def new_media_id(self) -> str:
        return secrets.token_urlsafe(18)  # 24 characters of A-Za-z0-9_-

    async def check_quota(self, uploader: str, declared_length: int | None) -> int:
        """The bytes ``uploader`` may still upload (max upload size or what the quota
        leaves); 413 M_TOO_LARGE / 403 M_FORBIDDEN when ``declared_length`` is over."""
        limit = self.config.max_upload_size
        if declared_length is not None and declared_length > limit:
            raise MatrixError(413, "M_TOO_LARGE", f"Upload is larger than the limit of {limit} bytes")
        quota = self.config.user_quota_bytes
        if quota is not None:
            left = quota - await self.store.used_bytes(uploader)
            if (declared_length or 0) > left or left <= 0:
                raise MatrixError(403, "M_FORBIDDEN", "Media quota exceeded")
            limit = min(limit, left)
        return limit

    def _over_limit(self, uploader_limit: int) -> Callable[[], MatrixError]:
        def err() -> MatrixError:
            if uploader_limit < self.config.max_upload_size:
                return MatrixError(403, "M_FORBIDDEN", "Media quota exceeded")
            return MatrixError(413, "M_TOO_LARGE", f"Upload is larger than the limit of {uploader_limit} bytes")

        return err

    async def upload(
        self, uploader: str, content_type: str | None, filename: str | None,
        chunks: AsyncIterator[bytes], declared_length: int | None,
    ) -> MediaInfo:
        """Store a new local file from ``chunks`` (the request body) and return it.
        Checks the max upload size and the uploader's quota against
        ``declared_length`` before reading anything, and the running count after."""
        limit = await self.check_quota(uploader, declared_length)
        media_id = self.new_media_id()
        size, sha = await self._stream_to(
            self._content_key(self.server_name, media_id), chunks, limit, self._over_limit(limit)
        )
        info = MediaInfo(
            origin=self.server_name, media_id=media_id, is_local=True, content_type=content_type,
            filename=filename, size=size, sha256=sha, uploader=uploader, created_ts=self.clock.time_ms(),
        )
        await self.store.insert(info)
        self._after_store(info)
        return info

    async def create_pending(self, uploader: str) -> MediaInfo:
        """An mxc:// URI whose content comes later (POST /_matrix/media/v1/create);
        429 M_LIMIT_EXCEEDED when the user has too many waiting."""
        now = self.clock.time_ms()
        if await self.store.count_pending(uploader, now) >= self.config.max_pending_uploads:
            raise MatrixError(429, "M_LIMIT_EXCEEDED", "Too many pending uploads", retry_after_ms=60000)
        info = MediaInfo(
            origin=self.server_name, media_id=self.new_media_id(), is_local=True, content_type=None,
            filename=None, size=None, sha256=None, uploader=uploader, created_ts=now,
            unused_expires_at=now + self.config.unused_id_lifetime_ms,
        )
        await self.store.insert(info)
        return info

    async def upload_pending(
        self, uploader: str, media_id: str, content_type: str | None, filename: str | None,
        chunks: AsyncIterator[bytes], declared_length: int | None,
    ) -> MediaInfo:
        """Give an ID from `create_pending` its content (PUT upload/{server}/{id}):
        404 for an unknown or lapsed ID, 403 for another user's, 409
        M_CANNOT_OVERWRITE_MEDIA when it has content (or is being uploaded)."""
        if not valid_media_id(media_id):
            raise not_found("Media not found")
        info = await self.store.get(self.server_name, media_id)
        now = self.clock.time_ms()
        if info is None or (info.pending and (info.unused_expires_at or 0) <= now):
            raise not_found("Media not found")
        if info.uploader != uploader:
            raise MatrixError(403, "M_FORBIDDEN", "This media ID was created by another user")
        if not info.pending or media_id in self._uploading:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already has content")
        self._uploading.add(media_id)
        try:
            limit = await self.check_quota(uploader, declared_length)
            size, sha = await self._stream_to(
                self._content_key(self.server_name, media_id), chunks, limit, self._over_limit(limit)
            )
            if not await self.store.fill_pending(
                self.server_name, media_id, content_type, filename, size, sha, self.clock.time_ms()
            ):
                raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already has content")
        finally:
            self._uploading.discard(media_id)
        done = replace(info, content_type=content_type, filename=filename, size=size, sha256=sha,
                       unused_expires_at=None, created_ts=self.clock.time_ms())
        waiter = self._waiters.pop(media_id, None)
        if waiter is not None:
            waiter.set()
        self._after_store(done)
        return done

    def _after_store(self, info: MediaInfo) -> None:
        """Pre-generate the configured thumbnails of an image, in the background."""
        if can_thumbnail(info.content_type) and self.thumbnail_sizes:
            task = asyncio.create_task(self._pregenerate(info))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pregenerate(self, info: MediaInfo) -> None:
        for size in self.thumbnail_sizes:
            try:
                await self._thumbnail_at(info, size, animated=False)
            except MatrixError:
                return  # not decodable or too large: nothing to pre-generate
            except Exception:
                logger.exception("thumbnailing %s failed", info.mxc)
                return

    # --- reading --------------------------------------------------------------------

    def _path_if_present(self, info: MediaInfo) -> str | None:
        key = self._content_key(info.origin, info.media_id)
        return self.storage.local_path(key) if self.storage.exists(key) else None

    async def get_local_file(self, media_id: str) -> tuple[MediaInfo, str] | None:
        """A local file's metadata and path, or None when the ID is malformed or
        unknown, the file is quarantined, or it has no content yet (async upload)."""
        if not valid_media_id(media_id):
            return None
        info = await self.store.get(self.server_name, media_id)
        if info is None or info.quarantined or info.pending:
            return None
        path = self._path_if_present(info)
        return (info, path) if path else None

    async def get_cached_remote(self, origin: str, media_id: str) -> tuple[MediaInfo, str] | None:
        """A cached remote file's metadata and path, or None when not cached (or quarantined)."""
        if not valid_media_id(media_id) or self.is_local(origin):
            return None
        info = await self.store.get(origin, media_id)
        if info is None or info.quarantined or info.pending:
            return None
        path = self._path_if_present(info)
        return (info, path) if path else None

    async def await_local(self, media_id: str, timeout_ms: int) -> tuple[MediaInfo, str]:
        """A local file for download: waits up to ``timeout_ms`` (capped by config) for a
        pending async upload, then 504 M_NOT_YET_UPLOADED; 404 M_NOT_FOUND otherwise."""
        if not valid_media_id(media_id):
            raise not_found("Media not found")
        info = await self.store.get(self.server_name, media_id)
        if info is not None and info.pending and not info.quarantined:
            if (info.unused_expires_at or 0) <= self.clock.time_ms():
                raise not_found("Media not found")
            wait_ms = max(0, min(timeout_ms, self.config.max_download_wait_ms))
            waiter = self._waiters.setdefault(media_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), wait_ms / 1000)
            info = await self.store.get(self.server_name, media_id)
            if info is not None and info.pending:
                raise MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
        if info is None or info.quarantined:
            raise not_found("Media not found")
        path = self._path_if_present(info)
        if path is None:
            raise not_found("Media not found")
        return info, path

    async def store_remote(
        self, origin: str, media_id: str, content_type: str | None, filename: str | None,
        chunks: AsyncIterator[bytes], max_bytes: int,
    ) -> MediaInfo:
        """Stream another server's file into the remote cache and record it.

        The file becomes visible atomically (never partly written); more than
        ``max_bytes`` raises 502 M_TOO_LARGE and keeps nothing. When a store of the same
        (origin, media_id) is already in progress, this waits for it and returns its
        result without consuming ``chunks`` (the caller closes its source); when the
        file is already cached, returns the cached metadata likewise. 404 for a
        malformed media ID or a local origin."""
        if not valid_media_id(media_id) or self.is_local(origin) or not valid_server_name(origin):
            raise not_found("Media not found")
        key = (origin, media_id)
        inflight = self._remote_inflight.get(key)
        if inflight is not None:
            return await asyncio.shield(inflight)
        cached = await self.get_cached_remote(origin, media_id)
        if cached is not None:
            return cached[0]
        future: asyncio.Future[MediaInfo] = asyncio.get_running_loop().create_future()
        self._remote_inflight[key] = future
        try:
            size, sha = await self._stream_to(
                self._content_key(origin, media_id), chunks, max_bytes,
                lambda: MatrixError(502, "M_TOO_LARGE", "Remote media is too large"),
            )
            info = MediaInfo(
                origin=origin, media_id=media_id, is_local=False, content_type=content_type,
                filename=filename, size=size, sha256=sha, uploader=None, created_ts=self.clock.time_ms(),
            )
            await self.store.delete(origin, media_id)  # a stale row of a file that was lost
            await self.store.insert(info)
            future.set_result(info)
            return info
        except BaseException as e:
            future.set_exception(e if isinstance(e, Exception) else MatrixError(502, "M_UNKNOWN", "cancelled"))
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._remote_inflight.pop(key, None)

    def record_access(self, info: MediaInfo) -> None:
        self._accesses[(info.origin, info.media_id)] = self.clock.time_ms()

    async def flush_accesses(self) -> None:
        if self._accesses:
            batch = [(o, m, ts) for (o, m), ts in self._accesses.items()]
            self._accesses.clear()
            await self.store.touch(batch)

    # --- thumbnails -----------------------------------------------------------------

    async def thumbnail(
        self, info: MediaInfo, width: int, height: int, method: str, animated: bool,
    ) -> tuple[str, str]:
        """(path, content type) of a thumbnail of a stored file (local or cached remote)
        for a request of at least ``width`` x ``height`` by ``method`` ("crop" or "scale"):
        the smallest pre-generated size that fits, else one made now (in a thread) and
        cached. When the original is no larger than requested, its own path and type.
        Raises 400 M_UNKNOWN for content that cannot be thumbnailed (not JPEG, PNG, GIF
        or WebP, or undecodable) and 413 M_TOO_LARGE for images over the pixel cap."""
        if method not in METHODS or width <= 0 or height <= 0:
            raise MatrixError(400, "M_INVALID_PARAM", "Bad thumbnail parameters")
        if not can_thumbnail(info.content_type):
            raise MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content")
        size = choose_size(ThumbnailParams(width, height, method, animated), self.thumbnail_sizes)
        if size not in self.thumbnail_sizes:
            stored = await self.store.list_thumbnails(info.origin, info.media_id)
            made = {(t.width, t.height, t.method, t.animated) for t in stored}
            if (size.width, size.height, size.method, animated) not in made and len(stored) >= MAX_THUMBNAILS_PER_FILE:
                # Enough sizes of this file on disk: the smallest made one that is large
                # enough, else the original (never a smaller one).
                fitting = [
                    ThumbnailSize(t.width, t.height, t.method) for t in stored
                    if t.method == method and t.animated == animated and t.width >= width
                    and t.height >= height and (method != "crop" or t.width * height == t.height * width)
                ]
                if not fitting:
                    src = self._path_if_present(info)
                    if src is None:
                        raise not_found("Media not found")
                    return src, info.content_type or "application/octet-stream"
                size = min(fitting, key=lambda s: (s.width * s.height, s.width))
        return await self._thumbnail_at(info, size, animated)

    async def _thumbnail_at(self, info: MediaInfo, size: ThumbnailSize, animated: bool) -> tuple[str, str]:
        key = self._thumb_key(info.origin, info.media_id, size, animated)
        known = await self.store.get_thumbnail(info.origin, info.media_id, size.width, size.height, size.method, animated)
        if known is not None and self.storage.exists(key):
            return self.storage.local_path(key), known.content_type
        inflight = self._thumb_inflight.get(key)
        if inflight is not None:
            return await asyncio.shield(inflight)
        future: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._thumb_inflight[key] = future
        try:
            result = await self._generate(info, key, size, animated)
            future.set_result(result)
            return result
        except BaseException as e:
            future.set_exception(e if isinstance(e, Exception) else MatrixError(500, "M_UNKNOWN", "cancelled"))
            future.exception()
            raise
        finally:
            self._thumb_inflight.pop(key, None)

    async def _generate(self, info: MediaInfo, key: str, size: ThumbnailSize, animated: bool) -> tuple[str, str]:
        src = self._path_if_present(info)
        if src is None:
            raise not_found("Media not found")
        pending = await asyncio.to_thread(self.storage.begin, key)
        try:
            async with self._thumb_slots:
                result = await asyncio.to_thread(
                    make_thumbnail, src, info.content_type, size, animated, pending.temp_path,
                    max_pixels=self.config.max_thumbnail_pixels,
                )
            if result.use_original:
                await asyncio.to_thread(pending.abort)
                return src, info.content_type or "application/octet-stream"
            await asyncio.to_thread(pending.commit)
        except ThumbnailError as e:
            await asyncio.to_thread(pending.abort)
            if e.too_large:
                raise MatrixError(413, "M_TOO_LARGE", "Content is too large to thumbnail") from None
            raise MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content") from None
        except BaseException:
            await asyncio.to_thread(pending.abort)
            raise
        assert result.content_type is not None
        file_size = await asyncio.to_thread(os.path.getsize, self.storage.local_path(key))
        await self.store.add_thumbnail(
            info.origin, info.media_id,
            ThumbnailInfo(size.width, size.height, size.method, animated, result.content_type, file_size),
        )
        return self.storage.local_path(key), result.content_type

    # --- other servers' own thumbnails ----------------------------------------------

    def _remote_thumb_key(self, origin: str, media_id: str, params: ThumbnailParams) -> str:
        size = ThumbnailSize(params.width, params.height, params.method)
        return self._thumb_key(origin, media_id, size, params.animated)

    async def cached_remote_thumbnail(
        self, origin: str, media_id: str, params: ThumbnailParams,
    ) -> tuple[MediaInfo, str, str] | None:
        """A thumbnail kept by `store_remote_thumbnail`: (the file's row, path, content
        type), or None (not kept, or the file is quarantined)."""
        if not valid_media_id(media_id) or self.is_local(origin):
            return None
        info = await self.store.get(origin, media_id)
        if info is None or info.quarantined:
            return None
        known = await self.store.get_thumbnail(
            origin, media_id, params.width, params.height, params.method, params.animated
        )
        key = self._remote_thumb_key(origin, media_id, params)
        if known is None or not self.storage.exists(key):
            return None
        return info, self.storage.local_path(key), known.content_type

    async def store_remote_thumbnail(
        self, origin: str, media_id: str, params: ThumbnailParams, content_type: str,
        chunks: AsyncIterator[bytes], max_bytes: int,
    ) -> tuple[MediaInfo, str, str]:
        """Keep another server's own thumbnail of a file not cached here (fetched from
        its ``/thumbnail`` endpoint): (the file's row, path, content type). The file
        gets a row without content, as an async upload has, lapsing after
        ``remote_cache_retention_ms``, so the thumbnail is quarantined, deleted and
        expired with it; caching the original later replaces that row. More than
        ``max_bytes`` is 502 M_TOO_LARGE; a malformed ID or a local origin 404."""
        if not valid_media_id(media_id) or self.is_local(origin) or not valid_server_name(origin):
            raise not_found("Media not found")
        now = self.clock.time_ms()
        retention = self.config.remote_cache_retention_ms or 30 * 24 * 3600 * 1000
        await self.store.insert(MediaInfo(
            origin=origin, media_id=media_id, is_local=False, content_type=None, filename=None,
            size=None, sha256=None, uploader=None, created_ts=now, unused_expires_at=now + retention,
        ))
        key = self._remote_thumb_key(origin, media_id, params)
        written, _ = await self._stream_to(
            key, chunks, max_bytes, lambda: MatrixError(502, "M_TOO_LARGE", "Remote thumbnail is too large"),
        )
        await self.store.add_thumbnail(origin, media_id, ThumbnailInfo(
            params.width, params.height, params.method, params.animated, content_type, written,
        ))
        info = await self.store.get(origin, media_id)
        if info is None or info.quarantined:
            raise not_found("Media not found")
        return info, self.storage.local_path(key), content_type

    # --- administration -------------------------------------------------------------

    async def info(self, origin: str, media_id: str) -> MediaInfo | None:
        """A file's metadata whatever its state (pending, quarantined): for admins."""
        return await self.store.get(origin, media_id) if valid_media_id(media_id) else None

    async def delete(self, origin: str, media_id: str) -> bool:
        """Remove a file, its thumbnails and its row; False when unknown."""
        if not valid_media_id(media_id):
            return False
        info = await self.store.get(origin, media_id)
        if info is None:
            return False
        await asyncio.to_thread(self.storage.delete, self._content_key(origin, media_id))
        await asyncio.to_thread(self.storage.delete, self._thumb_dir(origin, media_id))
        return await self.store.delete(origin, media_id)

    async def quarantine(self, origin: str, media_id: str, by: str | None) -> bool:
        """Quarantine (``by`` an admin) or release (None) a file: quarantined media is
        404 to users."""
        if not valid_media_id(media_id):
            return False
        return await self.store.set_quarantined(origin, media_id, by)

    async def quarantine_uris(self, uris: list[str], by: str) -> int:
        """Quarantine the local and cached files of these mxc:// URIs; the count done."""
        done = 0
        for uri in set(uris):
            parsed = parse_mxc(uri)
            if parsed is not None and await self.quarantine(parsed[0], parsed[1], by):
                done += 1
        return done

    async def delete_uris(self, uris: list[str], *, local_only: bool = True) -> int:
        done = 0
        for uri in set(uris):
            parsed = parse_mxc(uri)
            if parsed is None or (local_only and not self.is_local(parsed[0])):
                continue
            if await self.delete(parsed[0], parsed[1]):
                done += 1
        return done

    async def room_media(self, room_id: str) -> tuple[list[str], list[str]]:
        """(local, remote) mxc:// URIs mentioned by a room's events."""
        local: list[str] = []
        remote: list[str] = []
        for uri in await self.store.media_uris_in_room(room_id):
            parsed = parse_mxc(uri)
            if parsed is not None:
                (local if self.is_local(parsed[0]) else remote).append(uri)
        return local, remote

    async def quarantine_room_media(self, room_id: str, by: str) -> int:
        local, remote = await self.room_media(room_id)
        return await self.quarantine_uris(local + remote, by)

    async def purge_room_media(self, room_id: str) -> None:
        """Before a room is purged: delete the local media its events mention."""
        local, _ = await self.room_media(room_id)
        await self.delete_uris(local)

    async def list_user_media(
        self, user_id: str, start: int, limit: int, order_by: str, direction: str,
    ) -> tuple[list[MediaInfo], int]:
        return await self.store.list_by_uploader(user_id, start, limit, order_by, direction)

    async def delete_user_media(self, user_id: str) -> int:
        """Delete every file ``user_id`` uploaded (when the user is erased)."""
        done = 0
        for media_id in await self.store.local_ids_of_uploader(user_id):
            if await self.delete(self.server_name, media_id):
                done += 1
        return done

    async def purge_remote_cache(self, before_ts: int) -> int:
        """Drop cached remote files neither fetched nor read since ``before_ts``."""
        return await self._purge_older(False, before_ts)

    async def _purge_older(self, is_local: bool, before_ts: int) -> int:
        await self.flush_accesses()
        done = 0
        while True:
            batch = await self.store.older_than(is_local, before_ts)
            if not batch:
                return done
            for origin, media_id in batch:
                if await self.delete(origin, media_id):
                    done += 1

    async def cleanup_once(self) -> dict[str, int]:
        """One pass of the periodic job: lapsed async-upload IDs, local media past its
        retention, remote cache past its retention."""
        now = self.clock.time_ms()
        await self.flush_accesses()
        lapsed = 0
        for origin, media_id in await self.store.expired_pending(now):
            if media_id not in self._uploading and await self.delete(origin, media_id):
                lapsed += 1
                waiter = self._waiters.pop(media_id, None)
                if waiter is not None:
                    waiter.set()  # downloads still waiting find it gone: 404
        local = remote = 0
        if self.config.local_retention_ms is not None:
            local = await self._purge_older(True, now - self.config.local_retention_ms)
        if self.config.remote_cache_retention_ms is not None:
            remote = await self._purge_older(False, now - self.config.remote_cache_retention_ms)
        return {"lapsed_ids": lapsed, "local": local, "remote": remote}
