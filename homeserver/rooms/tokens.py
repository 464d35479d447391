"""Pagination and sync tokens.

A room pagination token names a position in the global event stream ("t123",
or "t-5" in history fetched by backfill, which is numbered below zero).
Sync tokens ("s123_...") start with the same position, so /messages accepts
the prev_batch of a /sync timeline.
"""

from __future__ import annotations

from homeserver.errors import MatrixError


def room_token(pos: int) -> str:
    return f"t{pos}"


def parse_stream_position(token: str) -> int:
    """The event stream position in a room (t...) or sync (s..._...) token."""
    if token[:1] in ("t", "s"):
        head = token[1:].split("_", 1)[0]
        # Room tokens go below zero in backfilled history (homeserver/federation/backfill.py).
        digits = head[1:] if token[0] == "t" and head.startswith("-") else head
        if digits.isascii() and digits.isdigit():  # str.isdigit alone admits "²", which int() refuses
            return int(head)
    raise MatrixError(400, "M_INVALID_PARAM", f"Invalid pagination token {token!r}")
