"""The outbound federation HTTPS client.

Every request is resolved through server discovery (connect address, Host
header, certificate name), sent over verified TLS, and signed with the
``X-Matrix`` header. Failures come back as typed errors so callers can tell a
peer that refused (:class:`RemoteError`, with the peer's ``errcode``) from one
that could not be reached (:class:`ConnectError`).

Independent of the homeserver: the server name, signing key, TLS context and
resolver are handed in.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from yarl import URL

from .discovery import ServerResolver
from .events.json_bounds import JSONBoundsError, loads_bounded
from .events.signing import SigningKey
from .outbound_guard import SYSTEM_TRUST, OutboundGuard, RefusedAddressError, TlsTrust
from .request_auth import sign_request

__all__ = [
    "AddressRefusedError",
    "BadResponseError",
    "ConnectError",
    "DestinationRefusedError",
    "FederationClient",
    "FederationError",
    "RemoteError",
    "OutboundPolicy",
    "RequestObserver",
    "make_ssl_context",
    "quote_path_segment",
]

DEFAULT_TIMEOUT_S = 30.0
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024  # of an error answer to a streamed request
USER_AGENT = "Accord"


class FederationError(Exception):
    """Any failure of an outbound federation request."""


class ConnectError(FederationError):
    """The peer could not be reached or did not complete TLS (certificate, timeout, refused)."""


class AddressRefusedError(ConnectError):
    """The peer's address is one the outbound address policy refuses (private,
    loopback, link-local...): no connection was made. ``address`` is the refused
    address (with the name it came from, when it came from DNS)."""

    def __init__(self, message: str, address: str) -> None:
        super().__init__(message)
        self.address = address


class RemoteError(FederationError):
    """The peer answered with an error status; ``errcode`` as the peer sent it when it did."""

    def __init__(self, status: int, errcode: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode
        self.message = message
        self.body = body

    @property
    def unknown_endpoint(self) -> bool:
        """The peer does not serve this endpoint (an older or partial server): 404 or 405
        with no errcode of its own or M_UNRECOGNIZED, or 400 M_UNRECOGNIZED, which is how
        servers have said it over the years. Callers fall back to an older endpoint on
        this, and only on this: any other error is the peer's answer to the request."""
        sent_errcode = isinstance(self.body, dict) and isinstance(self.body.get("errcode"), str)
        if self.status in (404, 405):
            return not sent_errcode or self.errcode == "M_UNRECOGNIZED"
        return self.status == 400 and self.errcode == "M_UNRECOGNIZED"


class BadResponseError(FederationError):
    """The peer answered 2xx with something that is not JSON."""


class DestinationRefusedError(FederationError):
    """Our own federation policy forbids this request: nothing was sent, and
    retrying cannot help until the policy changes (callers must not back off and
    resend, as they would for an unreachable peer)."""

    def __init__(self, destination: str, path: str) -> None:
        super().__init__(f"Federation with {destination} is not permitted by this server's policy")
        self.destination = destination
        self.path = path


# (destination, path) -> may this request be sent? Given by whoever runs the
# client (the homeserver's federation policy), consulted before every request.
OutboundPolicy = Callable[[str, str], bool]
# (method, destination, path with query, JSON content): told of every request
# about to go out, after the policy allowed it (metrics, tests, debugging).
RequestObserver = Callable[[str, str, str, Any], None]


async def _read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to ``limit`` bytes. One ``read(n)`` returns only what has arrived
    so far (at most n), so a large answer must be read until EOF."""
    raw = bytearray()
    while len(raw) < limit:
        chunk = await stream.read(limit - len(raw))
        if not chunk:
            break
        raw += chunk
    return bytes(raw)


def make_ssl_context(*, verify: bool = True, ca_bundle_path: str | None = None) -> TlsTrust:
    """The TLS trust for talking to peers: the system's plus an optional extra bundle
    (`SYSTEM_TRUST`, no context of our own, when there is no bundle).

    ``verify=False`` exists for development only; the config documents it as such.
    """
    if verify and not ca_bundle_path:
        return SYSTEM_TRUST
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_bundle_path:
        ctx.load_verify_locations(cafile=ca_bundle_path)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def quote_path_segment(value: str) -> str:
    """Percent-encode a path parameter (server names, IDs) so it stays one segment."""
    return quote(value, safe="")


@dataclass(frozen=True)
class _Prepared:
    """A request ready to send: where, with which headers and body, and the
    name the peer's certificate must be valid for."""

    url: URL
    headers: dict[str, str]
    body: bytes | None
    tls_name: str


