"""Server discovery: where to connect for a server name (server-server API,
"Resolving server names").

The steps, in the spec's order:

1. IP literal: that address, its port or 8448; certificate for the IP.
2. Hostname with explicit port: that host and port; certificate for the hostname.
3. ``https://<hostname>/.well-known/matrix/server`` naming a delegated server,
   which is resolved by the same rules (IP literal, explicit port, SRV, 8448)
   with the *delegated* name as Host header and certificate name.
4. SRV ``_matrix-fed._tcp.<hostname>``, then the deprecated ``_matrix._tcp``.
5. The hostname on port 8448.

Well-known answers (good or bad) are cached in a bounded map: successes by
their Cache-Control/Expires (default 24 h, at most 48 h), failures with an
exponential backoff up to an hour, so an unreachable peer costs one request
per backoff period, not one per message.

Concurrent look-ups of the same hostname share one fetch (:class:`SingleFlight`),
and every connection, the well-known fetch's included, goes through the
:class:`OutboundGuard`, so neither a server name nor a delegation can point
this server at an address the operator has not allowed.

A static map (config ``federation.static_hosts``) short-circuits all of this;
it says where to connect, not who the peer is: the Host header and the
certificate name stay the server name's hostname, as in step 2.

DNS SRV look-ups go through an injected function (default: dnspython's async
resolver), so tests never need a DNS server.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from .events.identifiers import is_valid_server_address, parse_server_name
from .events.json_bounds import JSONBoundsError, loads_bounded
from .outbound_guard import SYSTEM_TRUST, OutboundGuard, TlsTrust
from .single_flight import SingleFlight

__all__ = [
    "DEFAULT_PORT",
    "ResolvedServer",
    "ServerResolver",
    "SrvLookup",
    "WellKnownCache",
    "dns_srv_lookup",
    "parse_cache_lifetime",
    "split_host_port",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8448
WELL_KNOWN_DEFAULT_TTL_S = 24 * 3600.0
WELL_KNOWN_MAX_TTL_S = 48 * 3600.0
WELL_KNOWN_ERROR_MIN_S = 120.0
WELL_KNOWN_ERROR_MAX_S = 3600.0
WELL_KNOWN_MAX_BYTES = 50 * 1024
WELL_KNOWN_TIMEOUT_S = 10.0

SrvLookup = Callable[[str], Awaitable[list[tuple[str, int]]]]
"""``name -> [(target, port), ...]`` in preference order; ``[]`` when there is no record."""


@dataclass(frozen=True)
class ResolvedServer:
    """Where and how to reach a server.

    ``host`` is an IP address (without brackets) or a hostname still to be
    resolved through A/AAAA; ``host_header`` goes in the ``Host`` header and
    ``tls_name`` is the name (or IP) the certificate must be valid for and
    the SNI sent.
    """

    host: str
    port: int
    host_header: str
    tls_name: str

    @property
    def url_base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


def split_host_port(name: str) -> tuple[str, int | None, bool]:
    """``(host, port, is_ip_literal)``; the host of an IPv6 literal loses its brackets.

    ValueError for a name that is not a server address (`is_valid_server_address`),
    such as a port that is not 1 to 65535 (``example.org:99999`` matches the server
    name grammar's ``1*5DIGIT``), so no such port ever reaches a socket.
    """
    parsed = parse_server_name(name, reachable=True)
    if parsed is None:
        raise ValueError(f"Invalid server address {name!r}")
    return parsed.host, parsed.port, parsed.is_ip


_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


def parse_cache_lifetime(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds a response may be cached per Cache-Control/Expires, None if unstated.

    ``no-store``/``no-cache`` count as zero: the answer is not reused.
    ``now`` is wall-clock seconds, needed to turn Expires into a lifetime.
    """
    cc = headers.get("Cache-Control", "")
    if cc:
        lowered = cc.lower()
        if "no-store" in lowered or "no-cache" in lowered:
            return 0.0
        m = _MAX_AGE.search(cc)
        if m:
            return float(m.group(1))
    expires = headers.get("Expires")
    if expires:
        try:
            when = email.utils.parsedate_to_datetime(expires).timestamp()
        except (TypeError, ValueError):
            return 0.0  # an invalid Expires means "already expired" (RFC 9111)
        return max(0.0, when - now)
    return None


@dataclass
class _CacheEntry:
    delegated: str | None  # the m.server value, None for a failure
    expires_at: float  # monotonic seconds
    failures: int = 0


class WellKnownCache:
    """A bounded map of well-known answers with expiry; oldest entries go first."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _CacheEntry] = OrderedDict()

    def get(self, hostname: str, now: float) -> _CacheEntry | None:
        entry = self._entries.get(hostname)
        if entry is None or entry.expires_at <= now:
            return None
        return entry

    def failures(self, hostname: str) -> int:
        entry = self._entries.get(hostname)
        return entry.failures if entry is not None else 0

    def put(self, hostname: str, entry: _CacheEntry) -> None:
        self._entries.pop(hostname, None)
        self._entries[hostname] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


async def dns_srv_lookup(name: str) -> list[tuple[str, int]]:
    """SRV records for ``name`` through dnspython, by priority then weight.

    A missing record (NXDOMAIN, no answer) is ``[]``; so is the RFC 2782
    "service not available" record whose target is ``.``.
    """
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    try:
        answer = await dns.asyncresolver.resolve(name, "SRV", lifetime=10.0)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
        return []
    except dns.exception.Timeout:
        logger.info("SRV look-up for %s timed out", name)
        return []
    records = sorted(answer, key=lambda r: (r.priority, -r.weight))
    out: list[tuple[str, int]] = []
    for r in records:
        target = r.target.to_text(omit_final_dot=True)
        if target in ("", "."):
            continue
        out.append((target, int(r.port)))
    return out


class ServerResolver:
    """Resolves server names to :class:`ResolvedServer`, caching well-known answers.

    ``ssl_context`` verifies well-known servers' certificates (the same trust
    as federation itself); ``srv_lookup`` does DNS (injected in tests);
    ``well_known_port`` exists so tests can serve the document on a free port;
    ``guard`` decides which addresses the well-known fetch may connect to
    (default: publicly routable ones only).
    """

    def __init__(
        self,
        *,
        ssl_context: TlsTrust = SYSTEM_TRUST,
        static_hosts: Mapping[str, str] | None = None,
        srv_lookup: SrvLookup | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        well_known_port: int = 443,
        cache: WellKnownCache | None = None,
        guard: OutboundGuard | None = None,
    ) -> None:
        self.ssl_context = ssl_context
        self.static_hosts = dict(static_hosts or {})
        self.srv_lookup = srv_lookup or dns_srv_lookup
        self.monotonic = monotonic
        self.wall_clock = wall_clock
        self.well_known_port = well_known_port
        self.cache = cache or WellKnownCache()
        self.guard = guard if guard is not None else OutboundGuard()
        self._session: aiohttp.ClientSession | None = None
        self._well_known_flights: SingleFlight[str, str | None] = SingleFlight()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def resolve(self, server_name: str) -> ResolvedServer:
        if not is_valid_server_address(server_name):
            raise ValueError(f"Invalid server name {server_name!r}")
        host, port, is_ip = split_host_port(server_name)
        static = self.static_hosts.get(server_name)
        if static is not None:
            s_host, s_port, _ = split_host_port(static)
            return ResolvedServer(s_host, s_port or DEFAULT_PORT, server_name, host)
        if is_ip:  # step 1
            return ResolvedServer(host, port or DEFAULT_PORT, server_name, host)
        if port is not None:  # step 2
            return ResolvedServer(host, port, server_name, host)
        delegated = await self.well_known(host)  # step 3
        if delegated is not None:
            d_host, d_port, d_is_ip = split_host_port(delegated)
            if d_is_ip:  # 3.1
                return ResolvedServer(d_host, d_port or DEFAULT_PORT, delegated, d_host)
            if d_port is not None:  # 3.2
                return ResolvedServer(d_host, d_port, delegated, d_host)
            srv = await self._srv(d_host)  # 3.3, 3.4
            if srv is not None:
                return ResolvedServer(srv[0], srv[1], d_host, d_host)
            return ResolvedServer(d_host, DEFAULT_PORT, d_host, d_host)  # 3.5
        srv = await self._srv(host)  # steps 4, 5
        if srv is not None:
            return ResolvedServer(srv[0], srv[1], host, host)
        return ResolvedServer(host, DEFAULT_PORT, host, host)  # step 6

    async def _srv(self, hostname: str) -> tuple[str, int] | None:
        for service in ("_matrix-fed._tcp.", "_matrix._tcp."):
            try:
                records = await self.srv_lookup(service + hostname)
            except Exception:  # DNS trouble counts as "no record": fall through to 8448
                logger.info("SRV look-up for %s%s failed", service, hostname, exc_info=True)
                records = []
            if records:
                return records[0]
        return None

    async def well_known(self, hostname: str) -> str | None:
        """The delegated server name from the cache or a fresh fetch; None on failure.

        Callers asking while a fetch for ``hostname`` is under way share it.
        """
        entry = self.cache.get(hostname, self.monotonic())
        if entry is not None:
            return entry.delegated
        return await self._well_known_flights.run(hostname, lambda: self._look_up_well_known(hostname))

    async def _look_up_well_known(self, hostname: str) -> str | None:
        now = self.monotonic()
        try:
            delegated, ttl = await self._fetch_well_known(hostname)
        except _WellKnownError as exc:
            failures = self.cache.failures(hostname) + 1
            backoff = min(WELL_KNOWN_ERROR_MAX_S, WELL_KNOWN_ERROR_MIN_S * 2 ** (failures - 1))
            logger.info("no usable .well-known for %s (%s); retry in %ds", hostname, exc, backoff)
            self.cache.put(hostname, _CacheEntry(None, now + backoff, failures))
            return None
        if ttl is None:
            ttl = WELL_KNOWN_DEFAULT_TTL_S
        ttl = min(ttl, WELL_KNOWN_MAX_TTL_S)
        if ttl > 0:
            self.cache.put(hostname, _CacheEntry(delegated, now + ttl))
        return delegated

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self.guard.session(
                connector_args={"ssl": self.ssl_context, "limit": 50},
                timeout=aiohttp.ClientTimeout(total=WELL_KNOWN_TIMEOUT_S),
            )
        return self._session

    async def _fetch_well_known(self, hostname: str) -> tuple[str, float | None]:
        port = "" if self.well_known_port == 443 else f":{self.well_known_port}"
        url = f"https://{hostname}{port}/.well-known/matrix/server"
        try:
            # aiohttp follows redirects and stops loops at max_redirects.
            async with self._get_session().get(url, allow_redirects=True, max_redirects=10) as resp:
                if resp.status != 200:
                    raise _WellKnownError(f"HTTP {resp.status}")
                body = await resp.content.read(WELL_KNOWN_MAX_BYTES + 1)
                if len(body) > WELL_KNOWN_MAX_BYTES:
                    raise _WellKnownError("response too large")
                ttl = parse_cache_lifetime(resp.headers, self.wall_clock())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _WellKnownError(f"{type(exc).__name__}: {exc}") from exc
        try:
            data: Any = loads_bounded(body)
        except JSONBoundsError as exc:
            raise _WellKnownError("not JSON") from exc
        delegated = data.get("m.server") if isinstance(data, dict) else None
        if not isinstance(delegated, str) or not is_valid_server_address(delegated):
            raise _WellKnownError("no valid 'm.server'")
        return delegated, ttl


class _WellKnownError(Exception):
    pass
