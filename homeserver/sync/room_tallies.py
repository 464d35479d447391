"""A busy room's recent notifications per stream position, read once for all of
its readers (the unread counts of incremental syncs, sync/unread.py).

When an event lands in a room with hundreds of long-polling members, it moves the
unread counts of every one of them at once, and each of their syncs would count
its own new rows in the database: one query per reader per event. Here the rows
of the new events are read once, by their event nids (taken from the room's window
of recent events, rooms/recent.py, and looked up through the index on `event_nid`),
and kept per position; each reader adds up its own entries in memory.

A room-wide row counts for every reader but its sender and the users with a row of
their own for the event: a reader's range starts at or after their join (the
caller counts from max(join, read receipt) of the membership current at `upto`),
so every reader was joined throughout the range it asks about.

Exactness rests on the same rule as the window of recent events: a reader only asks
up to the event stream's current position, and a notification is written in its
event's own transaction, so no row can later appear in a range already read. Rows
only go by a redaction, which drops the room's tally (`rows_removed`). A reader
whose range starts before what is kept (or spans more than the window keeps)
counts in the database as before.

The event writer also tells the tallies the rows it writes for each live event
(`told`, from the push actions index inside the event's transaction), so the readers
woken by a send count from memory without a read. An entry is trusted only for the
event found committed at its position (the window of recent events names it): a
transaction that fails leaves an entry nobody asks for, and one that is run again
tells its rows again. Positions are never reused, and a redaction forgets every entry.
Only rooms a reader counted are told (`told`: a room that no sync counts would have
its entries wait for nobody); entries nobody takes go oldest first beyond
`_MAX_TOLD`.

Bounded: `per_room` rows per room (the oldest positions go first; enough for a
room of thousands of readers to keep the last several seconds of a busy stream, so a
reader lagging behind still counts from memory), `max_rows` in all (the least
recently read rooms dropped first).
"""

from __future__ import annotations

import asyncio
import bisect
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from homeserver.records.events import StoredEvent
from homeserver.storage.push_actions import EventNotifications

if TYPE_CHECKING:
    from homeserver.rooms.recent import RecentEvents
    from homeserver.storage.push_actions import PushActionStore

_PER_ROOM = 65_536
_MAX_ROWS = 262_144
# Events whose rows the writer told and no reader took yet; an event with more rows
# than _MAX_TOLD_ROWS is not kept (its readers read them).
_MAX_TOLD = 4_096
_MAX_TOLD_ROWS = 1_024
# Rooms followed for a reader's next sync without a tally yet (`follow`).
_MAX_FOLLOWED = 4_096


@dataclass
class _Tally:
    """Every notification of a room at stream positions in (lo, hi]: `positions`
    ascending (only those with a notification); `users[i]` the users with a row of
    their own at `positions[i]` (whether it highlights, None: an exception that only
    hides the room-wide row), `wide[i]` the room-wide row there (its sender, whether
    it highlights) if any."""

    lo: int
    hi: int
    positions: list[int] = field(default_factory=list)
    users: list[dict[str, bool | None]] = field(default_factory=list)
    wide: list[tuple[str, bool] | None] = field(default_factory=list)
    rows: int = 0
    growing: asyncio.Future[None] | None = None  # the read in progress, if any


