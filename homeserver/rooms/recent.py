"""Each busy room's newest events, in stream order, read once for all of its readers.

When an event lands in a room with hundreds of long-polling members, every one of
their /sync requests asks the same question: which of the room's events lie between
my token and now (for the timeline, and for the unread counts). Asked of the database
that is one read per reader per event; here it is one read per event for the room.

A room's window is an exact copy of the `room_stream` rows with stream positions in
(lo, hi]: every event of the room in that range, and nothing else. It grows forward
(and backward, for a reader whose token is older) by reading only the missing range,
under a lock of its own, so readers woken together wait for one read instead of issuing
theirs. Exactness rests on the event stream's rule (rooms/stream.py): a reader only
asks up to `StreamTracker.current`, and every position up to there is committed or
abandoned, so no event can later appear inside a range already read. Backfilled
events take positions at or below zero, never inside a window (which starts above
zero). The window holds event nids only: the events themselves come from the event
cache, which the writer keeps current when an event is redacted.

The writer also tells the window of each event it places in a room's timeline
(`placed`), after the commit and before the event's position is finished. Every
position up to a reader's `upto` is finished, so every event of the room in
(hi, upto] has been told by then: the window grows forward from what it was told,
with no read, and a woken reader's timeline costs no database round trip. That holds
only for events told while the window existed; one told before (or while the window
was dropped) sets the window's `told_after`, and the window reads the database until
its `hi` is past it.

Bounded: at most `per_room` events per room (the oldest are dropped and `lo` moves
up), and the least recently used rooms beyond `max_rooms` are dropped whole.

Each room also has a generation (`generation`), moved by every event placed in it
(backfilled ones, at positions at or below zero, too) and by the room's purge: what
was computed from the room's events under one generation (an initial sync's section,
sync/initial_sections.py) is stale under the next.
"""

from __future__ import annotations

import asyncio
import bisect
import operator
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from homeserver.records.events import StoredEvent

if TYPE_CHECKING:
    from homeserver.storage.events import EventStore

_PER_ROOM = 512
_MAX_ROOMS = 2_000
# A range longer than this is read from the database by its reader, not kept.
_MAX_READ = 256
# Rooms whose newest placed position is remembered while they have no window.
_MAX_UNTRACKED = 10_000
_MAX_NID = 2**63
# Rooms whose generation is kept; beyond, all are forgotten and the epoch moves (so
# every room's generation changes).
_MAX_GENERATIONS = 100_000
_EPOCH_SHIFT = 40
_POSITION = operator.attrgetter("stream_ordering")


@dataclass
class _Window:
    lo: int
    hi: int
    positions: list[int] = field(default_factory=list)  # ascending stream positions
    nids: list[int] = field(default_factory=list)  # same order
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Events told by the writer beyond `hi`: (position, nid), ascending.
    told: list[tuple[int, int]] = field(default_factory=list)
    # Positions up to here may hold events the window was not told of: until `hi`
    # reaches it, growing forward reads the database.
    told_after: int = 0


