"""Media IDs, server names and ``mxc://`` URIs: the checks routes make before any
media service is asked (kept apart from the repository so that parsing them does not
load it: see `HomeServer.media`)."""

from __future__ import annotations

import re

MEDIA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# A server name per the appendix: hostname, IPv4 or [IPv6], optional port.
SERVER_NAME_RE = re.compile(
    r"^(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,255})(:[0-9]{1,5})?$"
)
MXC_RE = re.compile(r"^mxc://((?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,255})(?::[0-9]{1,5})?)/([A-Za-z0-9_-]{1,255})$")


def valid_media_id(media_id: str) -> bool:
    return bool(MEDIA_ID_RE.match(media_id))


def valid_server_name(server_name: str) -> bool:
    return bool(SERVER_NAME_RE.match(server_name))


def parse_mxc(uri: str) -> tuple[str, str] | None:
    """(server_name, media_id) of a well-formed ``mxc://`` URI, else None."""
    m = MXC_RE.match(uri) if isinstance(uri, str) else None
    return (m.group(1), m.group(2)) if m else None