class RoomTallies:
    def __init__(
        self, store: PushActionStore, recent: RecentEvents, *, per_room: int = _PER_ROOM, max_rows: int = _MAX_ROWS
    ) -> None:
        self.store = store
        self.recent = recent
        self.per_room = per_room
        self.max_rows = max_rows
        self._rooms: OrderedDict[int, _Tally] = OrderedDict()
        self._rows = 0  # rows kept in all rooms
        self._removals: dict[int, int] = {}  # room nid -> rows_removed calls (guards a read)
        # position -> (event nid, its rows) as the writer told them, oldest first. Told
        # from the writer's thread on SQLite: only single (atomic) dictionary operations.
        self._told: OrderedDict[int, tuple[int, EventNotifications]] = OrderedDict()
        # rooms an initial sync counted, most recent last (`follow`)
        self._followed: dict[int, None] = {}
        self.hits = 0  # counts answered from a tally, without a query of their own
        self.misses = 0  # counts the caller made in the database
        self.told_hits = 0  # events whose rows were taken from what the writer told

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "told_hits": self.told_hits,
                "rooms": len(self._rooms), "entries": self._rows}

    def told(self, room_nid: int, position: int, event_nid: int, rows: EventNotifications | None) -> None:
        """The writer's transaction wrote `rows` for the event at `position` (None: it is
        writing that position anew, forget what was told). See the module docstring.

        Kept only for a room a reader counted (it has a tally, or an initial sync
        counted it: `follow`): only a tally's growth takes an entry, and a room without one
        would have its entries wait, unread, until `_MAX_TOLD` newer ones push them out
        (some 400 bytes each: 1.7 MB of the 50 x 100 benchmark's sends, into rooms nobody
        synced yet). A tally made meanwhile reads the rows it was not told."""
        if (
            rows is None or len(rows.users) > _MAX_TOLD_ROWS
            or (room_nid not in self._rooms and room_nid not in self._followed)
        ):
            self._told.pop(position, None)
            return
        self._told[position] = (event_nid, rows)
        while len(self._told) > _MAX_TOLD:
            self._told.popitem(last=False)

    def follow(self, room_nid: int) -> None:
        """A reader counted the room without its tally (an initial sync counts in the
        database): the rows of its events from now on are told (`told`), for the
        reader's next, incremental, sync, whose tally then starts without a read."""
        followed = self._followed
        followed.pop(room_nid, None)
        followed[room_nid] = None
        if len(followed) > _MAX_FOLLOWED:
            del followed[next(iter(followed))]

    async def counts(self, user_id: str, room_nid: int, after: int, upto: int) -> tuple[int, int]:
        """The user's (notifications, highlights) in the room at positions in (after, upto]."""
        found = await self._from_tally(user_id, room_nid, after, upto)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        return await self.store.counts_for(user_id, room_nid, after, upto)

    async def warm(self, room_nid: int, after: int, upto: int) -> None:
        """Read the room's notifications in (after, upto] now, for the readers woken
        with this one: their counts are then added up in memory, without a wait."""
        await self._covering(room_nid, after, upto)

    async def _from_tally(self, user_id: str, room_nid: int, after: int, upto: int) -> tuple[int, int] | None:
        if upto <= after:
            return (0, 0)
        tally = await self._covering(room_nid, after, upto)
        if tally is None:
            return None
        n = h = 0
        start, end = bisect.bisect_right(tally.positions, after), bisect.bisect_right(tally.positions, upto)
        for notified, wide in zip(tally.users[start:end], tally.wide[start:end], strict=True):
            if user_id in notified:
                highlight = notified[user_id]
            elif wide is not None and wide[0] != user_id:
                highlight = wide[1]
            else:
                continue
            if highlight is not None:
                n += 1
                h += highlight
        return n, h

    async def _covering(self, room_nid: int, after: int, upto: int) -> _Tally | None:
        """The room's tally, grown to hold (after, upto]; None when it cannot."""
        if after < 1 or upto <= after:  # an initial sync's whole history; or nothing to count
            return None
        tally = self._rooms.get(room_nid)
        if tally is None:
            tally = self._rooms[room_nid] = _Tally(lo=after, hi=after)
        else:
            self._rooms.move_to_end(room_nid)
        while upto > tally.hi and after >= tally.lo:
            if tally.growing is not None:
                # The readers woken together wait for one read, and all wake when it is
                # done (a lock would hand itself on to them one loop turn at a time).
                await asyncio.shield(tally.growing)
                if self._rooms.get(room_nid) is not tally:
                    return None
                continue
            tally.growing = asyncio.get_running_loop().create_future()
            try:
                grown = await self._grow(room_nid, tally, upto)
            finally:
                tally.growing.set_result(None)
                tally.growing = None
            if not grown:
                return None
        if not (tally.lo <= after and upto <= tally.hi):
            return None
        return tally

    async def _grow(self, room_nid: int, tally: _Tally, upto: int) -> bool:
        """Read the room's notifications in (tally.hi, upto]; False when that cannot be
        done (more events than the room's window keeps, or rows removed meanwhile), the
        tally then starting afresh at `upto`."""
        removals = self._removals.get(room_nid, 0)
        events = await self.recent.between(room_nid, tally.hi, upto)
        found = await self._rows_of(events) if events else None
        if events is None or self._removals.get(room_nid, 0) != removals or self._rooms.get(room_nid) is not tally:
            if self._rooms.get(room_nid) is tally:
                self._rows -= tally.rows
            tally.lo = tally.hi = upto
            tally.positions.clear()
            tally.users.clear()
            tally.wide.clear()
            tally.rows = 0
            return False
        by_position: dict[int, dict[str, bool | None]] = {}
        wide: dict[int, tuple[str, bool]] = {}
        added = 0
        if found is not None:
            for position, user_id, highlight, notify in found.users:
                by_position.setdefault(position, {})[user_id] = highlight if notify else None
            for position, sender, highlight in found.room_wide:
                wide[position] = (sender, highlight)
            added = len(found.users) + len(found.room_wide)
        for position in sorted(by_position.keys() | wide.keys()):
            tally.positions.append(position)
            tally.users.append(by_position.get(position, {}))
            tally.wide.append(wide.get(position))
        tally.rows += added
        self._rows += added
        tally.hi = upto
        while tally.rows > self.per_room:
            tally.lo = tally.positions.pop(0)
            dropped = len(tally.users.pop(0)) + (tally.wide.pop(0) is not None)
            tally.rows -= dropped
            self._rows -= dropped
        while self._rows > self.max_rows and len(self._rooms) > 1:
            oldest = next(iter(self._rooms))
            if oldest == room_nid:
                self._rooms.move_to_end(room_nid)
                continue
            self._drop(oldest)
        return True

    async def _rows_of(self, events: list[StoredEvent]) -> EventNotifications:
        """The events' rows: those the writer told, and the others read."""
        users: list[tuple[int, str, bool, bool]] = []
        wide: list[tuple[int, str, bool]] = []
        unknown: list[int] = []
        for event in events:
            entry = self._told.pop(event.stream_ordering, None) if event.stream_ordering is not None else None
            if entry is None or entry[0] != event.nid:
                unknown.append(event.nid)
                continue
            users += entry[1].users
            wide += entry[1].room_wide
        self.told_hits += len(events) - len(unknown)
        if unknown:
            read = await self.store.rows_for_events(unknown)
            users += read.users
            wide += read.room_wide
        return EventNotifications(users, wide)

    def _drop(self, room_nid: int) -> None:
        tally = self._rooms.pop(room_nid, None)
        if tally is not None:
            self._rows -= tally.rows

    def rows_removed(self, room_nid: int) -> None:
        """Stored rows of the room went (a redaction): its tally is read afresh."""
        self._removals[room_nid] = self._removals.get(room_nid, 0) + 1
        self._drop(room_nid)
        self._told.clear()  # some told rows may be gone (rare: any room's, all at once)

    def forget_room(self, room_nid: int) -> None:
        self._drop(room_nid)
