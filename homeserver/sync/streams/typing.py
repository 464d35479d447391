"""The typing stream: each joined room's m.typing event in `ephemeral`, when the
room's set of typing users changed since the token.

A change of a room's typing set wakes the room's local members.

Typing lives in memory and its positions restart from 0 with the server, so a
token from before a restart may be ahead of the current position: the stream
then counts as moved, and the typing service answers it like an initial sync.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from homeserver.records.rooms import RoomRecord
from homeserver.sync.streams.base import StreamProvider, SyncRequest

if TYPE_CHECKING:
    from homeserver.sync.notifier import Notifier
    from homeserver.typing import TypingService


class TypingStream(StreamProvider):
    key = "typing"
    in_rooms = True

    def __init__(
        self, typing: TypingService, notifier: Notifier, local_members: Callable[[RoomRecord], Awaitable[set[str]]]
    ) -> None:
        self.typing = typing
        self.notifier = notifier
        self.local_members = local_members
        typing.on_change.append(self._changed)

    async def _changed(self, room: RoomRecord) -> None:
        self.notifier.notify_users(await self.local_members(room))

    async def current_position(self) -> int:
        return self.typing.current_position()

    def position_now(self) -> int | None:
        return self.typing.current_position()

    def moved(self, req: SyncRequest) -> bool:
        return req.since is None or req.now.typing != req.since.typing

    def quiet_in(self, req: SyncRequest, room_id: str) -> bool:
        return self.typing.typing_events_since(room_id, req.since_pos(self.key)) is None

    async def room_part(self, req: SyncRequest, room: RoomRecord, membership: str) -> dict[str, list[dict[str, Any]]]:
        if membership != "join":
            return {}
        event = self.typing.typing_events_since(room.room_id, req.since_pos(self.key))
        if event is None or not req.filter.ephemeral.matches(event, room.room_id):
            return {}
        return {"ephemeral": [event]}
