"""The one gate every outbound HTTP connection of the server passes through.

A remote party chooses many of the hosts we connect to: the ``origin`` of an
``X-Matrix`` header, the server names sent to our notary endpoint, a
``.well-known`` delegation, and later media, URL previews and pushers. Without a
gate, that lets anyone make this server open connections inside its own network
(a blind SSRF: the admin interface of a router, a cloud metadata service, a
database on localhost).

:class:`OutboundGuard` refuses addresses that are not publicly routable
(private, loopback, link-local, unique-local, CGNAT, unspecified, multicast,
reserved, documentation ranges, and IPv6 forms that embed one of those: IPv4-
mapped, NAT64, 6to4), as Python's :mod:`ipaddress` classifies them, unless the
operator allows a range. The check is made on the address the socket actually
connects to, after DNS, so a name that resolves (or re-resolves: DNS rebinding)
to a refused address is caught, and so are IP literals, static hosts,
well-known delegations and redirects.

Every outbound session must come from :meth:`OutboundGuard.session`; nothing in
the server builds a ``ClientSession`` of its own. Independent of the
homeserver: the :class:`AddressPolicy` is handed in.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = [
    "SYSTEM_TRUST",
    "AddressPolicy",
    "GuardedResolver",
    "TlsTrust",
    "IPAddress",
    "IPNetwork",
    "OutboundGuard",
    "RefusedAddressError",
]

# What verifies an outbound connection's certificate: a context of our own (an extra CA
# bundle, or verification off), or SYSTEM_TRUST, aiohttp's verifying context with the
# system's CAs (``ssl=True``), which it builds when imported anyway. Each context holds
# its own parsed copy of the system's CA certificates, about 0.8 MB, so the default
# trust builds none.
TlsTrust = ssl.SSLContext | Literal[True]
SYSTEM_TRUST: Literal[True] = True

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# NAT64 (RFC 6052): on an IPv6-only host behind a NAT64 gateway these reach the
# embedded IPv4 address, so that address is what must be judged.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class RefusedAddressError(OSError):
    """A connection to ``address`` was refused by the outbound address policy.

    An :class:`OSError` so that aiohttp treats it like any failure to connect
    (and reports it as a ``ClientConnectorError`` whose ``os_error`` is this).
    """

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(errno.EACCES, f"connecting to {address} is not allowed ({reason})")
        self.address = address
        self.reason = reason


def _judged(ip: IPAddress) -> list[IPAddress]:
    """The addresses whose kind decides whether ``ip`` may be connected to.

    An IPv6 address that stands for an IPv4 one (IPv4-mapped, NAT64) reaches
    that IPv4 address, so that is what is judged (the IPv6 form itself counts as
    "reserved"); a 6to4 address must pass both as itself and as the IPv4
    address it embeds.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return [ip.ipv4_mapped]
        if ip in _NAT64:
            return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
        if ip.sixtofour is not None:
            return [ip, ip.sixtofour]
    return [ip]


def _not_public(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a publicly routable unicast address, None if it is."""
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_private:
        return "private address"
    if not ip.is_global:
        return "not a globally routable address"
    if ip.is_reserved:
        return "reserved address"
    return None


def _within(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses outbound connections may go to.

    An address in ``allowed`` may always be connected to (a partner on a
    private network; loopback in tests); otherwise one in ``denied`` is
    refused, and so is any address that is not publicly routable. The default
    policy allows exactly the public internet.
    """

    allowed: tuple[IPNetwork, ...] = ()
    denied: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, allowed: Iterable[str] = (), denied: Iterable[str] = ()) -> AddressPolicy:
        """From CIDR strings (``10.0.0.0/8``, ``::1/128``, or single addresses);
        raises ValueError naming a bad one."""
        return cls(
            tuple(ipaddress.ip_network(c, strict=True) for c in allowed),
            tuple(ipaddress.ip_network(c, strict=True) for c in denied),
        )

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why a connection to ``address`` is refused, None when it is allowed."""
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return "not an IP address"
        judged = _judged(ip)
        if any(_within(c, self.allowed) for c in (ip, *judged)):
            return None
        if any(_within(c, self.denied) for c in (ip, *judged)):
            return "in a denied range"
        for c in judged:
            reason = _not_public(c)
            if reason is not None:
                return reason
        return None

    def check(self, address: str) -> None:
        """Raise :class:`RefusedAddressError` unless ``address`` may be connected to."""
        reason = self.refusal(address)
        if reason is not None:
            raise RefusedAddressError(address, reason)


class GuardedResolver(AbstractResolver):
    """DNS through aiohttp's default resolver, keeping only allowed addresses.

    A name with no allowed address fails with :class:`RefusedAddressError`
    before any connection is attempted. (IP literals never reach a resolver:
    :meth:`OutboundGuard.socket_factory` judges those.)
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = DefaultResolver()
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self.policy.refusal(r["host"]) is None]
        if not allowed:
            first = results[0]["host"] if results else host
            raise RefusedAddressError(
                f"{host} ({first})", self.policy.refusal(first) or "no address"
            )
        return allowed

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


class OutboundGuard:
    """Builds the connectors and sessions all outbound HTTP must use.

    Two checks, both against the same policy: the resolver drops refused DNS
    answers (so a name with one public and one private address still works),
    and the socket factory refuses any address a socket is about to connect
    to (IP literals skip DNS; this is also the last line if anything else
    did). Environment proxies are never used: through a proxy the address
    checked would not be the one the request reaches.
    """

    def __init__(self, policy: AddressPolicy | None = None) -> None:
        self.policy = policy if policy is not None else AddressPolicy()

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        self.policy.check(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)

    def connector(self, **kwargs: Any) -> aiohttp.TCPConnector:
        """A ``TCPConnector`` (``ssl``, ``limit``... passed through) that only
        connects where the policy allows."""
        return aiohttp.TCPConnector(
            resolver=GuardedResolver(self.policy), socket_factory=self.socket_factory, **kwargs
        )

    def session(
        self, *, connector_args: dict[str, Any] | None = None, **kwargs: Any
    ) -> aiohttp.ClientSession:
        """The ``ClientSession`` for any outbound HTTP (federation, key and
        well-known fetches, and future media, URL preview and push fetches).

        ``connector_args`` go to the connector (``ssl``, ``limit``,
        ``limit_per_host``), everything else to the session (``timeout``...).
        """
        return aiohttp.ClientSession(
            connector=self.connector(**(connector_args or {})), trust_env=False, **kwargs
        )
