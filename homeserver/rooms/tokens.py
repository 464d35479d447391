"""Pagination and sync tokens.

A room pagination token names a position in the global event stream ("t123",
or "t-5" in history fetched by backfill, which is numbered below zero).
Sync tokens ("s123_...") start with the same position, so /messages accepts
the prev_batch of a /sync timeline.
"""

from __future__ import annotations

from homeserver.errors import MatrixError
from homeserver.params import INT64_MIN, try_parse_int


def room_token(pos: int) -> str:
    return f"t{pos}"


def parse_stream_position(token: str) -> int:
    """The event stream position in a room (t...) or sync (s..._...) token."""
    if token[:1] in ("t", "s"):
        head = token[1:].split("_", 1)[0]
        # Room tokens go below zero in backfilled history (homeserver/federation/backfill.py);
        # positions are 64-bit in the database, so anything beyond is no position at all.
        pos = try_parse_int(head, minimum=INT64_MIN if token[0] == "t" else 0)
        if pos is not None:
            return pos
    raise MatrixError(400, "M_INVALID_PARAM", f"Invalid pagination token {token!r}")
