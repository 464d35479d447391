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

The rows of new events are usually not read at all: the push actions' writer tells
them (`written`, from inside the event's transaction, push/actions.py), keyed by
the event and its stream position. A position is never handed out twice, so an
entry whose transaction rolled back is never asked for, and what the window says
the range holds (it is told after the commit) is looked up there. Only when every
event of the range was told is the read skipped: the readers woken by a send then
count without waiting for the database (the read was two hops to a reader thread,
waiting for the loop behind every other woken reader). A redaction drops the room's
told rows with its tally.

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

from homeserver.storage.push_actions import EventNotifications

if TYPE_CHECKING:
    from homeserver.records.events import StoredEvent
    from homeserver.rooms.recent import RecentEvents
    from homeserver.storage.push_actions import PushActionStore

_PER_ROOM = 65_536
_MAX_ROWS = 262_144
_TOLD = 8_192  # events whose rows the writer told, newest kept


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
        # (event nid, position) -> (room nid, rows per user, room-wide row), as written
        self._told: OrderedDict[tuple[int, int], tuple[int, dict[str, bool | None], tuple[str, bool] | None]]
        self._told = OrderedDict()
        self.hits = 0  # counts answered from a tally, without a query of their own
        self.misses = 0  # counts the caller made in the database
        self.told_grows = 0  # tallies grown from what the writer told, without a read

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "rooms": len(self._rooms), "entries": self._rows}

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
        found = None
        if events:
            found = self._rows_told(events)
            if found is None:
                found = await self.store.rows_for_events([e.nid for e in events])
            else:
                self.told_grows += 1
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

    def written(
        self, room_nid: int, event_nid: int, position: int, users: dict[str, bool | None],
        room_wide: tuple[str, bool] | None,
    ) -> None:
        """The rows an event's transaction stored (push/actions.py `RowsListener`)."""
        self._told[(event_nid, position)] = (room_nid, users, room_wide)
        while len(self._told) > _TOLD:
            self._told.popitem(last=False)

    def _rows_told(self, events: list[StoredEvent]) -> EventNotifications | None:
        """The events' rows as `rows_for_events` reads them, when each was told."""
        out = EventNotifications([], [])
        for e in events:
            position = e.stream_ordering
            told = self._told.get((e.nid, position)) if position is not None else None
            if told is None or position is None:
                return None
            _, users, wide = told
            out.users.extend((position, u, bool(h), h is not None) for u, h in users.items())
            if wide is not None:
                out.room_wide.append((position, *wide))
        return out

    def _drop(self, room_nid: int) -> None:
        tally = self._rooms.pop(room_nid, None)
        if tally is not None:
            self._rows -= tally.rows

    def rows_removed(self, room_nid: int) -> None:
        """Stored rows of the room went (a redaction): its tally is read afresh."""
        self._removals[room_nid] = self._removals.get(room_nid, 0) + 1
        self._drop(room_nid)
        for key in [k for k, told in list(self._told.items()) if told[0] == room_nid]:
            self._told.pop(key, None)

    def forget_room(self, room_nid: int) -> None:
        self._drop(room_nid)