class RecentEvents:
    def __init__(self, events: EventStore, *, per_room: int = _PER_ROOM, max_rooms: int = _MAX_ROOMS) -> None:
        self.events = events
        self.per_room = per_room
        self.max_rooms = max_rooms
        self._rooms: OrderedDict[int, _Window] = OrderedDict()
        self.hits = 0  # ranges answered without reading the database
        self.misses = 0  # ranges that needed a read (shared by the readers waiting on it)
        self.bypassed = 0  # ranges outside what a window keeps, read by their reader
        self.told_hits = 0  # ranges answered from what the writer told, without a read
        # room nid -> highest position placed while the room had no window; beyond
        # _MAX_UNTRACKED rooms, folded into `_untracked_floor` (for every room).
        self._untracked: dict[int, int] = {}
        self._untracked_floor = _MAX_NID  # until `follow_writer`: no window trusts what it is told
        self._generations: dict[int, int] = {}
        self._epoch = 0

    def generation(self, room_nid: int) -> int:
        """A number that changes whenever an event is placed in the room or it is purged."""
        return (self._epoch << _EPOCH_SHIFT) | self._generations.get(room_nid, 0)

    def _bump(self, room_nid: int) -> None:
        self._generations[room_nid] = self._generations.get(room_nid, 0) + 1
        if len(self._generations) > _MAX_GENERATIONS:
            self._generations.clear()
            self._epoch += 1

    def forget_room(self, room_nid: int) -> None:
        """Drop a purged room's window."""
        self._rooms.pop(room_nid, None)
        self._bump(room_nid)

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "bypassed": self.bypassed,
                "told_hits": self.told_hits, "rooms": len(self._rooms)}

    def follow_writer(self) -> None:
        """From now on the writer tells `placed` of every event it places (RoomActivity
        calls this as it takes the window): windows made from now on may grow from it."""
        if self._untracked_floor == _MAX_NID:
            self._untracked_floor = 0

    def placed(self, room_nid: int, pos: int, nid: int) -> None:
        """The writer committed an event of the room at stream position `pos`; called
        before `pos` is finished (see the module docstring), for every event that takes
        a place in a room's timeline."""
        self._bump(room_nid)
        if pos < 1:
            return  # backfilled: below every window
        window = self._rooms.get(room_nid)
        if window is None:
            self._untracked[room_nid] = max(self._untracked.get(room_nid, 0), pos)
            if len(self._untracked) > _MAX_UNTRACKED:
                self._untracked_floor = max(self._untracked_floor, *self._untracked.values())  # a cap on memory
                self._untracked.clear()
            return
        if pos <= window.hi:
            return  # a read already covered it
        if len(window.told) >= self.per_room:  # nobody reads the room: stop keeping them
            window.told_after = max(window.told_after, pos, window.told[-1][0])
            window.told.clear()
            return
        bisect.insort(window.told, (pos, nid))

    def _new_window(self, room_nid: int, lo: int, hi: int) -> _Window:
        window = _Window(lo=lo, hi=hi)
        window.told_after = max(self._untracked_floor, self._untracked.pop(room_nid, 0))
        self._rooms[room_nid] = window
        if len(self._rooms) > self.max_rooms:
            self._rooms.popitem(last=False)
        return window

    def _grow(self, window: _Window, upto: int, events: list[tuple[int, int]]) -> None:
        """Extend the window forward to `upto` with the room's events in (hi, upto]."""
        for pos, nid in events:
            window.positions.append(pos)
            window.nids.append(nid)
        window.hi = upto
        cut = bisect.bisect_right(window.told, (upto, _MAX_NID))
        del window.told[:cut]
        excess = len(window.positions) - self.per_room
        if excess > 0:
            window.lo = window.positions[excess - 1]
            del window.positions[:excess]
            del window.nids[:excess]

    def seed(self, room_nid: int, after: int, upto: int, events: list[StoredEvent]) -> None:
        """Start a room's window from a read its caller made: `events` are all of the
        room's events in (after, upto] (a timeline's page read newest first, as
        complete as its range). Only a room without a window is seeded."""
        if room_nid in self._rooms or upto <= after:
            return
        lo = max(after, 0)
        # Every event kept has a position above zero: sorted by it with no key function
        # of ours (an initial sync seeds every room it reads, a dozen events each).
        ordered = sorted([e for e in events if (e.stream_ordering or 0) > lo], key=_POSITION)[-self.per_room:]
        if len(ordered) == self.per_room:
            lo = (ordered[0].stream_ordering or 1) - 1
        window = self._new_window(room_nid, lo, upto)
        window.positions = [e.stream_ordering or 0 for e in ordered]
        window.nids = [e.nid for e in ordered]

    async def between(self, room_nid: int, after: int, upto: int) -> list[StoredEvent] | None:
        """The room's events with stream positions in (after, upto], oldest first, as
        `EventStore.room_stream` reads them; None when the range is not one a window
        keeps (the caller reads it itself)."""
        if upto <= after:
            return []
        if after < 1:  # an initial sync's whole history, or backfilled positions
            self.bypassed += 1
            return None
        window = self._rooms.get(room_nid)
        if window is None:
            window = self._new_window(room_nid, upto, upto)
        else:
            self._rooms.move_to_end(room_nid)
        if window.hi < upto and window.hi >= window.told_after and not window.lock.locked():
            # Every event of the room in (hi, upto] was told: no read. (Not while a
            # reader's read is under way: that one extends the window from `hi` itself.)
            cut = bisect.bisect_right(window.told, (upto, _MAX_NID))
            self._grow(window, upto, window.told[:cut])
            self.told_hits += 1
        if not (window.lo <= after and upto <= window.hi):
            async with window.lock:
                if not await self._cover(room_nid, window, after, upto):
                    self.bypassed += 1
                    return None
                self.misses += 1
        else:
            self.hits += 1
        start = bisect.bisect_right(window.positions, after)
        end = bisect.bisect_right(window.positions, upto)
        nids = window.nids[start:end]
        if not nids:
            return []
        found = await self.events.get_events_by_nid(nids)
        if len(found) != len(nids):  # purged meanwhile: let the caller read what is there
            return None
        return [found[n] for n in nids]

    def newest(self, room_nid: int, upto: int, count: int) -> list[int] | None:
        """The nids of the room's newest `count` events at or before `upto`, oldest first,
        when its window holds that many without a read (grown from what the writer told,
        as `between` grows it); None otherwise (the caller reads them). An initial sync's
        first page of a room some earlier sync read: positions in (lo, hi] are exact, so
        `count` of them at or below `upto` are the room's newest there."""
        window = self._rooms.get(room_nid)
        if window is None:
            return None
        if window.hi < upto:
            if window.hi < window.told_after or window.lock.locked():
                return None
            cut = bisect.bisect_right(window.told, (upto, _MAX_NID))
            self._grow(window, upto, window.told[:cut])
            self.told_hits += 1
        end = bisect.bisect_right(window.positions, upto)
        if end < count:
            return None
        self._rooms.move_to_end(room_nid)
        self.hits += 1
        return window.nids[end - count : end]

    async def _cover(self, room_nid: int, window: _Window, after: int, upto: int) -> bool:
        """Read what the window lacks of (after, upto]; False if too much is missing."""
        if window.lo <= after and upto <= window.hi:
            return True  # another reader read it while this one waited
        if upto > window.hi:
            newer = await self._read(room_nid, window.hi, upto)
            if newer is None:
                # Too many at once: start the window afresh at the range's end.
                window.lo = window.hi = upto
                window.positions.clear()
                window.nids.clear()
                return False
            self._grow(window, upto, [(e.stream_ordering or 0, e.nid) for e in newer])
        if after < window.lo:
            older = await self._read(room_nid, after, window.lo)
            if older is None:
                return False
            window.positions[:0] = [e.stream_ordering or 0 for e in older]
            window.nids[:0] = [e.nid for e in older]
            window.lo = after
            excess = len(window.positions) - self.per_room
            if excess > 0:
                window.lo = window.positions[excess - 1]
                del window.positions[:excess]
                del window.nids[:excess]
        return window.lo <= after and upto <= window.hi

    async def _read(self, room_nid: int, after: int, upto: int) -> list[StoredEvent] | None:
        batch = await self.events.room_stream(
            room_nid, from_pos=after, to_pos=upto, backwards=False, limit=_MAX_READ + 1
        )
        return None if len(batch) > _MAX_READ else batch
