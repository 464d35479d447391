"""Asking other servers on a client's behalf: profiles (``/query/profile``) and the
pieces every such query shares, a short-lived bounded cache and the mapping of a
federation failure to the error the client sees.

What a remote server answers is untrusted: it is checked for shape and size
before any of it reaches a client, and a failure of the remote never becomes a
500 here, nor passes the remote's own status through (a remote 401 relayed to a
client would log that client out).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import orjson

from federation.client import (
    ConnectError,
    DestinationRefusedError,
    FederationClient,
    FederationError,
    RemoteError,
)
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.identifiers import parse_user_id

logger = logging.getLogger(__name__)

# A client waits on these: give up well before a client's own request times out.
QUERY_TIMEOUT_S = 15.0
PROFILE_CACHE_TTL_S = 120.0
PROFILE_NOT_FOUND_TTL_S = 30.0
PROFILE_CACHE_ENTRIES = 10_000
# The client API's own bound on a profile (see api/client/profile.py).
MAX_PROFILE_BYTES = 64 * 1024
MAX_PROFILE_KEY_BYTES = 255
MAX_DISPLAYNAME_CHARS = 256
MAX_AVATAR_URL_CHARS = 1000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RemoteAnswerError(Exception):
    """A remote answered 2xx with something we will not pass on (wrong shape, too big)."""


class TtlCache(Generic[K, V]):
    """At most ``max_entries`` values, each forgotten ``ttl_s`` after it was stored
    (least recently used first when full). Concurrent misses for one key share
    one computation, so a burst of clients asking the same thing costs the remote
    server one request."""

    def __init__(self, max_entries: int, ttl_s: float, monotonic: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._inflight: dict[K, asyncio.Future[V]] = {}

    def get(self, key: K) -> tuple[bool, V | None]:
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= self.monotonic():
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def put(self, key: K, value: V, ttl_s: float | None = None) -> None:
        self._entries[key] = (self.monotonic() + (self.ttl_s if ttl_s is None else ttl_s), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def get_or_compute(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """The cached value, else ``compute()``'s (shared with concurrent callers).
        ``compute`` stores what should be cached itself (it knows the TTL of each
        outcome); exceptions reach every waiter and are not cached."""
        hit, value = self.get(key)
        if hit:
            return value  # type: ignore[return-value]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await compute()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when no one waits
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]


def remote_failure(exc: Exception, server: str, what: str) -> MatrixError:
    """The client's error for a failed query of ``server`` (the spec names none; this
    follows common practice): the remote's 404 and 403 keep their meaning (no such
    thing; unwilling to disclose), our own federation policy is a 403, and anything
    else (unreachable, timeout, garbage, a remote error) is a 502, or 504 for a
    timeout, with M_UNKNOWN."""
    if isinstance(exc, DestinationRefusedError):
        return forbidden(f"Federation with {server} is not permitted by this server")
    if isinstance(exc, RemoteError):
        if exc.status == 404:
            return not_found(f"{what[0].upper()}{what[1:]} not found on {server}")
        if exc.status == 403:
            return forbidden(f"{server} refused to disclose the {what}")
        return MatrixError(502, "M_UNKNOWN", f"{server} answered HTTP {exc.status} when asked for the {what}")
    if isinstance(exc, ConnectError) and isinstance(exc.__cause__, TimeoutError):
        return MatrixError(504, "M_UNKNOWN", f"Timed out asking {server} for the {what}")
    if isinstance(exc, ConnectError):
        return MatrixError(502, "M_UNKNOWN", f"Could not reach {server} for the {what}")
    return MatrixError(502, "M_UNKNOWN", f"{server} sent an invalid {what}")


def clean_profile(data: Any) -> dict[str, Any]:
    """A remote profile as we pass it on: an object of at most 64 KiB; null fields
    dropped (the spec's "not set"), and the fields the spec defines dropped when of
    the wrong type, since clients rely on them being strings."""
    if not isinstance(data, dict):
        raise RemoteAnswerError("profile is not a JSON object")
    if len(orjson.dumps(data)) > MAX_PROFILE_BYTES:
        raise RemoteAnswerError("profile is larger than 64 KiB")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None or len(key.encode("utf-8", "surrogatepass")) > MAX_PROFILE_KEY_BYTES:
            continue
        if key in ("displayname", "avatar_url", "m.tz") and not isinstance(value, str):
            continue
        if key == "displayname" and len(value) > MAX_DISPLAYNAME_CHARS:
            continue
        if key == "avatar_url" and (not value.startswith("mxc://") or len(value) > MAX_AVATAR_URL_CHARS):
            continue
        out[key] = value
    return out


# Cached outcome of one profile query: the (cleaned) answer, or None for "not found".
_Profile = dict[str, Any] | None


class RemoteProfiles:
    """Profiles of users on other servers, as the client API's GET /profile serves them."""

    def __init__(
        self, *, server_name: str, client: FederationClient | None, monotonic: Callable[[], float]
    ) -> None:
        self.server_name = server_name
        self.client = client  # None when federation is off
        self._cache: TtlCache[tuple[str, str | None], _Profile] = TtlCache(
            PROFILE_CACHE_ENTRIES, PROFILE_CACHE_TTL_S, monotonic
        )

    async def get(self, user_id: str, field: str | None = None) -> dict[str, Any]:
        """The profile (or the one ``field`` of it) of a remote user; M_NOT_FOUND when
        the server says there is none, or when federation is off (nothing may leave
        the server then, and to the client the profile is simply unknown here)."""
        parsed = parse_user_id(user_id)
        assert parsed is not None and parsed[1] != self.server_name
        client = self.client
        if client is None:
            raise not_found("Profile not found: this server does not federate")
        if field is not None:
            # A whole profile fetched recently answers a single field too.
            hit, whole = self._cache.get((user_id, None))
            if hit:
                return _pick(whole, field)
        profile = await self._cache.get_or_compute(
            (user_id, field), lambda: self._fetch(client, parsed[1], user_id, field)
        )
        return _pick(profile, field)

    async def _fetch(
        self, client: FederationClient, server: str, user_id: str, field: str | None
    ) -> _Profile:
        query = {"user_id": user_id} if field is None else {"user_id": user_id, "field": field}
        try:
            answer = await client.get_json(
                server, "/_matrix/federation/v1/query/profile", query=query, timeout_s=QUERY_TIMEOUT_S
            )
            profile: _Profile = clean_profile(answer)
        except RemoteError as exc:
            if exc.status != 404:
                raise remote_failure(exc, server, "profile") from None
            profile = None
        except (FederationError, RemoteAnswerError) as exc:
            logger.info("profile of %s from %s: %s", user_id, server, exc)
            raise remote_failure(exc, server, "profile") from None
        if profile is not None and field is not None:
            # "MUST only include the specified field": ignore whatever else came.
            profile = {field: profile[field]} if field in profile else {}
        ttl = PROFILE_CACHE_TTL_S if profile is not None else PROFILE_NOT_FOUND_TTL_S
        self._cache.put((user_id, field), profile, ttl)
        return profile


def _pick(profile: _Profile, field: str | None) -> dict[str, Any]:
    if profile is None:
        raise not_found("Profile not found")
    if field is None:
        return dict(profile)
    if field not in profile:
        raise not_found("Profile field not found")
    return {field: profile[field]}
