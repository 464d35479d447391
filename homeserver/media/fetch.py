"""Plain HTTP(S) fetches of URLs a remote party chose: URL previews, and the
``Location`` a remote media answer may redirect to.

Every connection comes from the server's :class:`OutboundGuard`, so private,
loopback and link-local addresses are refused (unless the operator allowed a
range), checked on the address actually connected to. Redirects are followed
here, one hop at a time, so each hop goes through the guard and only http and
https are ever followed; bodies are read under a byte cap.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urljoin, urlsplit

import aiohttp

from federation.outbound_guard import SYSTEM_TRUST, OutboundGuard, RefusedAddressError, TlsTrust

__all__ = ["FetchError", "TooLargeError", "UrlFetcher", "read_capped"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class FetchError(Exception):
    """A URL could not be fetched. ``kind``: ``refused`` (the guard refused the
    address: nothing was connected), ``timeout``, ``unreachable``, ``redirects``
    (too many, or to something not http/https), ``bad_url``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class TooLargeError(Exception):
    """A body is larger than the cap it is read under."""


def check_http_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host, else FetchError(bad_url)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise FetchError("bad_url", "Not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("bad_url", "Only http and https URLs can be fetched")
    return url


async def read_capped(resp: aiohttp.ClientResponse, max_bytes: int, *, truncate: bool = False) -> bytes:
    """The body up to ``max_bytes``: TooLargeError beyond it, or (``truncate``) the
    first ``max_bytes`` bytes, the rest left unread."""
    if resp.content_length is not None and resp.content_length > max_bytes and not truncate:
        raise TooLargeError(f"{resp.content_length} bytes is over the cap of {max_bytes}")
    raw = bytearray()
    while len(raw) <= max_bytes:
        chunk = await resp.content.read(max_bytes + 1 - len(raw))
        if not chunk:
            return bytes(raw)
        raw += chunk
    if truncate:
        return bytes(raw[:max_bytes])
    raise TooLargeError(f"more than {max_bytes} bytes")


class UrlFetcher:
    """GETs through the outbound guard, redirects followed hop by hop."""

    def __init__(
        self, guard: OutboundGuard, ssl_context: TlsTrust = SYSTEM_TRUST, *,
        user_agent: str = "Accord",
    ) -> None:
        self.guard = guard
        self.ssl_context = ssl_context
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self.guard.session(
                connector_args={"ssl": self.ssl_context, "limit": 50, "limit_per_host": 4},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.asynccontextmanager
    async def get(
        self, url: str, *, timeout_s: float, max_redirects: int,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response of the last hop (any status but a redirect), body unread.

        ``timeout_s`` bounds each hop, reading included; the final URL is
        ``resp.url``. Raises :class:`FetchError`.
        """
        check_http_url(url)
        sent = {"User-Agent": self.user_agent, **(headers or {})}
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        hops = 0
        while True:
            try:
                resp = await self._get_session().get(
                    url, headers=sent, timeout=timeout, allow_redirects=False
                )
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, RefusedAddressError):
                    raise FetchError("refused", f"Refused to connect: {exc.os_error.strerror}") from exc
                raise FetchError("unreachable", f"Could not connect: {exc}") from exc
            except TimeoutError as exc:
                raise FetchError("timeout", "Timed out") from exc
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                raise FetchError("unreachable", f"{type(exc).__name__}: {exc}") from exc
            location = resp.headers.get("Location")
            if resp.status in REDIRECT_STATUSES and location:
                resp.close()
                hops += 1
                if hops > max_redirects:
                    raise FetchError("redirects", "Too many redirects")
                url = urljoin(str(resp.url), location)
                try:
                    check_http_url(url)
                except FetchError:
                    raise FetchError("redirects", "Redirected to something not http(s)") from None
                continue
            break
        try:
            try:
                yield resp
            except TimeoutError as exc:
                raise FetchError("timeout", "Timed out reading the answer") from exc
            except aiohttp.ClientError as exc:
                raise FetchError("unreachable", f"{type(exc).__name__}: {exc}") from exc
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()
