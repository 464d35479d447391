"""Mutual rooms (`GET /_matrix/client/v1/mutual_rooms`, Matrix v1.19): the rooms
both the requester and another user are joined to, in batches.

Rooms are listed in room ID order; a `next_batch` token names where the next
batch starts and when the first batch was made, and expires after
TOKEN_LIFETIME_MS (the spec asks for at least ten minutes), after which it is
refused like any invalid token. A token carries nothing secret: every batch is
computed from the requester's own joined rooms, whatever the token says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from homeserver import base64url
from homeserver.errors import invalid_param
from homeserver.identifiers import parse_user_id

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.rooms.service import RoomService

BATCH_SIZE = 100
TOKEN_LIFETIME_MS = 30 * 60 * 1000


def _encode(issued_ms: int, after: str) -> str:
    return base64url.encode(orjson.dumps([issued_ms, after]))


def _decode(token: str, now_ms: int) -> tuple[int, str]:
    try:
        issued, after = orjson.loads(base64url.decode(token))
        if type(issued) is not int or not isinstance(after, str):
            raise ValueError
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise invalid_param("Invalid 'from' token") from None
    if not issued <= now_ms < issued + TOKEN_LIFETIME_MS:
        raise invalid_param("The 'from' token has expired")
    return issued, after


class MutualRooms:
    def __init__(self, *, room_service: RoomService, clock: Clock) -> None:
        self.room_service = room_service
        self.clock = clock

    async def mutual_rooms(self, user_id: str, other: str, from_token: str | None) -> dict[str, Any]:
        if parse_user_id(other) is None:
            raise invalid_param(f"{other!r} is not a valid user ID")
        if other == user_id:
            raise invalid_param("'user_id' must be another user's ID")
        now = self.clock.time_ms()
        issued, after = _decode(from_token, now) if from_token is not None else (now, "")
        mine = set(await self.room_service.rooms_for_user(user_id))
        shared = sorted(mine.intersection(await self.room_service.rooms_for_user(other)))
        rest = [r for r in shared if r > after]
        out: dict[str, Any] = {"joined": rest[:BATCH_SIZE], "count": len(shared)}
        if len(rest) > BATCH_SIZE:
            out["next_batch"] = _encode(issued, rest[BATCH_SIZE - 1])
        return out
