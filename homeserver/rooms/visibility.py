"""History visibility: which events a user may see, decided by the room state
at each event (the spec's "Server behaviour" for m.room.history_visibility).

Every read path (messages, context, single events, state, members, sync)
filters through `VisibilityService.filter` (or a `Viewer` when it filters in
batches), so no path can leak history. `room_access` is the coarser gate the
room-wide reads (messages, state, members) pass first: members, users who left
(who read the room as it was when they left) and anyone for world-readable rooms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from homeserver.errors import MatrixError
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore
    from homeserver.storage.state import StateStore

_KNOWN = ("world_readable", "shared", "invited", "joined")
HISTORY_VISIBILITY = ("m.room.history_visibility", "")
# Membership histories are walked event by event; a user who joined, left and was
# re-invited hundreds of times is not worth unbounded reads (they lose old history).
_MAX_MEMBERSHIP_HOPS = 100


def forbidden_room() -> MatrixError:
    """The one refusal for rooms a user may not read, whether or not the room exists."""
    return MatrixError(403, "M_FORBIDDEN", "You are not allowed to view this room")


@dataclass(frozen=True)
class RoomAccess:
    """What a user may read of a room, decided once per request.

    `until` is set for users who left or were banned (and the room is not world
    readable): they read the room as it was when they left, so state comes from
    that event and timelines stop there.
    """

    user_id: str
    membership: str | None
    world_readable: bool
    until: StoredEvent | None

    @property
    def joined(self) -> bool:
        return self.membership == "join"

    def stream_bound(self, current: int) -> int:
        """The highest stream position this user may read up to."""
        if self.until is not None and self.until.stream_ordering is not None:
            return min(current, self.until.stream_ordering)
        return current


class Viewer:
    """One user's view of one room's history, with the per-request lookups
    (their membership history, the visibility at each state snapshot) cached, so
    filtering page after page of a timeline costs one lookup per state change."""

    def __init__(
        self, user_id: str, room: RoomRecord, *, rooms: RoomStore, events: EventStore, state: StateStore,
        membership: tuple[str, int] | None = None,
    ) -> None:
        self.rooms = rooms
        self.events = events
        self.state = state
        self.user_id = user_id
        self.room = room
        self._at: dict[int | None, tuple[str, str | None]] = {}
        # Snapshots' answers worked out from an adjacent snapshot's, not read (`_derive`):
        # moved into `_at` only when asked, so `_at` stays what the events asked about.
        self._derived: dict[int, tuple[str, str | None]] = {}
        self._key_nids: dict[tuple[str, str], int | None] = {}
        self._joined_until: float | None = None
        self._forgotten = False
        # The user's current (membership, event nid) when the caller knows it for a
        # room it has not forgotten (a /sync request's own memberships), saving the read.
        self._known = membership

    async def _prepare(self) -> None:
        if self._joined_until is not None:
            return
        if self._known is not None:
            current: tuple[str, int, bool] | None = (*self._known, False)
        else:
            current = await self.rooms.membership_of(self.room.room_nid, self.user_id)
        self._forgotten = current is not None and current[2]
        self._joined_until = await self._last_joined(current)

    async def _last_joined(self, current: tuple[str, int, bool] | None) -> float:
        """The stream position up to which the user was last joined: +inf while
        they are, -inf if they never were (or forgot the room, which gives up its
        history). Rule 3 ("shared, and the user joined at any point after the
        event") holds exactly for events before this position."""
        if current is None or current[2]:
            return -math.inf
        if current[0] == "join":
            return math.inf
        ev = (await self.events.get_events_by_nid([current[1]])).get(current[1])
        for _ in range(_MAX_MEMBERSHIP_HOPS):
            if ev is None or ev.stream_ordering is None:
                return -math.inf
            prev = await self._member_event(ev.state_before)
            if prev is None:
                return -math.inf
            if prev.event["content"].get("membership") == "join":
                return ev.stream_ordering  # joined until this change of membership
            ev = prev
        return -math.inf

    async def _state_entries(self, snapshot: int | None, keys: list[tuple[str, str]]) -> list[StoredEvent | None]:
        if snapshot is None:
            return [None] * len(keys)
        key_nids = []
        for key in keys:
            # The same two or three keys at every snapshot of the page: looked up once
            # per viewer (a key made later names no event of the range being read).
            if key not in self._key_nids:
                self._key_nids[key] = await self.state.lookup_key_nid(key)
            key_nids.append(self._key_nids[key])
        state = await self.state.get_entries(snapshot, [k for k in key_nids if k is not None])
        nids = [state.get(k) if k is not None else None for k in key_nids]
        found = await self.events.get_events_by_nid([n for n in nids if n is not None])
        return [found.get(n) if n is not None else None for n in nids]

    async def _member_event(self, snapshot: int | None) -> StoredEvent | None:
        return (await self._state_entries(snapshot, [("m.room.member", self.user_id)]))[0]

    async def _visibility_and_membership(self, snapshot: int | None) -> tuple[str, str | None]:
        cached = self._at.get(snapshot)
        if cached is not None:
            return cached
        result = self._derived.get(snapshot) if snapshot is not None else None
        if result is None:
            hv, member = await self._state_entries(
                snapshot, [HISTORY_VISIBILITY, ("m.room.member", self.user_id)]
            )
            result = (_visibility_of(hv), _membership_of(member))
        self._at[snapshot] = result
        return result

    def _derive(self, ev: StoredEvent, before: tuple[str, str | None]) -> None:
        """The answer at the snapshot after an accepted event from the one before it:
        the event changed one key of the state, so the visibility or the user's
        membership changed only if that key is one of theirs. On a linear timeline
        the next event's state before is this one's state after, so a page costs one
        state lookup, not one per state event in it."""
        after = ev.state_after
        if after is None or after in self._at or after in self._derived:
            return
        if ev.state_key is None:
            self._derived[after] = before  # a message: the same snapshot (or a copy)
        elif (ev.type, ev.state_key) == HISTORY_VISIBILITY:
            self._derived[after] = (_visibility_of(ev), before[1])
        elif ev.type == "m.room.member" and ev.state_key == self.user_id:
            self._derived[after] = (before[0], _membership_of(ev))
        else:
            self._derived[after] = before

    def _allowed(self, visibility: str, membership: str | None, event_pos: int | None) -> bool:
        if visibility == "world_readable":
            return True
        if self._forgotten:
            return False
        if membership == "join":
            return True
        assert self._joined_until is not None
        if visibility == "shared" and event_pos is not None and event_pos < self._joined_until:
            return True
        return visibility == "invited" and membership == "invite"

    async def can_see(self, ev: StoredEvent) -> bool:
        await self._prepare()
        if ev.rejected is not None or ev.room_nid != self.room.room_nid:
            return False
        visibility, membership = await self._visibility_and_membership(ev.state_before)
        if self._allowed(visibility, membership, ev.stream_ordering):
            return True
        if ev.type == "m.room.history_visibility" or (
            ev.type == "m.room.member" and ev.state_key == self.user_id
        ):
            # Visible if the state before *or* after the event would allow it.
            visibility, membership = await self._visibility_and_membership(ev.state_after)
            return self._allowed(visibility, membership, ev.stream_ordering)
        return False

    async def filter(self, events: list[StoredEvent]) -> list[StoredEvent]:
        if not events:
            return []
        await self._prepare()
        room_nid = self.room.room_nid
        at = self._at
        if len(events) > 1:
            # Oldest first, each accepted event's state after is derived from its state
            # before, which the next event then finds (see `_derive`).
            for ev in sorted(events, key=_stream_order):
                if ev.rejected is None and ev.state_before is not None and ev.room_nid == room_nid:
                    before = at.get(ev.state_before) or await self._visibility_and_membership(ev.state_before)
                    self._derive(ev, before)
        # What `can_see` answers, without its coroutine for the usual event: one whose
        # snapshot's answer is known and allows it (an initial sync asks this of every
        # event of every room). Any other event is asked of `can_see` itself.
        out = []
        for ev in events:
            known = at.get(ev.state_before)
            if (
                known is not None and ev.rejected is None and ev.room_nid == room_nid
                and self._allowed(known[0], known[1], ev.stream_ordering)
            ) or await self.can_see(ev):
                out.append(ev)
        return out

    def saw_only_open_history(self) -> bool:
        """Whether every event this viewer was asked about lay under shared or
        world_readable history visibility. Then every user joined to the room now
        (who cannot have forgotten it) is answered exactly as this one was, whatever
        their membership at each event: /sync builds one timeline for many readers
        on that (homeserver/sync/shared_sections.py)."""
        return all(visibility in ("shared", "world_readable") for visibility, _ in self._at.values())

    def snapshots_seen_joined(self) -> list[int] | None:
        """The state snapshots this viewer was asked about, when the user was joined at
        every one of them (None otherwise). A joined member is shown every event whatever
        the history visibility, so any other user joined at each of these snapshots too
        (`joined_at_all`) is answered exactly as this one was: /sync shares one timeline
        among such readers of rooms whose history is visible to members only."""
        if any(snapshot is None or membership != "join" for snapshot, (_, membership) in self._at.items()):
            return None
        return [snapshot for snapshot in self._at if snapshot is not None]

    async def joined_at_all(self, snapshots: list[int]) -> bool:
        """Whether the user was joined at each of these state snapshots."""
        for snapshot in snapshots:
            if (await self._visibility_and_membership(snapshot))[1] != "join":
                return False
        return True


def _visibility_of(hv: StoredEvent | None) -> str:
    visibility = hv.event["content"].get("history_visibility") if hv else None
    return str(visibility) if visibility in _KNOWN else "shared"  # the spec's default for absent or unknown


def _membership_of(member: StoredEvent | None) -> str | None:
    membership = member.event["content"].get("membership") if member else None
    return membership if isinstance(membership, str) else None


def _stream_order(ev: StoredEvent) -> int:
    return ev.stream_ordering or 0


class VisibilityService:
    def __init__(
        self, *, rooms: RoomStore, events: EventStore, state: StateStore, room_service: RoomService
    ) -> None:
        self.rooms = rooms
        self.events = events
        self.state = state
        self.room_service = room_service

    def viewer(self, user_id: str, room: RoomRecord, *, membership: tuple[str, int] | None = None) -> Viewer:
        """`membership`: the user's current (membership, event nid) in the room, when the
        caller has it and the user has not forgotten the room."""
        return Viewer(user_id, room, rooms=self.rooms, events=self.events, state=self.state, membership=membership)

    async def filter(self, user_id: str, room: RoomRecord, events: list[StoredEvent]) -> list[StoredEvent]:
        """The events, in order, that the user may see."""
        return await self.viewer(user_id, room).filter(events)

    async def is_world_readable(self, room: RoomRecord) -> bool:
        hv = await self.room_service.current_state_event(room, HISTORY_VISIBILITY)
        return bool(hv and hv.event["content"].get("history_visibility") == "world_readable")

    async def can_see_current_state(self, user_id: str, room: RoomRecord) -> bool:
        """Whether the user may read the room's current state (joined, or world readable)."""
        current = await self.rooms.membership_of(room.room_nid, user_id)
        if current is not None and current[0] == "join":
            return True
        return await self.is_world_readable(room)

    async def room_access(self, user_id: str, room: RoomRecord | None) -> RoomAccess:
        """The gate of room-wide reads: joined users, anyone in a world-readable
        room, and users who left or were banned (as of that moment, unless they
        forgot the room). Everyone else, including the invited who have not
        joined yet ("a user needs to join a room to view events"), gets
        M_FORBIDDEN, as do rooms that do not exist so existence does not leak."""
        if room is None:
            raise forbidden_room()
        current = await self.rooms.membership_of(room.room_nid, user_id)
        membership = current[0] if current else None
        if membership == "join":
            return RoomAccess(user_id, membership, False, None)
        if await self.is_world_readable(room):
            return RoomAccess(user_id, membership, True, None)
        if current is not None and membership in ("leave", "ban") and not current[2]:
            left = (await self.events.get_events_by_nid([current[1]])).get(current[1])
            if left is not None:
                return RoomAccess(user_id, membership, False, left)
        raise forbidden_room()
