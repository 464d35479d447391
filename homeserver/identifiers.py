"""Identifier grammars from the spec's appendix (server names, user IDs).

Kept in one place because registration, login, profiles and federation all have
to agree on what a valid ID is.
"""

from __future__ import annotations

import re

from federation.events.identifiers import is_valid_server_address

# fullmatch, not match with "$": "$" also matches before a trailing newline.
_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
# Historical user IDs (received over federation) may use any printable ASCII but ':'.
_HISTORICAL_LOCALPART = re.compile(r"[\x21-\x39\x3b-\x7e]+")
MAX_USER_ID_BYTES = 255


def is_valid_server_name(name: str) -> bool:
    """A server name as this server accepts one from its users, admins and config:
    the appendix grammar as a server address (port 1 to 65535, real IP literals).
    The grammar and its looser form for IDs inside events live in
    `federation.events.identifiers`."""
    return is_valid_server_address(name)


def domain_is(identifier: str, server_name: str) -> bool:
    """Whether an ID (`@user:domain`, `#alias:domain`, `!room:domain`) belongs to
    `server_name`. The domain is everything after the FIRST colon: localparts
    cannot contain one, while a server name may (a port, an IPv6 literal), so
    `endswith(":" + server_name)` is not the same test."""
    _, sep, domain = identifier.partition(":")
    return bool(sep) and domain == server_name


class LocalServer:
    """This server's name, and the one answer to "is this ID ours?"."""

    __slots__ = ("server_name",)

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name

    def is_mine(self, identifier: str) -> bool:
        """Whether a user ID (or alias, or room ID) was made by this server."""
        return domain_is(identifier, self.server_name)


def is_valid_localpart(localpart: str) -> bool:
    """The grammar for new user IDs: lower-case letters, digits and ._=-/+."""
    return bool(_LOCALPART.fullmatch(localpart))


def parse_user_id(user_id: str) -> tuple[str, str] | None:
    """(localpart, server_name) of a syntactically valid user ID, or None."""
    if not isinstance(user_id, str) or not user_id.startswith("@"):
        return None
    if len(user_id.encode("utf-8")) > MAX_USER_ID_BYTES:
        return None
    localpart, sep, server = user_id[1:].partition(":")
    if not sep or not localpart or not _HISTORICAL_LOCALPART.fullmatch(localpart):
        return None
    if not is_valid_server_name(server):
        return None
    return localpart, server


def make_user_id(localpart: str, server_name: str) -> str:
    return f"@{localpart}:{server_name}"


# Device IDs: the spec leaves their grammar open (clients choose them), so any text is
# accepted except what breaks storage, logs and other servers' parsers: the length is
# that of the appendix's opaque identifiers (1 to 255 characters), and control
# characters (NUL, newlines, C0, DEL, C1) are refused.
MAX_DEVICE_ID_LENGTH = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def is_valid_device_id(device_id: object) -> bool:
    return (
        isinstance(device_id, str)
        and 0 < len(device_id) <= MAX_DEVICE_ID_LENGTH
        and _CONTROL.search(device_id) is None
    )
