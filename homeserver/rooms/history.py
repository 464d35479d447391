"""Reading room history: timeline pages, the context around an event, state and
member lists at a point in time, and events as clients see them.

Every read goes through a `Viewer` (history visibility) and stays within the
reader's `RoomAccess` (users who left read up to their leave), so the API layer
only parses requests and shapes responses.

Stream positions: a page token "t<N>" names the gap between positions N and
N+1. Paginating backwards from it yields events at N and below, forwards
events above N, so the token ending one page starts the next without
duplicates or gaps, and tokens of /sync (whose first field is the same
position) and /context work the same way.

History older than this server's first event of a room (a room joined over
federation) is fetched when backwards pagination runs out of it
(homeserver/federation/backfill.py); it takes positions below zero, so the
same tokens keep working across it.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from homeserver.filters.event_filter import RoomEventFilter
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.client_format import client_event
from homeserver.rooms.visibility import RoomAccess, Viewer

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventStore
    from homeserver.storage.state import StateStore

StateKey = tuple[str, str]
# Events read from the database per page, visible or not. A user paginating
# through history they may not see (a late joiner under "joined" visibility)
# gets an empty chunk and a token to go on, instead of one request that reads
# the whole room.
MAX_SCAN = 2000
_BATCH = 100
# Backfill requests one page may make; the client's next page makes more.
MAX_BACKFILLS_PER_PAGE = 2


@dataclass
class Page:
    events: list[StoredEvent]
    next_pos: int  # where the next page in the same direction starts
    more: bool  # False once the range has no events left for this reader


def _is_ignored(ev: StoredEvent, ignored: AbstractSet[str]) -> bool:
    # The spec's ignore_users: hide everything an ignored user sends except state,
    # so the room's name or topic does not look different to the ignoring user.
    return ev.sender in ignored and ev.state_key is None


@dataclass
class Context:
    event: StoredEvent
    before: Page
    after: Page
    state: list[StoredEvent]


# Types whose previous state event the auth rules always cite in auth_events
# (a member event cites the target's membership, every event the power levels):
# no state needs loading to find what they replaced.
_CITED_IN_AUTH = ("m.room.member", "m.room.power_levels")


class Backfill(Protocol):
    """History from before this server joined, asked of the room's other servers (RoomBackfill)."""

    async def backfill(self, room: RoomRecord, limit: int) -> int: ...


class Bundler(Protocol):
    """Adds the bundled aggregations (unsigned.m.relations) to a page of client
    events, for the user reading them (RelationsService)."""

    async def bundle(
        self, room: RoomRecord, user_id: str, events: list[StoredEvent], formatted: list[dict[str, Any]],
        device_id: str | None = None,
    ) -> None: ...

    async def related_by(
        self, room: RoomRecord, events: list[StoredEvent], senders: list[str] | None, rel_types: list[str] | None
    ) -> list[StoredEvent]: ...

    async def related_among(self, events: list[StoredEvent]) -> set[str]: ...


