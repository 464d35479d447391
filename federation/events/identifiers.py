"""Identifier grammar needed by the room protocol (appendices, "Identifier Grammar").

Only what the event rules depend on lives here: splitting a server name out
of an ID, and the user ID check the auth rules apply to power level ``users``
keys and v12 ``additional_creators``. The check is the *historical* grammar,
because the spec requires servers to keep accepting events from users whose
IDs predate the strict grammar; rejecting them would fork rooms.

The appendix's server name grammar is implemented once, by
:func:`parse_server_name`, in two strengths:

- the grammar (:func:`is_valid_server_name`): what may appear inside events.
  ``port`` is ``1*5DIGIT`` and an IPv6 literal is ``2*45`` of its characters,
  as the grammar says; other servers accept ``:99999`` in a user ID, and
  refusing such an event would fork the room.
- a server address (``reachable=True``, :func:`is_valid_server_address`): a
  name that can designate a server we connect to or accept a request from
  (X-Matrix origin and destination, discovery, names users and admins give
  us): the port is a real TCP port (1 to 65535), an IPv6 literal is an RFC 3513
  address and an IPv4 literal has no leading zeros (which resolvers read as
  octal).

In both, a host made only of digits and dots must be a dotted-quad IPv4
literal with numbers up to 255 (the appendix's prose), not a DNS name.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "ServerName",
    "domain_of",
    "is_valid_server_address",
    "is_valid_server_name",
    "is_valid_user_id",
    "is_strictly_valid_user_id",
    "parse_server_name",
]

MAX_IDENTIFIER_BYTES = 255

# fullmatch, not match with "$": "$" also matches before a trailing newline.
# [0-9] and [A-Za-z] are ASCII only, unlike \d and str.isdigit.
_PORT_RE = re.compile(r"[0-9]{1,5}")
_IPV4_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DNS_RE = re.compile(r"[0-9A-Za-z.-]{1,255}")
_DIGITS_AND_DOTS_RE = re.compile(r"[0-9.]+")
_STRICT_LOCALPART_RE = re.compile(r"[a-z0-9._=/+-]+")


@dataclass(frozen=True)
class ServerName:
    """A server name split by the grammar. ``host`` of an IPv6 literal has no brackets."""

    host: str
    port: int | None
    is_ip: bool


def parse_server_name(name: object, *, reachable: bool = False) -> ServerName | None:
    """The parts of a server name, or None when it breaks the grammar (see the
    module's docstring for what ``reachable`` adds)."""
    if not isinstance(name, str):
        return None
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            return None
        host, rest = name[1:end], name[end + 1 :]
        if _IPV6_RE.fullmatch(host) is None:
            return None
        if reachable:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                return None
        is_ip = True
    else:
        host, sep, port_text = name.partition(":")
        rest = sep + port_text
        if _DNS_RE.fullmatch(host) is None:
            return None
        is_ip = _DIGITS_AND_DOTS_RE.fullmatch(host) is not None
        if is_ip:
            if _IPV4_RE.fullmatch(host) is None or any(int(p) > 255 for p in host.split(".")):
                return None
            if reachable and any(len(p) > 1 and p.startswith("0") for p in host.split(".")):
                return None
    port: int | None = None
    if rest:
        if not rest.startswith(":") or _PORT_RE.fullmatch(rest[1:]) is None:
            return None
        port = int(rest[1:])
        if reachable and not 1 <= port <= 65535:
            return None
    return ServerName(host, port, is_ip)


def domain_of(identifier: str) -> str:
    """The server name part of ``&localpart:domain``.

    Splits on the *first* colon: localparts cannot contain one, while the
    server name may (port, IPv6 literal).
    """
    _, sep, domain = identifier.partition(":")
    if not sep:
        raise ValueError(f"Identifier has no domain: {identifier!r}")
    return domain


def is_valid_server_name(server_name: object) -> bool:
    """The grammar, as the auth rules apply it to IDs inside events."""
    return parse_server_name(server_name) is not None


def is_valid_server_address(server_name: object) -> bool:
    """A server name this server may connect to or be connected from: the grammar,
    an explicit port that is a real TCP port (1 to 65535) and a real IP literal.

    Kept apart from :func:`is_valid_server_name`, which the auth rules apply to
    user IDs inside events: other servers accept ``:99999`` there, and refusing
    such an event would fork the room. A request's origin or a destination is
    different: it must name a reachable server.
    """
    return parse_server_name(server_name, reachable=True) is not None


def is_valid_user_id(user_id: object) -> bool:
    """Historical user ID grammar: what a server must accept over federation.

    Any localpart without ``:`` or NUL (even empty) is tolerated; the server
    name must be well formed and the whole ID at most 255 bytes.
    """
    if not isinstance(user_id, str) or not user_id.startswith("@"):
        return False
    try:
        encoded = user_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if len(encoded) > MAX_IDENTIFIER_BYTES:
        return False
    localpart, sep, server_name = user_id[1:].partition(":")
    if not sep or "\x00" in localpart:
        return False
    return is_valid_server_name(server_name)


def is_strictly_valid_user_id(user_id: object) -> bool:
    """The current grammar, which new local users must satisfy."""
    if not is_valid_user_id(user_id):
        return False
    assert isinstance(user_id, str)
    localpart = user_id[1:].partition(":")[0]
    return _STRICT_LOCALPART_RE.fullmatch(localpart) is not None
