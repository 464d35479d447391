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
        counts = self._current(user_id, room.room_nid, start, now)
        if now > counts.upto:
            frm = counts.upto
            n, h = await self._count(user_id, room.room_nid, frm, now)
            self._extend(counts, frm, n, h, now)
        return counts.notifications, counts.highlights

    async def room_counts_many(
        self, room: RoomRecord, joined_at: dict[str, int], now: int
    ) -> dict[str, tuple[int, int]]:
        """`room_counts` of many users of one room (each joined at its position): the
        receipts not cached and the counts to extend are each read in one query."""
        reads = await self.receipts.read_up_to_many(room.room_id, joined_at)
        found: dict[str, _Counts] = {}
        for user_id, joined in joined_at.items():
            read = reads.get(user_id)
            found[user_id] = self._current(user_id, room.room_nid, max(joined, read) if read is not None else joined, now)
        stale = {u: c.upto for u, c in found.items() if now > c.upto}
        if stale:
            more = await self.store.counts_after(room.room_nid, stale, now)
            for user_id in stale:
                self._extend(found[user_id], stale[user_id], *more.get(user_id, (0, 0)), now)
        return {u: (c.notifications, c.highlights) for u, c in found.items()}

    async def preload(self, user_id: str, rooms: list[tuple[RoomRecord, int]], now: int) -> None:
        """Count many rooms (room, joined at) at once, as `room_counts` would one by one
        (an initial sync shows every room's counts): the read receipts in one read, the
        rows to count in another."""
        await self.receipts.preload_read_up_to(user_id, [room.room_id for room, _ in rooms])
        due: dict[int, tuple[_Counts, int]] = {}
        for room, joined_at in rooms:
            read = await self.receipts.read_up_to(user_id, room.room_id)
            counts = self._current(user_id, room.room_nid, max(joined_at, read) if read is not None else joined_at, now)
            if now > counts.upto:
                due[room.room_nid] = (counts, counts.upto)
            if self.tallies is not None:
                self.tallies.follow(room.room_nid)
        if due:
            found = await self.store.counts_in_rooms(user_id, {nid: frm for nid, (_, frm) in due.items()}, now)
            for nid, (counts, frm) in due.items():
                self._extend(counts, frm, *found[nid], now)

    def _current(self, user_id: str, room_nid: int, start: int, now: int) -> _Counts:
        """The cached counts from `start` (new ones if the receipt moved), marked recent."""
        key = (user_id, room_nid)
        counts = self._cache.get(key)
        if counts is None or counts.start != start or counts.upto > now:
            counts = _Counts(start, start)
        self._cache[key] = counts
        self._cache.move_to_end(key)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return counts

    @staticmethod
    def _extend(counts: _Counts, frm: int, notifications: int, highlights: int, now: int) -> None:
        """Add the rows counted in (frm, now], unless another caller extended the same
        counts while this one was reading (they would be counted twice)."""
        if counts.upto != frm:
            return
        counts.notifications += notifications
        counts.highlights += highlights
        counts.upto = now

    async def warm(self, room_nid: int, after: int, upto: int) -> None:
        """Read now what the counts of the room's readers in (after, upto] will need
        (the room's tally), so that theirs are added up without a wait of their own."""
        if self.tallies is not None:
            await self.tallies.warm(room_nid, after, upto)

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