class RoomHistory:
    """Timeline pages, context, state and members at a point, and client JSON of events."""

    def __init__(
        self, *, room_service: RoomService, events: EventStore, state: StateStore, backfill: Backfill,
        clock: Clock, bundler: Bundler | None = None,
    ) -> None:
        self.bundler = bundler
        self.room_service = room_service
        self.events = events
        self.state = state
        self.backfill = backfill
        self.clock = clock

    async def oldest_position(self) -> int:
        """Just below the oldest stream position in use: backfilled history sits below
        zero, so a forward page with no token starts there."""
        return min(0, await self.events.min_stream_ordering() - 1)

    async def events_by_timestamp(
        self, room: RoomRecord, ts: int, *, backwards: bool, after: tuple[int, int] | None, limit: int
    ) -> list[StoredEvent]:
        """The room's timeline events nearest `ts` in the direction asked, from `after`
        (origin_server_ts, stream position) on, oldest or newest first."""
        return await self.events.events_by_timestamp(room.room_nid, ts, backwards=backwards, after=after, limit=limit)

    async def ignored_senders(self, user_id: str) -> set[str]:
        """Whom this user ignores; never themselves, whose events they must always see."""
        return (await self.room_service.ignored_users(user_id)) - {user_id}

    async def paginate(
        self,
        room: RoomRecord,
        viewer: Viewer,
        access: RoomAccess,
        *,
        from_pos: int,
        backwards: bool,
        limit: int,
        to_pos: int | None = None,
        event_filter: RoomEventFilter | None = None,
        ignored: set[str] | frozenset[str] = frozenset(),
    ) -> Page:
        """Up to `limit` events the viewer may see, in the direction of travel:
        positions in (to, from] going back, (from, to] going forward. Going back
        without a `to` past the oldest event held here, older history is backfilled
        from other servers of the room first."""
        bound = access.stream_bound(self.room_service.stream.current)
        stop: int | None
        if backwards:
            pos = min(from_pos, bound)
            stop = to_pos
        else:
            pos = from_pos
            stop = bound if to_pos is None else min(to_pos, bound)
        chunk: list[StoredEvent] = []
        scanned = 0
        backfills = 0
        while len(chunk) < limit:
            if stop is not None and ((backwards and pos <= stop) or (not backwards and pos >= stop)):
                return Page(chunk, pos, False)
            if scanned >= MAX_SCAN:
                return Page(chunk, pos, True)
            want = min(_BATCH, max(limit - len(chunk), 10) + 10)
            batch = await self.events.room_stream(
                room.room_nid, from_pos=pos, to_pos=stop, backwards=backwards, limit=want
            )
            scanned += len(batch)
            candidates = [
                ev for ev in batch
                if (event_filter is None or event_filter.matches(ev.event, room.room_id))
                and not _is_ignored(ev, ignored)
            ]
            if event_filter is not None and event_filter.by_relations and self.bundler is not None:
                candidates = await self.bundler.related_by(
                    room, candidates, event_filter.related_by_senders, event_filter.related_by_rel_types
                )
            visible = {ev.nid for ev in await viewer.filter(candidates)}
            consumed = 0
            for ev in batch:
                consumed += 1
                assert ev.stream_ordering is not None
                pos = ev.stream_ordering - 1 if backwards else ev.stream_ordering
                if ev.nid in visible:
                    chunk.append(ev)
                    if len(chunk) >= limit:
                        break
            if len(batch) < want and consumed == len(batch):
                # The range ran out within this batch: going back, older history may
                # still be on other servers.
                if not backwards or stop is not None:
                    return Page(chunk, pos, False)
                if backfills >= MAX_BACKFILLS_PER_PAGE:
                    return Page(chunk, pos, True)
                backfills += 1
                if not await self.backfill.backfill(room, limit):
                    return Page(chunk, pos, False)
        return Page(chunk, pos, True)

    async def context(
        self,
        room: RoomRecord,
        viewer: Viewer,
        access: RoomAccess,
        event: StoredEvent,
        *,
        limit: int,
        event_filter: RoomEventFilter,
        ignored: set[str],
    ) -> Context:
        """The visible events around `event` (limit split between before and after,
        the spec leaves the split to the server) and the room state at the last
        event returned, filtered like the events."""
        assert event.stream_ordering is not None
        before_limit = limit // 2
        before = await self.paginate(
            room, viewer, access, from_pos=event.stream_ordering - 1, backwards=True,
            limit=before_limit, event_filter=event_filter, ignored=ignored,
        )
        after = await self.paginate(
            room, viewer, access, from_pos=event.stream_ordering, backwards=False,
            limit=limit - before_limit, event_filter=event_filter, ignored=ignored,
        )
        last = after.events[-1] if after.events else event
        state_ids = await self.room_service.state_ids_after(last)
        if event_filter.lazy_load_members:
            senders = {ev.sender for ev in [*before.events, event, *after.events]}
            state_ids = {
                k: v for k, v in state_ids.items() if k[0] != "m.room.member" or k[1] in senders
            }
        state = await self.room_service.state_events(state_ids)
        wanted = [ev for ev in state.values() if event_filter.matches(ev.event, room.room_id)]
        return Context(event, before, after, wanted)

    async def member_events_for(
        self, events: list[StoredEvent], senders: Iterable[str]
    ) -> list[StoredEvent]:
        """Lazy-loading members: the senders' m.room.member events as of the newest
        of `events` (the membership a client shows next to those events)."""
        newest = max(events, key=lambda e: e.stream_ordering or 0)
        state_ids = await self.room_service.state_ids_after(newest)
        found = await self.room_service.state_events(state_ids, [("m.room.member", s) for s in sorted(set(senders))])
        return list(found.values())

    async def state_at_position(self, room: RoomRecord, pos: int) -> tuple[StoredEvent | None, dict[StateKey, int]]:
        """The room's last event at or before stream position `pos`, and the state
        after it (empty before the room existed)."""
        last = await self.events.room_stream(room.room_nid, from_pos=pos, to_pos=None, backwards=True, limit=1)
        if not last:
            return None, {}
        return last[0], await self.room_service.state_ids_after(last[0])

    async def readable_state_ids(self, room: RoomRecord, access: RoomAccess) -> dict[StateKey, int]:
        """The state a reader may see: current for members and world-readable rooms,
        for those who left the state just after they left (the spec: "the state of
        the room when they left", which shows their own departure)."""
        if access.until is None:
            return await self.room_service.current_state_ids(room)
        return await self.room_service.state_ids_after(access.until)

    async def format_client_events(
        self,
        room: RoomRecord,
        events: list[StoredEvent],
        device_id: str | None = None,
        *,
        with_prev_content: bool = True,
        user_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Client JSON for events: redacted ones carry their redaction in
        unsigned.redacted_because, state events the content they replaced in
        unsigned.prev_content (how clients tell a rename from a join), and, given
        the reading `user_id`, timeline events their bundled aggregations."""
        redaction_ids = [ev.redacted_by for ev in events if ev.redacted_by]
        redactions = await self.events.get_events(redaction_ids) if redaction_ids else {}
        prev: dict[int, dict[str, Any]] = {}
        if with_prev_content:
            prev = await self._prev_contents(room, [ev for ev in events if ev.state_key is not None])
        now = self.clock.time_ms()
        out = [
            client_event(
                ev, room.room_id, room.room_version, now, device_id=device_id, user_id=user_id,
                redaction=redactions.get(ev.redacted_by) if ev.redacted_by else None,
                prev_content=prev.get(ev.nid),
            )
            for ev in events
        ]
        if user_id is not None and self.bundler is not None and with_prev_content:
            await self.bundler.bundle(room, user_id, events, out, device_id)
        return out

    async def _prev_contents(self, room: RoomRecord, events: list[StoredEvent]) -> dict[int, dict[str, Any]]:
        from federation.events import auth_event_ids, redact_event

        auth_ids = {a for ev in events for a in auth_event_ids(ev.event)}
        auth = await self.events.get_events(auth_ids) if auth_ids else {}
        replaced: dict[int, StoredEvent] = {}
        from_state: dict[int, int] = {}
        states: dict[int, dict[int, int]] = {}
        for ev in events:
            key = (ev.type, ev.state_key or "")
            cited = [
                auth[a] for a in auth_event_ids(ev.event)
                if a in auth and (auth[a].type, auth[a].state_key) == key
            ]
            if cited:
                replaced[ev.nid] = cited[0]
                continue
            if ev.type in _CITED_IN_AUTH or ev.state_before is None:
                continue  # nothing was replaced
            key_nid = await self.state.lookup_key_nid(key)
            if key_nid is None:
                continue
            if ev.state_before not in states:
                states[ev.state_before] = await self.state.get_state(ev.state_before)
            old = states[ev.state_before].get(key_nid)
            if old is not None and old != ev.nid:
                from_state[ev.nid] = old
        found = await self.events.get_events_by_nid(set(from_state.values()))
        replaced.update({nid: found[old] for nid, old in from_state.items() if old in found})
        out: dict[int, dict[str, Any]] = {}
        for nid, old_ev in replaced.items():
            source = redact_event(old_ev.event, room.room_version) if old_ev.redacted_by else old_ev.event
            out[nid] = source.get("content", {})
        return out
