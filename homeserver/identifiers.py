"""Identifier grammars from the spec's appendix (server names, user IDs).

Kept in one place because registration, login, profiles and federation all have
to agree on what a valid ID is.
"""

from __future__ import annotations

import ipaddress
import re

# fullmatch, not match with "$": "$" also matches before a trailing newline.
_HOSTNAME = re.compile(r"[A-Za-z0-9\-.]{1,255}")
_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
# Historical user IDs (received over federation) may use any printable ASCII but ':'.
_HISTORICAL_LOCALPART = re.compile(r"[\x21-\x39\x3b-\x7e]+")
MAX_USER_ID_BYTES = 255


def split_server_name(name: str) -> tuple[str, int | None] | None:
    """Split host and port; None when the name breaks the grammar."""
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            return None
        host, rest = name[1 : end], name[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
        host = f"[{host}]"
    else:
        host, sep, port_s = name.partition(":")
        rest = sep + port_s
        if not _HOSTNAME.fullmatch(host):
            return None
    if not rest:
        return host, None
    # isascii: str.isdigit alone admits digits such as "²" that int() refuses.
    if not rest.startswith(":") or not rest[1:].isascii() or not rest[1:].isdigit() or len(rest) > 6:
        return None
    port = int(rest[1:])
    if not 0 < port < 65536:
        return None
    return host, port


def is_valid_server_name(name: str) -> bool:
    return bool(name) and split_server_name(name) is not None


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
