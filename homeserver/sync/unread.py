"""Unread notification counts for /sync (and the push gateway's badge), read from
the stored push actions (homeserver/push/actions.py writes them with each event).

A count is the user's stored notifications in the room after their read receipt
(or their join), up to the stream position the response covers. Counts are kept
per (user, room) with the receipt position they start from and the position they
cover, so a sync only counts the rows that arrived since the last one; a new
receipt changes the start and forces one recount, and a redaction (which removes
rows) drops the room's cached counts.
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

_CACHE_SIZE = 50_000


@dataclass
class _Counts:
    start: int  # counting begins after this stream position (the read receipt)
    upto: int  # rows up to here are counted
    notifications: int = 0
    highlights: int = 0


class UnreadCounter:
    def __init__(self, *, receipts: ReceiptService, store: PushActionStore) -> None:
        self.receipts = receipts
        self.store = store
        self._cache: OrderedDict[tuple[str, int], _Counts] = OrderedDict()

    async def counts(self, user_id: str, room: RoomRecord, joined_at: int, now: int) -> dict[str, int]:
        n, h = await self.room_counts(user_id, room, joined_at, now)
        return {"notification_count": n, "highlight_count": h}

    async def room_counts(self, user_id: str, room: RoomRecord, joined_at: int, now: int) -> tuple[int, int]:
        """(notifications, highlights) unread by the user in the room at position `now`."""
        counts = await self._from_cache(user_id, room, joined_at, now)
        if now > counts.upto:
            self._add(counts, await self.store.counts_for(user_id, room.room_nid, counts.upto, now), now)
        self._keep((user_id, room.room_nid), counts)
        return counts.notifications, counts.highlights

    async def preload(self, user_id: str, rooms: list[tuple[RoomRecord, int]], now: int) -> None:
        """Count many rooms (room, joined at) at once, as `room_counts` would one by one
        (an initial sync shows every room's counts): the read receipts in one read, the
        rows to count in another."""
        await self.receipts.preload_read_up_to(user_id, [room.room_id for room, _ in rooms])
        due: dict[int, _Counts] = {}
        for room, joined_at in rooms:
            counts = await self._from_cache(user_id, room, joined_at, now)
            if now > counts.upto:
                due[room.room_nid] = counts
            else:
                self._keep((user_id, room.room_nid), counts)
        if due:
            found = await self.store.counts_in_rooms(user_id, {nid: c.upto for nid, c in due.items()}, now)
            for nid, counts in due.items():
                self._add(counts, found[nid], now)
                self._keep((user_id, nid), counts)

    async def _from_cache(self, user_id: str, room: RoomRecord, joined_at: int, now: int) -> _Counts:
        """The cached counts if they still start at the user's read position and are not
        ahead of `now`, else zero counts from that position."""
        start = joined_at
        read = await self.receipts.read_up_to(user_id, room.room_id)
        if read is not None:
            start = max(start, read)
        counts = self._cache.get((user_id, room.room_nid))
        if counts is None or counts.start != start or counts.upto > now:
            counts = _Counts(start, start)
        return counts

    @staticmethod
    def _add(counts: _Counts, found: tuple[int, int], now: int) -> None:
        counts.notifications += found[0]
        counts.highlights += found[1]
        counts.upto = now

    def _keep(self, key: tuple[str, int], counts: _Counts) -> None:
        self._cache[key] = counts
        self._cache.move_to_end(key)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def rows_removed(self, room_nid: int, user_ids: list[str]) -> None:
        """Stored rows went (a redaction): these users' counts in the room are recounted."""
        for user_id in user_ids:
            self._cache.pop((user_id, room_nid), None)

    def forget_room(self, room_nid: int) -> None:
        """Drop the room's counts (a purged room)."""
        for key in [k for k in self._cache if k[1] == room_nid]:
            del self._cache[key]

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
