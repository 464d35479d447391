"""URL previews (``GET /_matrix/client/v1/media/preview_url``).

Off unless ``media.url_preview.enabled``: a preview makes this server fetch a
URL a user chose, so it is a way into the server's network unless guarded.
Every fetch goes through the outbound guard (no private, loopback or
link-local address unless ``outbound.allowed_ranges`` allows it), redirects
are followed a few hops through it, only ``max_page_bytes`` of a page are
read, and the whole preview must finish within ``timeout_s``.

The page's OpenGraph ``og:*`` meta tags are the preview, with ``<title>`` and
the ``description`` meta tag as fallbacks (no oEmbed). ``og:image`` is fetched
the same guarded way and stored as local media, so clients get an ``mxc://``
URI. Results are cached in bounded memory by URL and time bucket (a ``ts``
asks for the bucket it falls in); concurrent previews of one URL fetch once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

from federation.single_flight import SingleFlight
from homeserver.errors import MatrixError
from homeserver.media.fetch import (
    FetchError,
    TooLargeError,
    UrlFetcher,
    check_http_url,
    read_capped,
)
from homeserver.records.media import MediaInfo

__all__ = ["OpenGraphParser", "PreviewSettings", "UrlPreviewer", "parse_html_preview"]

logger = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
MAX_OG_KEYS = 50
MAX_VALUE_CHARS = 4096
MAX_TITLE_CHARS = 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/apng", "image/avif")

# MediaRepository.upload: (uploader, content_type, filename, chunks, declared length)
# -> the stored local file. Preview images count against the requesting user's quota.
StoreImage = Callable[[str, str | None, str | None, AsyncIterator[bytes], int | None], Awaitable[MediaInfo]]


@dataclass(frozen=True)
class PreviewSettings:
    """What a preview may cost (from ``media.url_preview``)."""

    max_page_bytes: int = 1024 * 1024
    max_image_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 5
    cache_ttl_ms: int = 3600 * 1000
    cache_entries: int = 1000


class OpenGraphParser(HTMLParser):
    """Collects ``og:*`` meta tags, the ``description`` meta tag, ``<title>`` and
    a ``<meta charset>``; the first value of each key wins."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.description: str | None = None
        self.title: str | None = None
        self.charset: str | None = None
        self._in_title = False
        self._title_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and self.title is None:
            self._in_title = True
        elif tag == "meta":
            a = {k.lower(): v for k, v in attrs if v is not None}
            if "charset" in a and self.charset is None:
                self.charset = a["charset"].strip()
            key = (a.get("property") or a.get("name") or "").strip()
            content = a.get("content")
            if content is None or not key:
                return
            if key.lower().startswith("og:") and len(self.og) < MAX_OG_KEYS:
                self.og.setdefault(key.lower(), content.strip()[:MAX_VALUE_CHARS])
            elif key.lower() == "description" and self.description is None:
                self.description = content.strip()[:MAX_VALUE_CHARS]

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self.title = " ".join("".join(self._title_parts).split())[:MAX_TITLE_CHARS]

    def handle_data(self, data: str) -> None:
        if self._in_title and sum(map(len, self._title_parts)) < MAX_TITLE_CHARS * 4:
            self._title_parts.append(data)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)


def _charset(raw: bytes, content_type: str | None) -> str:
    """The page's encoding: the HTTP header's charset, a ``<meta charset>`` near
    the top, else UTF-8; an unknown name falls back to UTF-8 too."""
    candidates: list[str] = []
    if content_type:
        msg = Message()
        msg["Content-Type"] = content_type
        param = msg.get_param("charset")
        if isinstance(param, str):
            candidates.append(param)
    m = _META_CHARSET.search(raw[:4096])
    if m:
        candidates.append(m.group(1).decode("ascii", "replace"))
    for name in candidates:
        try:
            "".encode(name)
            return name
        except LookupError:
            continue
    return "utf-8"


def parse_html_preview(raw: bytes, content_type: str | None, page_url: str) -> dict[str, Any]:
    """The OpenGraph data of an HTML page (``og:image`` made absolute against ``page_url``)."""
    parser = OpenGraphParser()
    try:
        parser.feed(raw.decode(_charset(raw, content_type), "replace"))
        parser.close()
    except Exception:  # html.parser is lenient; anything else is a page we cannot read
        logger.debug("preview: could not parse %s", page_url, exc_info=True)
    og: dict[str, Any] = dict(parser.og)
    if "og:title" not in og and parser.title:
        og["og:title"] = parser.title
    if "og:description" not in og and parser.description:
        og["og:description"] = parser.description
    image = og.get("og:image")
    if isinstance(image, str) and image:
        og["og:image"] = urljoin(page_url, image)
    for key in ("og:image:width", "og:image:height"):
        value = og.get(key)
        if isinstance(value, str):
            if value.isdigit() and len(value) < 10:
                og[key] = int(value)
            else:
                del og[key]
    return og


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


