"""The head of each room's DAG: its forward extremities and the state after them.

Kept in memory (every event built or received reads it) and loaded lazily from
the stores: with one extremity the state is that event's; with several it is
their resolved state, stored as the room head (``room_heads``) so it survives a
restart. Only the event writer (homeserver/rooms/persist.py) changes a head.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.records.rooms import RoomRecord
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore


@dataclass
class RoomHead:
    extremities: list[int]
    snapshot: int | None


class RoomHeads:
    def __init__(self, rooms: RoomStore, events: EventStore) -> None:
        self.rooms = rooms
        self.events = events
        self._heads: dict[int, RoomHead] = {}

    async def get(self, room: RoomRecord) -> RoomHead:
        head = self._heads.get(room.room_nid)
        if head is None:
            extremities = await self.rooms.forward_extremities(room.room_nid)
            snapshot = await self.rooms.head_snapshot(room.room_nid)  # several extremities, resolved
            if snapshot is None:
                events = await self.events.get_events_by_nid(extremities)
                newest = max(events.values(), key=lambda e: e.stream_ordering or 0, default=None)
                snapshot = newest.state_after if newest is not None else None
            # setdefault: a write that finished while we read must win over our older view.
            head = self._heads.setdefault(room.room_nid, RoomHead(extremities, snapshot))
        return head

    def set(self, room_nid: int, extremities: list[int], snapshot: int | None) -> None:
        self._heads[room_nid] = RoomHead(list(extremities), snapshot)

    def forget(self, room_nid: int) -> None:
        """Drop a room's head (its events were purged); the next read reloads it."""
        self._heads.pop(room_nid, None)
