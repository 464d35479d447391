"""GET /events: the deprecated event stream, and its peeking form with `room_id`.

Older clients and tools listen with it after GET /initialSync, whose `end`
token it continues from; the peeking form follows one world-readable room the
user is not in. Tokens are room stream positions, the same as /messages'.

A request reads the events after its token in the rooms it follows (the
user's joined rooms, or the one peeked room), through each room's history
visibility. With nothing to return it waits, like /sync, registered *before*
it looks: on the notifier for the user's own rooms, and here per room for
peeks, since a peeker is no member whom the notifier would wake.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.sync.notifier import Notifier, Waiter

if TYPE_CHECKING:
    from homeserver.rooms.visibility import RoomAccess

#: At most this many events per answer; the client continues from `end`.
MAX_EVENTS = 100


class Rooms(Protocol):
    async def rooms_for_user(self, user_id: str, memberships: tuple[str, ...] = ("join",)) -> list[str]: ...
    async def find_room(self, room_id: str) -> RoomRecord | None: ...


class Access(Protocol):
    async def room_access(self, user_id: str, room: RoomRecord | None) -> RoomAccess: ...
    def viewer(self, user_id: str, room: RoomRecord) -> Any: ...


class History(Protocol):
    async def paginate(
        self, room: RoomRecord, viewer: Any, access: RoomAccess, *, from_pos: int, backwards: bool,
        limit: int, to_pos: int | None = None,
    ) -> Any: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...


class LegacyEventStream:
    def __init__(
        self, *, rooms: Rooms, access: Access, history: History, notifier: Notifier, clock: Clock,
        current_position: Any,
    ) -> None:
        self.rooms = rooms
        self.access = access
        self.history = history
        self.notifier = notifier
        self.clock = clock
        self.current_position = current_position  # () -> the room stream's position now
        self._peekers: dict[int, set[Waiter]] = {}

    def on_room_event(self, event: StoredEvent, room: RoomRecord) -> None:
        """A room service listener: wakes the requests peeking into the room."""
        for waiter in self._peekers.get(room.room_nid, ()):
            waiter.wake()

    @contextmanager
    def _waiting(self, user_id: str, peeked: RoomRecord | None) -> Iterator[Waiter]:
        waiter = self.notifier.register(user_id)
        if peeked is not None:
            self._peekers.setdefault(peeked.room_nid, set()).add(waiter)
        try:
            yield waiter
        finally:
            self.notifier.unregister(waiter)
            if peeked is not None:
                waiting = self._peekers.get(peeked.room_nid)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._peekers[peeked.room_nid]

    async def _followed(self, user_id: str, peeked: RoomRecord | None) -> list[tuple[RoomRecord, RoomAccess]]:
        if peeked is not None:
            return [(peeked, await self.access.room_access(user_id, peeked))]
        out = []
        for room_id in await self.rooms.rooms_for_user(user_id):
            room = await self.rooms.find_room(room_id)
            if room is not None:
                out.append((room, await self.access.room_access(user_id, room)))
        return out

    async def _read(
        self, user_id: str, followed: list[tuple[RoomRecord, RoomAccess]], from_pos: int, now: int
    ) -> tuple[list[tuple[RoomRecord, StoredEvent]], int]:
        """Events in (from_pos, now] of the followed rooms, oldest first, at most
        MAX_EVENTS; and the position the next request continues from."""
        found: list[tuple[RoomRecord, StoredEvent]] = []
        for room, access in followed:
            page = await self.history.paginate(
                room, self.access.viewer(user_id, room), access, from_pos=from_pos, backwards=False,
                limit=MAX_EVENTS, to_pos=now,
            )
            found.extend((room, ev) for ev in page.events)
        found.sort(key=lambda pair: pair[1].stream_ordering or 0)
        if len(found) > MAX_EVENTS:
            found = found[:MAX_EVENTS]
            return found, found[-1][1].stream_ordering or from_pos
        return found, max(now, from_pos)

    async def events(
        self, user_id: str, *, from_pos: int | None, timeout_ms: int, peeked: RoomRecord | None
    ) -> tuple[list[tuple[RoomRecord, StoredEvent]], int, int]:
        """(events with their rooms, start, end): what happened after `from_pos`
        (default: now), waiting up to `timeout_ms` for something to happen."""
        start = self.current_position() if from_pos is None else from_pos
        deadline = self.clock.monotonic() + timeout_ms / 1000
        while True:
            # Registered before the look, so a change during it still wakes the wait.
            with self._waiting(user_id, peeked) as waiter:
                now = self.current_position()
                found, end = await self._read(user_id, await self._followed(user_id, peeked), start, now)
                remaining = deadline - self.clock.monotonic()
                if found or remaining <= 0 or not await waiter.wait(remaining):
                    return found, start, end