class UrlPreviewer:
    def __init__(
        self, *, settings: PreviewSettings, fetcher: UrlFetcher, store_image: StoreImage,
        now_ms: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.fetcher = fetcher
        self.store_image = store_image
        self.now_ms = now_ms
        self._cache: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()
        self._flights: SingleFlight[str, dict[str, Any]] = SingleFlight()

    def _bucket(self, ts: int) -> int:
        return ts // max(1, self.settings.cache_ttl_ms)

    async def preview(self, url: str, ts: int | None, user_id: str) -> dict[str, Any]:
        """The preview of ``url`` as of ``ts`` (or now) for ``user_id``: from the
        cache when a preview of that time bucket is held, else fetched now."""
        if len(url) > MAX_URL_LENGTH:
            raise MatrixError(400, "M_INVALID_PARAM", "URL is too long")
        try:
            check_http_url(url)
        except FetchError as e:
            raise MatrixError(400, "M_INVALID_PARAM", str(e)) from None
        now = self.now_ms()
        for when in ([ts] if ts is not None else []) + [now]:
            cached = self._cache.get((url, self._bucket(when)))
            if cached is not None:
                self._cache.move_to_end((url, self._bucket(when)))
                return dict(cached)
        result = await self._flights.run(url, lambda: self._fetch_and_cache(url, user_id))
        return dict(result)

    async def _fetch_and_cache(self, url: str, user_id: str) -> dict[str, Any]:
        result = await self._build(url, user_id)
        self._cache[(url, self._bucket(self.now_ms()))] = result
        while len(self._cache) > self.settings.cache_entries:
            self._cache.popitem(last=False)
        return result

    async def _build(self, url: str, user_id: str) -> dict[str, Any]:
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                async with self.fetcher.get(
                    url, timeout_s=s.timeout_s, max_redirects=s.max_redirects,
                    headers={"Accept": "text/html, image/*;q=0.8, */*;q=0.1"},
                ) as resp:
                    if not 200 <= resp.status < 300:
                        raise MatrixError(502, "M_UNKNOWN", f"The URL answered {resp.status}")
                    media_type = _media_type(resp.headers.get("Content-Type"))
                    final_url = str(resp.url)
                    if media_type in IMAGE_TYPES:
                        return await self._image_preview(resp, media_type, user_id)
                    if media_type not in ("text/html", "application/xhtml+xml"):
                        return {}
                    raw = await read_capped(resp, s.max_page_bytes, truncate=True)
        except FetchError as e:
            raise _fetch_error(e) from None
        except TimeoutError:
            raise MatrixError(504, "M_UNKNOWN", "Timed out fetching the URL") from None
        og = parse_html_preview(raw, resp.headers.get("Content-Type"), final_url)
        image = og.pop("og:image", None)
        if isinstance(image, str) and image:
            try:  # in what is left of the time: a slow image costs the image, not the preview
                async with asyncio.timeout_at(deadline):
                    og.update(await self._fetch_image(image, user_id))
            except TimeoutError:
                logger.info("preview: og:image of %s timed out", url[:200])
        return og

    async def _fetch_image(self, url: str, user_id: str) -> dict[str, Any]:
        """``og:image`` as an mxc URI with its type and size; nothing when it
        cannot be had (the rest of the preview stands)."""
        s = self.settings
        try:
            check_http_url(url)
            async with self.fetcher.get(url, timeout_s=s.timeout_s, max_redirects=s.max_redirects) as resp:
                media_type = _media_type(resp.headers.get("Content-Type"))
                if not 200 <= resp.status < 300 or media_type not in IMAGE_TYPES:
                    return {}
                return await self._image_preview(resp, media_type, user_id)
        except (FetchError, MatrixError) as e:
            logger.info("preview: og:image %s not fetched: %s", url[:200], e)
            return {}

    async def _image_preview(self, resp: Any, media_type: str, user_id: str) -> dict[str, Any]:
        try:
            data = await read_capped(resp, self.settings.max_image_bytes)
        except TooLargeError:
            raise MatrixError(502, "M_TOO_LARGE", "The image is too large to preview") from None

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        info = await self.store_image(user_id, media_type, None, chunks(), len(data))
        return {"og:image": info.mxc, "og:image:type": media_type, "matrix:image:size": len(data)}


def _fetch_error(e: FetchError) -> MatrixError:
    if e.kind == "refused":
        return MatrixError(403, "M_FORBIDDEN", "This server does not fetch URLs from that address")
    if e.kind == "timeout":
        return MatrixError(504, "M_UNKNOWN", "Timed out fetching the URL")
    if e.kind == "bad_url":
        return MatrixError(400, "M_INVALID_PARAM", str(e))
    return MatrixError(502, "M_UNKNOWN", f"Could not fetch the URL: {e}")