@contextlib.contextmanager
def _connect_errors(method: str, destination: str, path: str) -> Iterator[None]:
    """Failures to reach the peer as :class:`ConnectError` (or
    :class:`AddressRefusedError` when the outbound guard refused the address)."""
    try:
        yield
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, RefusedAddressError):
            raise AddressRefusedError(
                f"{method} {destination}{path} refused: {exc.os_error.strerror}",
                exc.os_error.address,
            ) from exc
        raise ConnectError(
            f"{method} {destination}{path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
        raise ConnectError(
            f"{method} {destination}{path} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _remote_error(status: int, data: Any) -> RemoteError:
    """A peer's error answer, with its errcode and message when it sent them."""
    errcode = "M_UNKNOWN"
    message = f"HTTP {status}"
    if isinstance(data, dict):
        if isinstance(data.get("errcode"), str):
            errcode = data["errcode"]
        if isinstance(data.get("error"), str):
            message = data["error"]
    return RemoteError(status, errcode, message, data)


class FederationClient:
    """Signed JSON requests to other homeservers."""

    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        *,
        resolver: ServerResolver,
        ssl_context: TlsTrust,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        user_agent: str = USER_AGENT,
        policy: OutboundPolicy | None = None,
        guard: OutboundGuard | None = None,
    ) -> None:
        """``guard`` decides which addresses may be connected to; without one,
        only publicly routable addresses (the safe default)."""
        self.server_name = server_name
        self.guard = guard if guard is not None else OutboundGuard()
        self.policy = policy
        self.observers: list[RequestObserver] = []
        self.signing_key = signing_key
        self.resolver = resolver
        self.ssl_context = ssl_context
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self.guard.session(
                connector_args={"ssl": self.ssl_context, "limit": 200, "limit_per_host": 20},
                json_serialize=lambda v: orjson.dumps(v).decode(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.resolver.close()

    async def request(
        self,
        method: str,
        destination: str,
        path: str,
        *,
        query: Mapping[str, str | list[str]] | None = None,
        content: Any = None,
        signed: bool = True,
        timeout_s: float | None = None,
    ) -> Any:
        """Send one request and return the parsed JSON response.

        ``path`` is already percent-encoded (use :func:`quote_path_segment` for
        parameters); it is signed exactly as it goes on the wire. Raises
        :class:`DestinationRefusedError`, before any network use, when the
        policy forbids the request.
        """
        prepared = await self._prepare(method, destination, path, query, content, signed)
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        with _connect_errors(method, destination, path):
            async with self._get_session().request(
                method,
                prepared.url,
                data=prepared.body,
                headers=prepared.headers,
                timeout=timeout,
                server_hostname=prepared.tls_name,
                allow_redirects=False,
            ) as resp:
                raw = await _read_capped(resp.content, MAX_RESPONSE_BYTES + 1)
                status = resp.status
        if len(raw) > MAX_RESPONSE_BYTES:
            raise BadResponseError(f"Response from {destination} is too large")
        try:
            # The same nesting bound as request bodies: a peer's answer is stored
            # and served on like anything a client sends.
            data: Any = loads_bounded(raw) if raw else None
        except JSONBoundsError as exc:
            data = None
            if 200 <= status < 300:
                raise BadResponseError(f"Response from {destination} is not usable JSON: {exc}") from None
        if not 200 <= status < 300:
            raise _remote_error(status, data)
        return data

    async def _prepare(
        self,
        method: str,
        destination: str,
        path: str,
        query: Mapping[str, str | list[str]] | None,
        content: Any,
        signed: bool,
    ) -> _Prepared:
        """Policy, observers, discovery and the X-Matrix signature of one request."""
        if self.policy is not None and not self.policy(destination, path):
            raise DestinationRefusedError(destination, path)
        target = path
        if query:
            target += "?" + urlencode(
                [(k, v) for k, vs in query.items() for v in ([vs] if isinstance(vs, str) else vs)]
            )
        for observe in self.observers:
            observe(method, destination, target, content)
        try:
            resolved = await self.resolver.resolve(destination)
        except ValueError as exc:
            raise ConnectError(f"Cannot resolve {destination}: {exc}") from exc
        headers = {"Host": resolved.host_header, "User-Agent": self.user_agent}
        body: bytes | None = None
        if content is not None:
            body = orjson.dumps(content)
            headers["Content-Type"] = "application/json"
        if signed:
            headers["Authorization"] = sign_request(
                method=method,
                uri=target,
                origin=self.server_name,
                destination=destination,
                signing_key=self.signing_key,
                content=content,
            )
        url = URL(resolved.url_base + target, encoded=True)
        return _Prepared(url, headers, body, resolved.tls_name)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        destination: str,
        path: str,
        *,
        query: Mapping[str, str | list[str]] | None = None,
        signed: bool = True,
        timeout_s: float | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request and hand over its 2xx response unread, for bodies that
        are not JSON or too large to hold (media): read ``resp.content`` within the
        ``async with``. ``timeout_s`` bounds the whole exchange, reading included.

        The same policy, discovery and signature as :meth:`request`. A non-2xx
        answer raises :class:`RemoteError` (its JSON body read up to
        ``MAX_ERROR_BYTES``); failing to reach the peer, or the connection failing
        while the body is read, raises :class:`ConnectError`.
        """
        prepared = await self._prepare(method, destination, path, query, None, signed)
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        with _connect_errors(method, destination, path):
            resp = await self._get_session().request(
                method,
                prepared.url,
                headers=prepared.headers,
                timeout=timeout,
                server_hostname=prepared.tls_name,
                allow_redirects=False,
            )
        try:
            if not 200 <= resp.status < 300:
                with _connect_errors(method, destination, path):
                    raw = await _read_capped(resp.content, MAX_ERROR_BYTES)
                try:
                    data: Any = loads_bounded(raw) if raw else None
                except JSONBoundsError:
                    data = None
                raise _remote_error(resp.status, data)
            try:
                yield resp
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ConnectError(
                    f"{method} {destination}{path} failed: {type(exc).__name__}: {exc}"
                ) from exc
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()  # unread: the connection cannot be reused

    async def get_json(self, destination: str, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", destination, path, **kwargs)

    async def post_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> Any:
        return await self.request("POST", destination, path, content=content, **kwargs)

    async def put_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> Any:
        return await self.request("PUT", destination, path, content=content, **kwargs)
