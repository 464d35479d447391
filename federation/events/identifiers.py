"""Identifier grammar needed by the room protocol (appendices, "Identifier Grammar").

Only what the event rules depend on lives here: splitting a server name out
of an ID, and the user ID check the auth rules apply to power level ``users``
keys and v12 ``additional_creators``. The check is the *historical* grammar,
because the spec requires servers to keep accepting events from users whose
IDs predate the strict grammar; rejecting them would fork rooms.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "domain_of",
    "is_valid_server_address",
    "is_valid_server_name",
    "is_valid_user_id",
    "is_strictly_valid_user_id",
]

MAX_IDENTIFIER_BYTES = 255

_PORT = r"(?::[0-9]{1,5})?"
_IPV4 = r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"
_IPV6 = r"\[[0-9A-Fa-f:.]{2,45}\]"
_DNS = r"[0-9A-Za-z.-]{1,255}"
_SERVER_NAME_RE = re.compile(rf"(?:{_IPV4}|{_IPV6}|{_DNS}){_PORT}")
_STRICT_LOCALPART_RE = re.compile(r"[a-z0-9._=/+-]+")


def domain_of(identifier: str) -> str:
    """The server name part of ``&localpart:domain``.

    Splits on the *first* colon: localparts cannot contain one, while the
    server name may (port, IPv6 literal).
    """
    _, sep, domain = identifier.partition(":")
    if not sep:
        raise ValueError(f"Identifier has no domain: {identifier!r}")
    return domain


def is_valid_server_name(server_name: str) -> bool:
    if _SERVER_NAME_RE.fullmatch(server_name) is None:
        return False
    if server_name.startswith("["):
        return True
    host = server_name.rsplit(":", 1)[0] if ":" in server_name else server_name
    if re.fullmatch(r"[0-9.]+", host):
        parts = host.split(".")
        return len(parts) == 4 and all(int(p) <= 255 for p in parts)
    return True


def is_valid_server_address(server_name: str) -> bool:
    """A server name this server may connect to or be connected from: the grammar,
    and an explicit port (``1*5DIGIT`` in the grammar) that is a real TCP port,
    1 to 65535.

    Kept apart from :func:`is_valid_server_name`, which the auth rules apply to
    user IDs inside events: other servers accept ``:99999`` there, and refusing
    such an event would fork the room. A request's origin or a destination is
    different: it must name a reachable server.
    """
    if not isinstance(server_name, str) or not is_valid_server_name(server_name):
        return False
    tail = server_name.rsplit("]", 1)[-1] if server_name.startswith("[") else server_name
    if ":" not in tail:
        return True
    return 1 <= int(tail.rsplit(":", 1)[1]) <= 65535


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
