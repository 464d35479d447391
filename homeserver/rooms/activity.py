"""What follows a persisted event: who is told, and the per-room facts it moves.

Every event the writer commits (local or received) comes here once: the room's
newest stream position moves (so /sync skips rooms with nothing new without a
database read), the cached set of local members follows membership events, the
waiting /sync requests of the users it concerns are woken, and the listeners
(typing, presence, sync caches, the servers-in-room cache) see it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.recent import RecentEvents
from homeserver.storage.events import EventPositions
from homeserver.storage.rooms import RoomStore

Listener = Callable[[StoredEvent, RoomRecord], None]
_MEMBER_ROWS = 200_000  # membership rows of the member lists cached, all rooms together


class Settling(Protocol):
    """The event stream's settled position (rooms/stream.py)."""

    def waits_below(self, pos: int) -> bool: ...

    def when_settled(self, pos: int, callback: Callable[[], None]) -> None: ...


class Waker(Protocol):
    def notify_users(self, user_ids: Iterable[str]) -> None: ...


class RoomActivity:
    def __init__(
        self, *, rooms: RoomStore, positions: EventPositions, waker: Waker, is_mine: Callable[[str], bool],
        recent: RecentEvents | None = None,
    ) -> None:
        self.rooms = rooms
        self.positions = positions
        self.waker = waker
        self.is_mine = is_mine
        self.listeners: list[Listener] = []  # run after each persisted event
        # run with the user whose membership changed outside the DAG (a remote invite)
        self.membership_listeners: list[Callable[[str], None]] = []
        # room nid -> local users joined now; kept exact by `event_persisted`.
        self._joined_local: dict[int, set[str]] = {}
        self._member_versions: dict[int, int] = {}  # bumped per membership event, guards lazy loads
        self._last_pos: dict[int, int] = {}  # room nid -> stream position of its newest event
        # room nid -> how many users are joined (local or not); dropped by state events.
        self._joined_count: dict[int, int] = {}
        self._state_versions: dict[int, int] = {}  # bumped per state event, guards loads
        # room nid -> every membership row (user, membership, event nid), least recently
        # used first, bounded by rows; dropped by state events like the count.
        self._members: OrderedDict[int, list[tuple[str, str, int]]] = OrderedDict()
        self._member_rows = 0
        self.member_hits = 0
        self.member_misses = 0
        self.recent = recent  # rooms' newest events (rooms/recent.py), dropped with a purged room
        if recent is not None:
            recent.follow_writer()  # the writer tells it through `placed`
        self._background: set[asyncio.Task[None]] = set()
        # The event stream, once the writer has one (server.py connects it): wakes
        # for events committed ahead of a lower position are repeated when it settles.
        self.stream: Callable[[], Settling] | None = None

    def _wake(self, users: set[str], pos: int | None) -> None:
        """Wake the users an event concerns; again once its position is visible, when
        a lower one (another room's write) is still in flight: woken now, they would
        look, find `current` below the event, wait again, and hear nothing more."""
        self.waker.notify_users(users)
        if pos is not None and self.stream is not None:
            stream = self.stream()
            if stream.waits_below(pos):
                again = frozenset(users)
                stream.when_settled(pos, lambda: self.waker.notify_users(again))

    def room_created(self, room_nid: int) -> None:
        self._joined_local[room_nid] = set()  # a new room has no members yet

    def forget_room(self, room_nid: int) -> None:
        for cache in (self._joined_local, self._member_versions, self._last_pos, self._joined_count):
            cache.pop(room_nid, None)
        self._drop_members(room_nid)
        if self.recent is not None:
            self.recent.forget_room(room_nid)

    def membership_outside_dag(self, user_id: str) -> None:
        """A local user's membership in a room this server is not in changed."""
        for listener in self.membership_listeners:
            listener(user_id)
        self.waker.notify_users({user_id})

    async def joined_local_users(self, room: RoomRecord) -> set[str]:
        """Local users joined to the room now (cached; the notifier asks on every event)."""
        joined = self._joined_local.get(room.room_nid)
        if joined is None:
            version = self._member_versions.get(room.room_nid, 0)
            members = await self.rooms.members(room.room_nid, "join")
            loaded = {u for u, _, _ in members if self.is_mine(u)}
            joined = self._joined_local.get(room.room_nid)
            if joined is None:
                if self._member_versions.get(room.room_nid, 0) != version:
                    return loaded  # a membership change landed meanwhile: don't cache this read
                self._joined_local[room.room_nid] = joined = loaded
        return joined

    def member_stats(self) -> dict[str, int]:
        return {"hits": self.member_hits, "misses": self.member_misses, "entries": self._member_rows}

    def _drop_members(self, room_nid: int) -> None:
        rows = self._members.pop(room_nid, None)
        if rows is not None:
            self._member_rows -= len(rows)

    async def members(self, room: RoomRecord) -> list[tuple[str, str, int]]:
        """(user, membership, event nid) of every membership in the room now (cached:
        each initial sync's summaries ask for every room). Callers must not change it."""
        rows = self._members.get(room.room_nid)
        if rows is not None:
            self.member_hits += 1
            self._members.move_to_end(room.room_nid)
            return rows
        self.member_misses += 1
        version = self._state_versions.get(room.room_nid, 0)
        rows = await self.rooms.members(room.room_nid)
        self._keep_members(room.room_nid, version, rows)
        return rows

    async def preload_members(self, rooms: Iterable[RoomRecord]) -> None:
        """Cache the member lists of many rooms in one read (an initial sync asks for
        every room's summary, and presence every room's local members), as `members`
        and `joined_local_users` would one by one."""
        nids = [r.room_nid for r in rooms]
        missing = [n for n in nids if n not in self._members or n not in self._joined_local]
        if not missing:
            return
        versions = {nid: self._state_versions.get(nid, 0) for nid in missing}
        member_versions = {nid: self._member_versions.get(nid, 0) for nid in missing}
        for nid, rows in (await self.rooms.members_of_rooms(missing)).items():
            if nid not in self._members:
                self.member_misses += 1
                self._keep_members(nid, versions[nid], rows)
            if nid not in self._joined_local and self._member_versions.get(nid, 0) == member_versions[nid]:
                self._joined_local[nid] = {u for u, m, _ in rows if m == "join" and self.is_mine(u)}

    async def preload_positions(self, room_nids: Iterable[int]) -> None:
        """`last_position` of many rooms in one read (an initial sync's rooms)."""
        missing = [n for n in room_nids if n not in self._last_pos]
        if missing:
            for nid, pos in (await self.positions.last_positions(missing)).items():
                self._last_pos[nid] = max(pos, self._last_pos.get(nid, 0))

    def _keep_members(self, room_nid: int, version: int, rows: list[tuple[str, str, int]]) -> None:
        """Cache a member list read at state `version`, unless the state moved since."""
        if self._state_versions.get(room_nid, 0) == version and len(rows) <= _MEMBER_ROWS // 4:
            self._drop_members(room_nid)
            self._members[room_nid] = rows
            self._member_rows += len(rows)
            while self._member_rows > _MEMBER_ROWS:
                _, dropped = self._members.popitem(last=False)
                self._member_rows -= len(dropped)

    async def joined_count(self, room: RoomRecord) -> int:
        """How many users are joined to the room now (cached: unread counts ask per event
        and reader). Dropped by every state event and every event merging forks, since
        those can move the room's resolved state, memberships included."""
        count = self._joined_count.get(room.room_nid)
        if count is None:
            version = self._state_versions.get(room.room_nid, 0)
            count = len(await self.rooms.members(room.room_nid, "join"))
            if self._state_versions.get(room.room_nid, 0) == version:
                self._joined_count[room.room_nid] = count
        return count

    async def last_position(self, room_nid: int) -> int:
        """Stream position of the room's newest event: /sync skips rooms with nothing new
        without touching the database."""
        pos = self._last_pos.get(room_nid)
        if pos is None:
            loaded = await self.positions.last_position(room_nid)
            pos = max(loaded, self._last_pos.get(room_nid, 0))
            self._last_pos[room_nid] = pos
        return pos

    def placed(self, room_nid: int, pos: int | None, event_nid: int) -> None:
        """The writer committed an event at stream position `pos` of its room's
        timeline: called right after the commit, before `pos` is finished, so the
        rooms' newest events (rooms/recent.py) grow without reading the database."""
        if self.recent is not None and pos is not None:
            self.recent.placed(room_nid, pos, event_nid)

    def event_persisted(self, event: StoredEvent, room: RoomRecord) -> None:
        if event.stream_ordering is not None:
            self._last_pos[room.room_nid] = max(self._last_pos.get(room.room_nid, 0), event.stream_ordering)
        concerned: set[str] = set()
        if event.state_key is not None or len(event.event.get("prev_events") or ()) > 1:
            # A state event, or one merging forks (whose resolved state can move memberships).
            self._state_versions[room.room_nid] = self._state_versions.get(room.room_nid, 0) + 1
            self._joined_count.pop(room.room_nid, None)
            self._drop_members(room.room_nid)
        joined = self._joined_local.get(room.room_nid)
        if event.type == "m.room.member" and event.state_key is not None:
            target = event.state_key
            concerned.add(target)  # invitees, the kicked and the banned hear of it too
            self._member_versions[room.room_nid] = self._member_versions.get(room.room_nid, 0) + 1
            if joined is not None and self.is_mine(target):
                if event.event["content"].get("membership") == "join":
                    joined.add(target)
                else:
                    joined.discard(target)
        if joined is not None:
            # A message concerns only the joined: woken from the kept set itself, not a
            # copy of it (a copy of 10,000 names per event in a big room); a membership's
            # target who is not (or no longer) joined apart.
            self._wake(joined, event.stream_ordering)
            if concerned and not concerned <= joined:
                self._wake(concerned - joined, event.stream_ordering)
        else:
            # First event seen for this room since start: load its members, then wake them.
            async def load_and_notify() -> None:
                concerned.update(await self.joined_local_users(room))
                self._wake(concerned, event.stream_ordering)

            task = asyncio.ensure_future(load_and_notify())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        for listener in self.listeners:
            listener(event, room)
