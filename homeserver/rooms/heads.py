"""The head of each room's DAG: its forward extremities and the state after them.

Kept in memory (every event built or received reads it) and loaded lazily from
the stores: with one extremity the state is that event's; with several it is
their resolved state, stored as the room head (``room_heads``) so it survives a
restart. Only the event writer (homeserver/rooms/persist.py) changes a head.

A local event that changes no state may be *queued*: its write is in the
database's FIFO queue but not committed yet (the writer's pipeline, see
`EventPersister.queue_local_event`). The head then names it (`RoomHead.queued`)
so the room's next event can be built on it at once; everyone else asking for
the head (`get`) waits until the queued writes are settled, so only the sender
of the next local event ever sees an event that is not committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from homeserver.records.rooms import RoomRecord
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore


@dataclass
class QueuedEvent:
    """A local event whose write is queued, not yet committed."""

    event: dict[str, Any]
    # Its event nid, known once its transaction ran (the next event's transaction,
    # queued behind it, reads it from here); empty while unknown or when it failed.
    nid: list[int] = field(default_factory=list)
    # Completed once its write is settled (committed and the caches updated, or failed).
    settled: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class RoomHead:
    extremities: list[int]  # with `queued`: not known yet (the queued event is the one extremity)
    snapshot: int | None
    queued: QueuedEvent | None = None


class RoomHeads:
    def __init__(self, rooms: RoomStore, events: EventStore) -> None:
        self.rooms = rooms
        self.events = events
        self._heads: dict[int, RoomHead] = {}

    async def get(self, room: RoomRecord) -> RoomHead:
        """The room's committed head, once no queued write of the room is pending."""
        while True:
            head = self._heads.get(room.room_nid)
            if head is None or head.queued is None:
                break
            await asyncio.shield(head.queued.settled)
        if head is None:
            extremities = await self.rooms.forward_extremities(room.room_nid)
            snapshot = await self.rooms.head_snapshot(room.room_nid)  # several extremities, resolved
            if snapshot is None:
                events = await self.events.get_events_by_nid(extremities)
                newest = max(events.values(), key=lambda e: e.stream_ordering or 0, default=None)
                snapshot = newest.state_after if newest is not None else None
            # setdefault: a write that finished while we read must win over our older view.
            head = self._heads.setdefault(room.room_nid, RoomHead(extremities, snapshot))
            if head.queued is not None:  # queued meanwhile by a sender: wait for it
                return await self.get(room)
        return head

    async def preload(self, rooms: Iterable[RoomRecord]) -> None:
        """Load the heads of many rooms in a few reads (an initial sync's rooms), as
        `get` would one by one; heads known or written meanwhile win."""
        missing = [r.room_nid for r in rooms if r.room_nid not in self._heads]
        if not missing:
            return
        loaded = await self.rooms.heads_of_rooms(missing)
        unresolved = [nid for extremities, snapshot in loaded.values() if snapshot is None for nid in extremities]
        events = await self.events.get_events_by_nid(unresolved) if unresolved else {}
        for room_nid, (extremities, snapshot) in loaded.items():
            if snapshot is None:
                newest = max(
                    (events[n] for n in extremities if n in events), key=lambda e: e.stream_ordering or 0, default=None
                )
                snapshot = newest.state_after if newest is not None else None
            self._heads.setdefault(room_nid, RoomHead(extremities, snapshot))

    async def get_for_next(self, room: RoomRecord) -> RoomHead:
        """The head the room's next local event is built on, which may be a queued
        event. Only for the holder of the room's lock that will queue or write it."""
        head = self._heads.get(room.room_nid)
        return head if head is not None else await self.get(room)

    async def snapshot(self, room: RoomRecord) -> int | None:
        """The room's current state snapshot: queued events change no state, so this
        needs no wait for them."""
        head = self._heads.get(room.room_nid)
        return head.snapshot if head is not None else (await self.get(room)).snapshot

    def set(self, room_nid: int, extremities: list[int], snapshot: int | None) -> None:
        self._heads[room_nid] = RoomHead(list(extremities), snapshot)

    def queue(self, room_nid: int, queued: QueuedEvent, snapshot: int | None) -> None:
        """A local event's write was queued: the room's next event follows it."""
        self._heads[room_nid] = RoomHead([], snapshot, queued)

    def settle(self, room_nid: int, queued: QueuedEvent, nid: int | None, snapshot: int | None) -> None:
        """A queued write finished (`nid` None: it failed). Unless a later event was
        queued behind it (which settles after it and takes over), the head is now the
        committed event, or is reloaded from the database after a failure."""
        head = self._heads.get(room_nid)
        if head is not None and head.queued is queued:
            if nid is None:
                del self._heads[room_nid]
            else:
                self._heads[room_nid] = RoomHead([nid], snapshot)
        if not queued.settled.done():
            queued.settled.set_result(None)

    def forget(self, room_nid: int) -> None:
        """Drop a room's head (its events were purged); the next read reloads it."""
        self._heads.pop(room_nid, None)
