"""Unread notification counts for /sync (and the push gateway's badge), read from
the stored push actions (homeserver/push/actions.py writes them with each event).

A count is the user's stored notifications in the room after their read receipt
(or their join), up to the stream position the response covers. Counts are kept
per (user, room) with the receipt position they start from and the position they
cover, so a sync only counts the rows that arrived since the last one; a new
receipt changes the start and forces one recount, and a redaction (which removes
rows) drops the room's cached counts. The rows since the last sync are counted
from the room's tally (sync/room_tallies.py) when one is given: read once for all
of a busy room's readers.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from homeserver.receipts import MAIN_THREAD
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.receipts import ReceiptService
    from homeserver.storage.push_actions import PushActionStore
    from homeserver.sync.room_tallies import RoomTallies

_CACHE_SIZE = 50_000


@dataclass
class _Counts:
    start: int  # counting begins after this stream position (the read receipt)
    upto: int  # rows up to here are counted
    notifications: int = 0
    highlights: int = 0


class UnreadCounter:
    def __init__(self, *, receipts: ReceiptService, store: PushActionStore, tallies: RoomTallies | None = None) -> None:
        self.receipts = receipts
        self.store = store
        self.tallies = tallies
        self._cache: OrderedDict[tuple[str, int], _Counts] = OrderedDict()

    async def counts(self, user_id: str, room: RoomRecord, joined_at: int, now: int) -> dict[str, int]:
        n, h = await self.room_counts(user_id, room, joined_at, now)
        return {"notification_count": n, "highlight_count": h}

    async def room_counts(self, user_id: str, room: RoomRecord, joined_at: int, now: int) -> tuple[int, int]:
        """(notifications, highlights) unread by the user in the room at position `now`."""
        start = joined_at
        read = await self.receipts.read_up_to(user_id, room.room_id)
        if read is not None:
            start = max(start, read)
        key = (user_id, room.room_nid)
        counts = self._cache.get(key)
        if counts is None or counts.start != start or counts.upto > now:
            counts = _Counts(start, start)
        if now > counts.upto:
            n, h = await self._count(user_id, room.room_nid, counts.upto, now)
            counts.notifications += n
            counts.highlights += h
            counts.upto = now
        self._cache[key] = counts
        self._cache.move_to_end(key)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return counts.notifications, counts.highlights

    async def _count(self, user_id: str, room_nid: int, after: int, upto: int) -> tuple[int, int]:
        if self.tallies is not None:
            return await self.tallies.counts(user_id, room_nid, after, upto)
        return await self.store.counts_for(user_id, room_nid, after, upto)

    def rows_removed(self, room_nid: int, user_ids: list[str]) -> None:
        """Stored rows went (a redaction): these users' counts in the room are recounted."""
        for user_id in user_ids:
            self._cache.pop((user_id, room_nid), None)
        if self.tallies is not None:
            self.tallies.rows_removed(room_nid)

    def forget_room(self, room_nid: int) -> None:
        """Drop the room's counts (a purged room)."""
        for key in [k for k in self._cache if k[1] == room_nid]:
            del self._cache[key]
        if self.tallies is not None:
            self.tallies.forget_room(room_nid)

    async def thread_counts(
        self, user_id: str, room: RoomRecord, joined_at: int, now: int
    ) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """Counts split per thread, for clients whose filter asks
        (unread_thread_notifications): the main timeline's, and each thread's by
        its root's event ID (threads with nothing unread left out). An unthreaded
        read receipt reads everything up to it; a threaded one its own thread
        ("main" for the main timeline) only."""
        unthreaded, by_thread = await self.receipts.read_positions(user_id, room.room_id)
        base = max(joined_at, unthreaded) if unthreaded is not None else joined_at
        found = await self.store.thread_counts(user_id, room.room_nid, base, now, by_thread)

        def shape(c: tuple[int, int]) -> dict[str, int]:
            return {"notification_count": c[0], "highlight_count": c[1]}

        main = shape(found.get(MAIN_THREAD, (0, 0)))
        threads = {t: shape(c) for t, c in found.items() if t != MAIN_THREAD and c[0]}
        return main, threads
