"""Server access control lists (``m.room.server_acl``) as a pure decision.

The server-server spec requires every room-scoped federation endpoint (state,
backfill, event_auth, get_missing_events, joins, invites, ...) to refuse a
server the room's ACL denies. The rule lives here, apart from any storage, so
every endpoint applies exactly the same order of checks the event schema lists.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = ["server_allowed_by_acl", "strip_port"]


def strip_port(server_name: str) -> str:
    """The host part of a server name: ACLs are matched without the port."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end >= 0 else server_name
    return server_name.split(":", 1)[0]


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """The appendix's glob-style matching: ``*`` any run, ``?`` one character,
    case-insensitive, the whole name."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _matches_any(host: str, patterns: Any) -> bool:
    if not isinstance(patterns, list):
        return False
    return any(isinstance(p, str) and _glob(p).fullmatch(host) for p in patterns)


def server_allowed_by_acl(server_name: str, acl_content: Mapping[str, Any] | None) -> bool:
    """Whether ``server_name`` may take part in a room whose current
    ``m.room.server_acl`` content is ``acl_content`` (None: the room has none).

    Applied in the schema's order: no ACL allows; an IP literal is denied when
    ``allow_ip_literals`` is false; ``deny`` beats ``allow``; anything not
    allowed is denied (so an ACL without ``allow`` shuts everyone out).
    """
    if acl_content is None:
        return True
    host = strip_port(server_name)
    allow_ip = acl_content.get("allow_ip_literals", True)
    if not isinstance(allow_ip, bool):
        allow_ip = True
    if not allow_ip and _is_ip_literal(host):
        return False
    if _matches_any(host, acl_content.get("deny")):
        return False
    return _matches_any(host, acl_content.get("allow"))
