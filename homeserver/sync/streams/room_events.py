"""The room events stream: the `rooms` section (joined rooms' timeline, state,
summary and unread counts; invites, knocks and left rooms).

Its position is the global event stream's. Rooms with nothing new since the
token are skipped from in-memory positions, and rooms are computed concurrently
(their work is mostly waiting on the database; the reader pool bounds the
parallelism). Each room's entry also carries the parts of the streams that live
in rooms (typing and receipts in `ephemeral`, room account data), asked room by
room. Its wake-ups come from the room activity (homeserver/rooms/activity.py),
which wakes the local members of an event's room (and a membership's target) as
each event is persisted, keeping the set of those members as memberships change.

Its room-scoped entry points (`timeline`, `format_events`, `stripped_state`,
`ignored`) also serve sliding sync (homeserver/sync/sliding/), so a room's
timeline is read, filtered by visibility and ignored users, and formatted in one
place for both.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Set as AbstractSet
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from homeserver.records.encoded_json import EncodedJSON, dumps
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord, UserMembership
from homeserver.rooms.client_format import client_event
from homeserver.rooms.membership import STRIPPED_STATE_TYPES
from homeserver.rooms.tokens import room_token
from homeserver.sync.ignored import IgnoredUsers
from homeserver.sync.initial_sections import (
    InitialSection,
    InitialSections,
    SectionEvent,
    SectionKey,
    Summary,
    section_event,
    section_size,
)
from homeserver.sync.lazy_members import LazyMembersSent
from homeserver.sync.shared_sections import Section, SharedTimelines
from homeserver.sync.streams.base import StreamProvider, SyncRequest

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.rooms.history import Bundler
    from homeserver.rooms.recent import RecentEvents
    from homeserver.rooms.service import RoomService
    from homeserver.rooms.visibility import Viewer, VisibilityService
    from homeserver.storage.events import EventPositions, EventStore
    from homeserver.storage.rooms import RoomStore
    from homeserver.sync.unread import UnreadCounter

DEFAULT_TIMELINE_LIMIT = 10
# The most membership events since a token that `joined_throughout` walks back
# through (each a profile change) before it takes the room as newly joined.
_MAX_PROFILE_CHANGES = 20
MAX_TIMELINE_LIMIT = 500
# Joined rooms whose reads an initial sync makes in bulk at once (bounded so what one
# batch brings into the caches stays there until its rooms are computed).
_PRELOAD_ROOMS = 100
# Where `_preload` leaves each room's first timeline page on the request.
_FIRST_PAGES = "events.first_pages"
# Where it leaves the IDs of those pages' events that no relation targets (nothing to bundle).
_UNRELATED = "events.unrelated"
# Where `top_level` leaves whether this initial sync may use and keep rooms' initial
# sections (sync/initial_sections.py): its filters and ignored users leave every event in.
_SECTIONS = "events.initial_sections"
# Where `_read_pages` leaves each room's section key (computed once per request: the
# room's `_joined_room` takes it from there).
_SECTION_KEYS = "events.section_keys"
# What `_read_pages` reads for a batch: its rooms, those without an initial section
# (whose reads are made), their first pages, those pages' events and the IDs of those a
# relation targets.
_Pages = tuple[
    dict[int, RoomRecord], dict[int, RoomRecord], dict[int, list[StoredEvent]], list[StoredEvent], set[str]
]
# Rooms whose summary is kept (`_summary_parts`; a few hundred bytes each).
_SUMMARIES_KEPT = 10_000
# The state that names a room for its summary (no heroes then), in the order looked at.
_NAMING_KEYS = (("m.room.name", ""), ("m.room.canonical_alias", ""))
# Local joined members from which a room's incremental timeline is shared among its readers
# (sync/shared_sections.py): in a smaller room (a direct chat) at most one other reader could
# take a section, and building one costs its builder more than building its own timeline.
_SHARED_FROM = 3
# What each section's entries carry from the streams that live in rooms.
_ROOM_SECTIONS = {"join": ("ephemeral", "account_data"), "leave": ("account_data",)}


def _state_section(req: SyncRequest) -> str:
    """A room's state section: `state_after` when the client asked for it (v1.16)."""
    return "state_after" if req.use_state_after else "state"


# New events a kept initial section is never extended with (`_extended`): a redaction
# changes how an earlier event is shown, a history visibility change who may see what.
_NOT_EXTENDED = frozenset({"m.room.redaction", "m.room.history_visibility"})


def _completed_from(
    at_start: dict[tuple[str, str], int], at_end: dict[tuple[str, str], int], timeline_ids: AbstractSet[int]
) -> dict[tuple[str, str], int]:
    """The state at a timeline's start with each key whose value at its end the timeline
    does not carry taking that value (`RoomEventsStream._completed` says why), in the
    start's key order."""
    completed = dict(at_start)
    for key, nid in at_end.items():
        if nid not in timeline_ids:
            completed[key] = nid
    return completed


class RoomEventsStream(StreamProvider):
    key = "events"

    def __init__(
        self,
        *,
        room_service: RoomService,
        room_store: RoomStore,
        event_store: EventStore,
        event_positions: EventPositions,
        visibility: VisibilityService,
        unread: UnreadCounter,
        clock: Clock,
        bundler: Bundler | None = None,
        recent: RecentEvents | None = None,
    ) -> None:
        self.recent = recent  # rooms' newest events, shared by their readers
        self.bundler = bundler  # bundled aggregations (unsigned.m.relations) of timeline events
        self.room_service = room_service
        self.room_store = room_store
        self.event_store = event_store
        self.event_positions = event_positions
        self.visibility = visibility
        self.unread = unread
        self.clock = clock
        self.lazy_members = LazyMembersSent()
        # Kept current by the account data's listeners (wired in server.py).
        self.ignored_users = IgnoredUsers(room_service.ignored_users)
        self.shared: SharedTimelines | None = SharedTimelines()  # None: every reader builds its own
        # Joined rooms' initial-sync sections, shared by their readers (None: not kept).
        self.initial_sections: InitialSections | None = InitialSections() if recent is not None else None
        # room nid -> (state snapshot, the room's summary at it), see `_summary_parts`.
        self._summaries: dict[int, tuple[int, Summary]] = {}

    async def current_position(self) -> int:
        return self.room_service.stream.current

    def position_now(self) -> int | None:
        return self.room_service.stream.current

    def moved(self, req: SyncRequest) -> bool:
        # The rooms section also carries other streams' parts and membership changes:
        # always computed, room by room skipping what has nothing new.
        return True

    async def top_level(self, req: SyncRequest) -> dict[str, Any]:
        since_pos = req.since_pos(self.key)
        sections: dict[str, dict[str, Any]] = {"join": {}, "invite": {}, "knock": {}, "leave": {}}
        ignored = await self.ignored(req)

        async def one(m: UserMembership) -> tuple[str, str, dict[str, Any] | None]:
            changed_membership = req.since is None or m.stream_ordering > since_pos
            room = await self.room_store.get_room_by_nid(m.room_nid)
            assert room is not None
            if m.membership == "join":
                return "join", room.room_id, await self._joined_room(req, room, m)
            if m.membership == "invite" and changed_membership:
                invite_state = await self.stripped_state(room, m, hide_from=ignored)
                if invite_state is None:  # the spec: never send invites from ignored users
                    return "", room.room_id, None
                return "invite", room.room_id, {"invite_state": {"events": invite_state}}
            if m.membership == "knock" and changed_membership:
                return "knock", room.room_id, {"knock_state": {"events": await self.stripped_state(room, m) or []}}
            if m.membership in ("leave", "ban") and changed_membership:
                if req.since is None and not req.filter.include_leave:
                    return "leave", room.room_id, None
                return "leave", room.room_id, await self._left_room(req, room, m)
            return "", room.room_id, None

        async def encoded(m: UserMembership) -> tuple[str, str, dict[str, Any] | EncodedJSON | None]:
            # A joined room's entry encoded as soon as it is computed: its objects (a
            # dict per event, and more) are freed at once instead of living until the
            # whole response is encoded, where the collector would scan them (tens of
            # thousands in a big account's initial sync), some of them twice. An entry
            # from a kept section holds its events encoded already: copying its bytes
            # once more would cost more than the few objects it frees.
            section, room_id, entry = await one(m)
            if entry is None or isinstance(entry.get("timeline"), EncodedJSON):
                return section, room_id, entry
            return section, room_id, EncodedJSON.of(entry)

        wanted = [
            m for m in req.memberships
            # filtered out, or a change the next sync will carry
            if req.filter.includes_room(m.room_id) and m.stream_ordering <= req.now.events
        ]
        if req.since is not None and not req.full_state:
            wanted = await self._not_quiet(req, wanted, since_pos)
        if req.since is None:
            f = req.filter
            req.loaded[_SECTIONS] = (
                self.initial_sections is not None and not req.full_state and not req.use_state_after
                and not ignored and f.timeline.matches_everything and not f.timeline.by_relations
                and f.state.matches_everything and not f.state.lazy_load_members
            )
        if req.since is None or req.full_state:
            # Every joined room is read whole: in batches whose reads are made in bulk
            # first (a few statements for a batch instead of a dozen per room), so the
            # rooms' own computations find what they need in the caches.
            # The next batch's pages are read while this batch's rooms are computed: with
            # a warm cache they are the only statements left, and the event loop would
            # otherwise wait for each batch's read with nothing to do.
            joined = [m for m in wanted if m.membership == "join"]
            batches = [joined[i : i + _PRELOAD_ROOMS] for i in range(0, len(joined), _PRELOAD_ROOMS)]
            found: list[tuple[str, str, dict[str, Any] | EncodedJSON | None]] = []
            ahead: asyncio.Future[_Pages] | None = None
            try:
                for n, batch in enumerate(batches):
                    pages = await ahead if ahead is not None else await self._read_pages(req, batch)
                    ahead = asyncio.ensure_future(self._read_pages(req, batches[n + 1])) if n + 1 < len(batches) else None
                    await self._preload(req, batch, pages)
                    # Rooms with a kept section (all but `missed`) are answered from memory:
                    # one after the other, without a task each.
                    missed = pages[1]
                    for m in batch:
                        if m.room_nid not in missed:
                            found.append(await encoded(m))
                    found += await asyncio.gather(*(encoded(m) for m in batch if m.room_nid in missed))
            finally:
                if ahead is not None and not ahead.done():
                    ahead.cancel()
            found += await asyncio.gather(*(one(m) for m in wanted if m.membership != "join"))
        elif len(wanted) == 1:  # one room (most woken readers of a busy room): no task to gather
            found = [await one(wanted[0])]
        else:
            found = list(await asyncio.gather(*(one(m) for m in wanted)))
        for section, room_id, entry in found:
            if entry is not None:
                sections[section][room_id] = entry
        rooms = {name: section for name, section in sections.items() if section}
        return {"rooms": rooms} if rooms else {}

    async def _not_quiet(self, req: SyncRequest, wanted: list[UserMembership], since_pos: int) -> list[UserMembership]:
        """The memberships of an incremental sync whose rooms may have an entry: a user in
        hundreds of rooms, woken by one of them, is not answered by computing (each in a
        task) an entry for every other to find it empty. Left out, exactly as `one` would
        answer them with nothing: a room joined throughout with no event since the token
        and nothing from any stream that moved; any other membership unchanged since it."""
        if len(wanted) <= 1:
            return wanted  # one room (most woken readers of a busy room): `one` checks it alone
        streams = req.room_streams
        # The rooms' newest positions, in a few reads for those not known yet (after a
        # restart), rather than one read after the other below.
        await self.room_service.activity.preload_positions(m.room_nid for m in wanted if m.membership == "join")
        out = []
        for m in wanted:
            if m.membership == "join":
                if (
                    m.room_nid not in req.newly_joined
                    and await self.room_service.last_position(m.room_nid) <= since_pos
                    and all(stream.quiet_in(req, m.room_id) for stream in streams)
                ):
                    continue
            elif m.stream_ordering <= since_pos:
                continue
            out.append(m)
        return out

    async def _read_pages(self, req: SyncRequest, batch: list[UserMembership]) -> _Pages:
        """The rooms of `batch`, the first page of the timeline of each one without a
        current initial section and which of those pages' events a relation targets (read
        ahead of the batch's turn, see `top_level`)."""
        rooms = await self.room_store.rooms_by_nids([m.room_nid for m in batch])
        missed = rooms
        if req.loaded.get(_SECTIONS) and self.initial_sections is not None:
            await self.room_service.preload_heads(list(rooms.values()))
            missed = {}
            keys: dict[int, SectionKey | None] = req.loaded.setdefault(_SECTION_KEYS, {})
            for nid, room in rooms.items():
                key = keys[nid] = await self._section_key(req, room)
                if key is None or not (
                    self.initial_sections.peek(nid, key) or await self._derive_section(req, room, key) is not None
                ):
                    missed[nid] = room
        # One more than the limit tells whether the timeline is limited; the rare room
        # with too many events filtered out reads on page by page.
        pages = await self._first_pages(list(missed), req.now.events, _limit(req) + 1) if missed else {}
        page_events = [e for events in pages.values() for e in events]
        related = await self.bundler.related_among(page_events) if self.bundler is not None and page_events else set()
        return rooms, missed, pages, page_events, related

    async def _first_pages(self, room_nids: list[int], upto: int, size: int) -> dict[int, list[StoredEvent]]:
        """Each room's newest `size` events at or before `upto`, newest first: from the
        room's window of recent events where it holds them (a room an earlier sync read,
        grown since from what the writer told: no read), the others' read in bulk."""
        pages: dict[int, list[StoredEvent]] = {}
        rest = room_nids
        if self.recent is not None:
            windowed = {}
            rest = []
            for nid in room_nids:
                nids = self.recent.newest(nid, upto, size)
                if nids is None:
                    rest.append(nid)
                else:
                    windowed[nid] = nids
            if windowed:
                found = await self.event_store.get_events_by_nid([n for nids in windowed.values() for n in nids])
                for room_nid, nids in windowed.items():
                    if all(n in found for n in nids):
                        pages[room_nid] = [found[n] for n in reversed(nids)]
                    else:  # purged meanwhile: read what is there
                        rest.append(room_nid)
        if rest:
            pages.update(await self.event_store.latest_in_rooms(rest, upto, size))
        return pages

    async def _preload(self, req: SyncRequest, batch: list[UserMembership], read: _Pages) -> None:
        """Read in bulk what the joined rooms of `batch` will each ask for in a full
        sync: given their rooms and first timeline pages (`_read_pages`, the pages kept on
        the request for `timeline`), the state snapshots their visibility checks, state
        and summaries read, those snapshots' events, member lists (of the rooms without a
        current initial section) and unread counts (of all)."""
        all_rooms, rooms, pages, page_events, related = read
        req.loaded.setdefault(_FIRST_PAGES, {}).update(pages)
        if self.bundler is not None:
            unrelated: set[str] = req.loaded.setdefault(_UNRELATED, set())
            unrelated.update(e.event_id for e in page_events if e.event_id not in related)
        snapshots: set[int] = set()
        senders = {req.user_id}
        if rooms:
            await self.room_service.preload_heads(list(rooms.values()))
        for room in rooms.values():
            head = await self.room_service.head(room)  # in memory once loaded
            if head.snapshot is not None:
                snapshots.add(head.snapshot)
        for events in pages.values():
            for e in events:
                senders.add(e.sender)
                if e.state_before is not None:
                    snapshots.add(e.state_before)
                if e.state_key is not None and e.state_after is not None:
                    snapshots.add(e.state_after)
        if rooms:
            await self.room_service.preload_state(snapshots, senders if req.filter.state.lazy_load_members else None)
            await self.room_service.preload_members(rooms.values())  # the summaries
        if not req.filter.timeline.unread_thread_notifications:
            await self.unread.preload(
                req.user_id, [(all_rooms[m.room_nid], m.stream_ordering) for m in batch if m.room_nid in all_rooms],
                req.now.events,
            )

    async def _room_parts(self, req: SyncRequest, room: RoomRecord, membership: str) -> dict[str, list[dict[str, Any]]]:
        """The other streams' parts of the room's entry, by section."""
        parts: dict[str, list[dict[str, Any]]] = {section: [] for section in _ROOM_SECTIONS[membership]}
        for stream in req.room_streams:
            for section, events in (await stream.room_part(req, room, membership)).items():
                parts[section].extend(events)
        return parts

    # --- joined rooms ---

    async def _joined_room(self, req: SyncRequest, room: RoomRecord, m: UserMembership) -> dict[str, Any] | None:
        since_pos = req.since_pos(self.key)
        newly_joined = req.since is None or m.room_nid in req.newly_joined
        key: SectionKey | None = None
        viewer: Viewer | None = None
        sections = self.initial_sections
        if req.loaded.get(_SECTIONS) and sections is not None:
            # An initial sync whose filters leave every event in: the room's section as
            # any joined member's initial sync built it, when the room has not changed since.
            keys: dict[int, SectionKey | None] = req.loaded.get(_SECTION_KEYS, {})
            # `_read_pages` computed the room's key and tried to extend its section already.
            read = room.room_nid in keys
            key = keys.pop(room.room_nid) if read else await self._section_key(req, room)
            if key is not None:
                kept = sections.get(room.room_nid, key)
                if kept is None and not read:
                    kept = await self._derive_section(req, room, key)
                if kept is not None:
                    sections.hits += 1
                    return await self._joined_from_section(req, room, m, kept)
                sections.misses += 1
                if sections.computed_before(room.room_nid, key):
                    # A second initial sync of the room as it is: worth keeping for the next.
                    viewer = self.visibility.viewer(req.user_id, room, membership=(m.membership, m.event_nid))
                else:
                    key = None  # the first: computed as if sections did not exist
        last = await self.room_service.last_position(room.room_nid)
        has_events = newly_joined or req.full_state or last > since_pos
        parts = await self._room_parts(req, room, "join")
        if not has_events and not any(parts.values()):
            return None
        timeline: list[StoredEvent] = []
        limited = False
        formatted: list[dict[str, Any]] | None = None
        section: Section | None = None
        if has_events:
            start = None if (newly_joined or req.full_state) else since_pos
            limit = _limit(req)
            # An incremental timeline is usually the same for all the room's readers:
            # built once for them (sync/shared_sections.py) when this one's view is theirs.
            shared = (
                await self.shared.timeline(self, req, room, start, limit, m)
                if self.shared and start and len(await self.room_service.joined_local_users(room)) >= _SHARED_FROM
                else None
            )
            if shared is not None:
                timeline, limited, formatted, section = shared.events, shared.limited, shared.formatted, shared.shared
            else:
                timeline, limited = await self.timeline(req, room, start, req.now.events, limit, m, viewer)
        state_since = since_pos if not (newly_joined or req.full_state) else None
        if req.use_state_after:
            end = (
                timeline[-1].state_after if timeline and last > req.now.events
                else (await self.room_service.head(room)).snapshot
            )
            state = await self._state_after(req, room, timeline, state_since, end, changed=has_events)
        else:
            state = await self._state(req, room, timeline, state_since, limited, at_present=last <= req.now.events)
        # The summary only changes with membership: send it when that may have moved.
        summary_due = (
            req.since is None or newly_joined or req.full_state
            or (section.has_membership if section is not None else any(e.type == "m.room.member" for e in timeline))
            or any(e.type == "m.room.member" for e in state)
        )
        if key is not None and viewer is not None and viewer.saw_only_open_history():
            # Every member joined now sees this: kept for their initial syncs (if the room
            # has not changed meanwhile), and this response made from it as theirs will be.
            made = await self._make_section(req, room, key, timeline, limited, state)
            if made is not None:
                return await self._joined_from_section(req, room, m, made, parts)
        # The shared section as it is: its encoding is every such reader's (the first
        # of them builds the timeline object it encodes).
        timeline_part: EncodedJSON | dict[str, Any] | None = section.encoded_timeline if section is not None else None
        if timeline_part is None:
            timeline_obj = {
                "events": formatted if formatted is not None else await self.format_events(req, room, timeline, bundle=True),
                "limited": limited,
                "prev_batch": room_token((timeline[0].stream_ordering or 1) - 1) if timeline else room_token(req.now.events),
            }
            timeline_part = section.encoded(timeline_obj) if section is not None else timeline_obj
        entry: dict[str, Any] = {
            "timeline": timeline_part,
            _state_section(req): {"events": await self.format_events(req, room, state) if state else []},
            "ephemeral": {"events": parts["ephemeral"]},
            "account_data": {"events": parts["account_data"]},
            "summary": await self._summary(req, room) if summary_due else {},
        }
        await self._add_unread(req, room, m, entry)
        return entry

    async def timeline(
        self, req: SyncRequest, room: RoomRecord, after: int | None, upto: int, limit: int,
        membership: UserMembership | None = None, viewer: Viewer | None = None,
    ) -> tuple[list[StoredEvent], bool]:
        """The newest `limit` visible events in (after, upto], oldest first; limited if more exist
        (`viewer`: the user's view of the room, when the caller wants to ask it afterwards)."""
        out: list[StoredEvent] = []
        pos = upto
        limited = False
        page = _page(limit)
        ignored = await self.ignored(req)
        # An initial sync's first page, read with its batch of rooms (`_preload`).
        preloaded = req.loaded.get(_FIRST_PAGES, {}).pop(room.room_nid, None) if after is None else None
        # An incremental sync's range is usually in the room's window of recent events,
        # read once for all its readers (rooms/recent.py); the same pages, newest first.
        recent = await self.recent.between(room.room_nid, after, upto) if self.recent and after else None
        newest_first = recent[::-1] if recent is not None else []
        # The user's membership is known to the request: the viewer need not read it.
        viewer = viewer or self.visibility.viewer(
            req.user_id, room, membership=(membership.membership, membership.event_nid) if membership else None
        )
        offset = 0
        while len(out) < limit or not limited:
            size = page  # asked of this batch: fewer says the range is exhausted
            if recent is not None:
                batch = newest_first[offset:offset + page]
                offset += page
            else:
                if preloaded is not None and pos == upto == req.now.events:
                    batch, size = preloaded, limit + 1
                else:
                    batch = await self.event_store.room_stream(
                        room.room_nid, from_pos=pos, to_pos=after, backwards=True, limit=page
                    )
                if self.recent is not None and pos == upto:
                    # The first page is every event of the room in its range: the
                    # room's window can start from it (the next sync's range is above).
                    oldest = (batch[-1].stream_ordering or 1) - 1 if len(batch) == size else (after or 0)
                    self.recent.seed(room.room_nid, oldest, upto, batch)
            if not batch:
                break
            pos = (batch[-1].stream_ordering or 1) - 1
            tf = req.filter.timeline
            if tf.matches_everything and not ignored:
                wanted = batch  # the usual case: nothing to leave out, nothing to look at
            else:
                wanted = [
                    e for e in batch
                    if tf.matches(e.event, room.room_id)
                    # The spec's ignore_users: an ignored user's state events are still sent.
                    and (e.sender not in ignored or e.state_key is not None)
                ]
            if tf.by_relations and self.bundler is not None:
                wanted = await self.bundler.related_by(room, wanted, tf.related_by_senders, tf.related_by_rel_types)
            for ev in await viewer.filter(wanted):
                if len(out) >= limit:
                    # More in the window than fits: the client paginates for the rest.
                    limited = True
                    break
                out.append(ev)
            if limited or len(batch) < size:
                break
        out.reverse()
        return out, limited

    async def joined_throughout(self, user_id: str, event_nid: int, since: int) -> bool:
        """Whether a user whose membership event is now `event_nid` (a join) stayed
        joined since stream position `since`: walking back from it, every membership
        event after `since` is a join that replaced a join (a display name or avatar
        change). Otherwise the room is newly joined, and sent whole (a leave and
        rejoin too: what happened while away may not be the user's to see)."""
        key = ("m.room.member", user_id)
        nid: int | None = event_nid
        for _ in range(_MAX_PROFILE_CHANGES):
            event = (await self.event_store.get_events_by_nid([nid])).get(nid) if nid is not None else None
            content = event.event.get("content") if event is not None else None
            if event is None or not isinstance(content, dict) or content.get("membership") != "join":
                return False
            if (event.stream_ordering or 0) <= since:
                return True
            prev = (await self.room_service.state_events_at_snapshot(event.state_before, [key])).get(key)
            nid = prev.nid if prev is not None else None
        return False

    async def _state(
        self, req: SyncRequest, room: RoomRecord, timeline: list[StoredEvent], since_pos: int | None, limited: bool,
        *, at_present: bool = False,
    ) -> list[StoredEvent]:
        """State between the since token and the timeline's start (all of it on a full
        sync); `at_present`: the timeline ends at the room's present (see `_completed`)."""
        rs = self.room_service
        lazy = req.filter.state.lazy_load_members
        if since_pos is not None and not limited and not lazy:
            return []  # the common incremental case: no state, and no reading the room's
        timeline_ids = {e.nid for e in timeline}
        if timeline:
            at_start = await rs.state_ids_before(timeline[0])
        else:
            at_start = await rs.current_state_ids(room)
        if since_pos is None:
            wanted = await self._completed(room, timeline, timeline_ids, at_start, at_present)
        elif not limited:
            wanted = {}  # only the timeline's senders' members, below
        else:
            prior = await self.event_positions.last_event_at_or_before(room.room_nid, since_pos)
            before = await rs.state_ids_at_snapshot(prior[1]) if prior else {}
            completed = await self._completed(room, timeline, timeline_ids, at_start, at_present)
            wanted = {k: v for k, v in completed.items() if before.get(k) != v}
        wanted = {k: v for k, v in wanted.items() if v not in timeline_ids}
        return await self._members_and_filter(req, room, timeline, wanted, at_start, since_pos)

    async def _state_after(
        self, req: SyncRequest, room: RoomRecord, timeline: list[StoredEvent], since_pos: int | None,
        end: int | None, *, changed: bool,
    ) -> list[StoredEvent]:
        """v1.16's `state_after` (MSC4222): the state at the timeline's end (snapshot
        `end`) that differs from the state at the since token, or all of it on an initial
        or full_state sync. Unlike `state`, it keeps the timeline's own state events: a
        client that asked for it takes the room's state from it alone, so forks the
        timeline crosses cannot mislead it. `changed`: whether the room has events since
        the token (nothing can differ otherwise)."""
        if since_pos is not None and not changed:
            return []
        rs = self.room_service
        at_end = await rs.state_ids_at_snapshot(end)
        if since_pos is None:
            wanted = dict(at_end)
        else:
            prior = await self.event_positions.last_event_at_or_before(room.room_nid, since_pos)
            before = await rs.state_ids_at_snapshot(prior[1]) if prior else {}
            wanted = {k: v for k, v in at_end.items() if before.get(k) != v}
        return await self._members_and_filter(req, room, timeline, wanted, at_end, since_pos)

    async def _members_and_filter(
        self, req: SyncRequest, room: RoomRecord, timeline: list[StoredEvent], wanted: dict[tuple[str, str], int],
        reference: dict[tuple[str, str], int], since_pos: int | None,
    ) -> list[StoredEvent]:
        """The events of `wanted` the state filter keeps; with lazy-loaded members, only
        the timeline senders' (and the user's) members, taken from `reference` (the state
        the section describes) when the client was not sent them already."""
        rs = self.room_service
        lazy = req.filter.state.lazy_load_members
        timeline_ids = {e.nid for e in timeline}
        redundant = req.filter.state.include_redundant_members
        # Which client was sent what, for lazy loading only (its key is not free to build).
        client = (req.user_id, req.requester.device_id or "", repr(req.filter.state)) if lazy else None
        if client is not None:
            senders = {e.sender for e in timeline} | {req.user_id}
            wanted = {
                k: v for k, v in wanted.items() if k[0] != "m.room.member" or k[1] in senders
            }
            if since_pos is not None:
                # Members of this timeline's senders are sent even if unchanged, unless
                # this client was sent that very member event already (the spec's
                # redundant members, sent only when the filter asks for them).
                for sender in senders:
                    key = ("m.room.member", sender)
                    nid = reference.get(key)
                    if nid is None or nid in timeline_ids:
                        continue
                    if redundant or not self.lazy_members.known(client, room.room_id, sender, nid, since_pos):
                        wanted[key] = nid
        events = await rs.state_events(wanted)
        sf = req.filter.state
        # The usual filter leaves every event in: not asked of each (every room of an initial sync).
        state = list(events.values()) if sf.matches_everything else [
            e for e in events.values() if sf.matches(e.event, room.room_id)
        ]
        if client is not None and not redundant:
            self.lazy_members.record(
                client, room.room_id,
                [(e.state_key, e.nid) for e in [*state, *timeline] if e.type == "m.room.member" and e.state_key is not None],
                req.now.events,
            )
        return state

    async def _completed(
        self, room: RoomRecord, timeline: list[StoredEvent], timeline_ids: set[int],
        at_start: dict[tuple[str, str], int], at_present: bool,
    ) -> dict[tuple[str, str], int]:
        """The state at the timeline's start, completed so that it and the timeline's
        own state events give the client the room's state where the timeline ends:
        the room's present state when `at_present` (nothing newer in the room than
        this response), else the state after the timeline's last event.

        On a linear timeline that ends at the room's head they always do (each
        event's state before it is the state after the one before). Across a fork
        they may not: an event received from another server can sit on a branch
        that lacks state the room has, such as the syncing user's own join, which
        then is neither in the state before the timeline nor in the timeline, and a
        client would not know it is in the room. Each key whose value at the end
        is not in the timeline then takes that value (Synapse likewise sends the
        state at the end that the timeline does not cover).
        """
        if not timeline:
            return at_start
        end = (await self.room_service.head(room)).snapshot if at_present else timeline[-1].state_after
        if end == timeline[-1].state_after and all(
            b.state_before is not None and b.state_before == a.state_after for a, b in pairwise(timeline)
        ):
            return at_start
        return _completed_from(at_start, await self.room_service.state_ids_at_snapshot(end), timeline_ids)

    async def _summary(self, req: SyncRequest, room: RoomRecord) -> dict[str, Any]:
        return (await self._summary_parts(room)).for_user(req.user_id)

    async def _summary_parts(self, room: RoomRecord) -> Summary:
        """The room's summary for any reader: the heroes are the first five members (joined
        or invited; else left or banned) other than the reader, in order. It is a function
        of the room's state alone, so it is kept per room with the state snapshot it was
        computed at (the room's head then) and reused while the head is that snapshot: a
        message changes no summary, and the next initial sync of a room that only got
        messages does not look at its members and name again."""
        rs = self.room_service
        snapshot = (await rs.head(room)).snapshot
        kept = self._summaries.get(room.room_nid)
        if kept is not None and snapshot is not None and kept[0] == snapshot:
            return kept[1]
        summary = await self._compute_summary(room)
        if snapshot is not None and (await rs.head(room)).snapshot == snapshot:  # nothing changed meanwhile
            self._summaries.pop(room.room_nid, None)
            self._summaries[room.room_nid] = (snapshot, summary)
            if len(self._summaries) > _SUMMARIES_KEPT:
                del self._summaries[next(iter(self._summaries))]
        return summary

    async def _compute_summary(self, room: RoomRecord) -> Summary:
        members = await self.room_service.current_members(room)
        joined = [u for u, m, _ in members if m == "join"]
        invited = [u for u, m, _ in members if m == "invite"]
        # The name first: a named room needs no look at its alias, whose key a server
        # where no room has one has never seen (looked up through the whole state).
        named = False
        for key in _NAMING_KEYS:
            found = await self.room_service.current_state_events(room, [key])
            if any(e.event["content"].get("name") or e.event["content"].get("alias") for e in found.values()):
                named = True
                break
        return Summary(
            joined=len(joined), invited=len(invited), named=named,
            members=[] if named else heapq.nsmallest(6, joined + invited),
            departed=[] if named else heapq.nsmallest(6, (u for u, m, _ in members if m in ("leave", "ban"))),
        )

    # --- initial sections (sync/initial_sections.py) ---

    async def _section_key(self, req: SyncRequest, room: RoomRecord) -> SectionKey | None:
        """What the room is now, as an initial section is kept under; None when the room
        has events beyond this response (its section would not be the room's present)."""
        assert self.recent is not None
        last = await self.room_service.last_position(room.room_nid)
        if last > req.now.events:
            return None
        generation = self.recent.generation(room.room_nid)
        head = await self.room_service.head(room)
        return (last, generation, head.snapshot, _limit(req))

    async def _make_section(
        self, req: SyncRequest, room: RoomRecord, key: SectionKey, timeline: list[StoredEvent], limited: bool,
        state: list[StoredEvent],
    ) -> InitialSection | None:
        """The room's section as this initial sync computed it, kept if the room has not
        changed meanwhile; None (nothing kept) when which events a relation targets is not
        known (the batch read tells it)."""
        assert self.initial_sections is not None
        unrelated: set[str] | None = req.loaded.get(_UNRELATED)
        if self.bundler is not None and unrelated is None:
            return None
        summary = await self._summary_parts(room)
        room_id = room.room_id
        tl = [section_event(e, room_id, unrelated is not None and e.event_id not in unrelated) for e in timeline]
        st = [section_event(e, room_id, False) for e in state]
        # Without events the token is the response's own (`_joined_from_section`).
        prev_batch = room_token((timeline[0].stream_ordering or 1) - 1) if timeline else None
        section = InitialSection(
            key=key, timeline=tl, limited=limited, prev_batch=prev_batch, state=st, summary=summary,
            size=section_size(tl) + section_size(st),
        )
        if await self._section_key(req, room) == key:
            self.initial_sections.put(room.room_nid, section)
        return section

    async def _derive_section(self, req: SyncRequest, room: RoomRecord, key: SectionKey) -> InitialSection | None:
        """The room's section under `key` made from the one kept under an earlier key when
        all the room got since are new messages (the common change of a busy room, which
        otherwise has every initial sync after it compute the room afresh), kept and
        returned (`_extended` says when that is what a fresh computation gives); else None.
        A kept section that cannot be extended to the room's present never can be (the
        room moved past what it holds): it is dropped, not tried again at every sync."""
        sections = self.initial_sections
        old = sections.kept(room.room_nid) if sections is not None else None
        if sections is None or old is None or old.key == key:
            return None
        section = await self._extended(room, old, key)
        if section is None:
            if sections.kept(room.room_nid) is old:
                sections.forget(room.room_nid)
            return None
        if await self._section_key(req, room) != key or sections.kept(room.room_nid) is not old:
            return None  # the room moved meanwhile
        sections.put(room.room_nid, section)
        sections.derived += 1
        return section

    async def _extended(self, room: RoomRecord, old: InitialSection, key: SectionKey) -> InitialSection | None:
        """`old` extended to `key`: its timeline with the room's new events appended and the
        oldest dropped beyond the limit; None unless:

        * the limit is the kept key's, and the room's generation moved by exactly the
          events in (kept last, last] (nothing backfilled, purged or placed otherwise);
        * the new events continue the kept head's state one after the other up to the
          new head (each one's state before is the state after the one before it, the
          first's the kept head, the last's after the new head: no fork, no resolved
          head), and are accepted; none changes the history visibility (so all lie under
          the same open visibility the kept section was judged at), is a redaction or
          carries a relation (either changes how an earlier event is shown), and no
          relation targets one. A new state event (a join, a topic) is fine: it is shown
          in the timeline as any event, and the summary is the new head's.
        When only messages drop from the front and the new first event has the state
        before it that the kept first event had, the state section (the state at the
        timeline's start) is the kept one; otherwise (a young room's creation events or a
        recent join leaving the timeline) it is worked out again (`_shifted_state`).

        The cheap checks come first: most rooms that fail, fail before any read.
        """
        recent = self.recent
        last, generation, snapshot, limit = key
        old_last, old_generation, old_snapshot, old_limit = old.key
        count = generation - old_generation
        if (
            recent is None or not old.timeline or snapshot is None or old_snapshot is None
            or limit != old_limit or last <= old_last or count <= 0
        ):
            return None
        drop = max(0, len(old.timeline) + count - limit)
        new = await recent.between(room.room_nid, old_last, last)
        if not new or len(new) != count:
            return None
        at: int | None = old_snapshot
        for e in new:
            content = e.event.get("content")
            if (
                e.rejected is not None or e.redacted_by is not None or e.state_before != at
                or e.type in _NOT_EXTENDED or not isinstance(content, dict) or "m.relates_to" in content
            ):
                return None
            at = e.state_after
        if at != snapshot:
            return None
        if self.bundler is not None and await self.bundler.related_among(new):
            return None
        room_id = room.room_id
        # Only the new events the timeline keeps are formatted (a busy room may have got
        # many more than the limit since).
        kept_old = old.timeline[drop:]
        timeline = kept_old + [section_event(e, room_id, False) for e in new[max(0, drop - len(old.timeline)):]]
        state = old.state
        # The kept state's share of the size, without walking it (a big room's state is
        # thousands of events; the timeline at most the limit).
        state_size = old.size - section_size(old.timeline)
        if drop and (
            any(se.is_state for se in old.timeline[:drop]) or timeline[0].state_before != old.timeline[0].state_before
        ):
            shifted = await self._shifted_state(room, old, timeline, snapshot)
            if shifted is None:
                return None
            state, state_size = shifted, section_size(shifted)
        return InitialSection(
            key=key, timeline=timeline, limited=old.limited or drop > 0,
            prev_batch=room_token((timeline[0].stream_ordering or 1) - 1), state=state,
            summary=old.summary if snapshot == old_snapshot else await self._summary_parts(room),
            size=section_size(timeline) + state_size,
        )

    async def _shifted_state(
        self, room: RoomRecord, old: InitialSection, timeline: list[SectionEvent], head: int
    ) -> list[SectionEvent] | None:
        """The state section of an extended timeline whose start moved past state events:
        what `_state` computes for an initial sync whose timeline ends at the room's head
        (snapshot `head`), the state before the first event completed from the head's
        where the timeline does not carry it (`_completed`; on a linear timeline the
        completion changes nothing), less the timeline's own events, in the same order.
        The kept section's events (its state and what dropped from its timeline) are
        reused as they are; only an event neither holds is read. None when the first
        event's state is unknown."""
        first = timeline[0].state_before
        if first is None:
            return None
        rs = self.room_service
        in_timeline = {se.nid for se in timeline}
        completed = _completed_from(
            await rs.state_ids_at_snapshot(first), await rs.state_ids_at_snapshot(head), in_timeline
        )
        wanted = [nid for nid in completed.values() if nid not in in_timeline]
        known = {se.nid: se for se in old.state}
        # What drops off the timeline into the state is shown there as any state event:
        # one a relation targets is bundled only in a timeline.
        known.update((se.nid, se) for se in old.timeline if not se.related)
        missing = [nid for nid in wanted if nid not in known]
        if missing:
            found = await self.event_store.get_events_by_nid(missing)
            known.update((nid, section_event(e, room.room_id, False)) for nid, e in found.items())
        return [known[nid] for nid in wanted if nid in known]

    async def _joined_from_section(
        self, req: SyncRequest, room: RoomRecord, m: UserMembership, section: InitialSection,
        parts: dict[str, list[dict[str, Any]]] | None = None,
    ) -> dict[str, Any]:
        """The room's entry of an initial sync from its section: the timeline and state as
        encoded JSON with this response's ages (and what is per reader put back), the
        summary for this reader, and the reader's own parts (unless given) and unread counts."""
        if parts is None:
            parts = await self._room_parts(req, room, "join")
        now = self.clock.time_ms()
        events = await self._render_section(req, room, section.timeline, now, bundle=True)
        state = await self._render_section(req, room, section.state, now, bundle=False)
        timeline = b'{"events":[%b],"limited":%b,"prev_batch":%b}' % (
            events, b"true" if section.limited else b"false",
            dumps(section.prev_batch if section.prev_batch is not None else room_token(req.now.events)),
        )
        entry: dict[str, Any] = {
            "timeline": EncodedJSON(timeline),
            "state": EncodedJSON(b'{"events":[%b]}' % state),
            "ephemeral": {"events": parts["ephemeral"]},
            "account_data": {"events": parts["account_data"]},
            "summary": section.summary.for_user(req.user_id),
        }
        await self._add_unread(req, room, m, entry)
        return entry

    async def _add_unread(self, req: SyncRequest, room: RoomRecord, m: UserMembership, entry: dict[str, Any]) -> None:
        """A joined room's unread counts, as its reader asked: the main timeline's and each
        thread's apart when the filter reads threads apart, all together otherwise."""
        if req.filter.timeline.unread_thread_notifications:
            main, threads = await self.unread.thread_counts(req.user_id, room, m.stream_ordering, req.now.events)
            entry["unread_notifications"] = main
            entry["unread_thread_notifications"] = threads
        else:
            entry["unread_notifications"] = await self.unread.counts(
                req.user_id, room, m.stream_ordering, req.now.events
            )

    async def _render_section(
        self, req: SyncRequest, room: RoomRecord, events: list[SectionEvent], now: int, *, bundle: bool
    ) -> bytes:
        """The section's events as the comma-separated client JSON of this response: kept
        JSON with its age, or (redacted, bundled, sent by this device) formatted afresh."""
        user_id, device_id = req.user_id, req.requester.device_id
        out: list[bytes] = []
        afresh: list[int] = []
        for i, se in enumerate(events):
            # `render` inlined (it runs for every event of every room of an initial sync);
            # only an event this device sent can carry its transaction ID.
            prefix = se.prefix
            if prefix is None or (se.txn_device is not None and se.txn_device == device_id):
                afresh.append(i)
                out.append(b"")
            else:
                age = now - se.origin_ts
                out.append(b"%b%d}}" % (prefix, age if age > 0 else 0))
        if afresh:
            candidates = list(afresh)
            chosen, stored = await self._afresh(events, afresh, user_id, device_id)
            formatted = await self.format_events(req, room, stored)
            if bundle and self.bundler is not None:
                pairs = [(e, f) for se, e, f in zip(chosen, stored, formatted, strict=True) if se.related]
                if pairs:
                    await self.bundler.bundle(
                        room, req.user_id, [e for e, _ in pairs], [f for _, f in pairs], device_id
                    )
            for i, f in zip(afresh, formatted, strict=True):
                out[i] = dumps(f)
            for i in candidates:
                if not out[i]:  # sent from a device of the same ID by another user: as kept
                    se = events[i]
                    assert se.prefix is not None
                    age = now - se.origin_ts
                    out[i] = b"%b%d}}" % (se.prefix, age if age > 0 else 0)
        return b",".join(out)

    async def _afresh(
        self, events: list[SectionEvent], afresh: list[int], user_id: str, device_id: str | None
    ) -> tuple[list[SectionEvent], list[StoredEvent]]:
        """The section events of `afresh` to format for this reader, with their stored
        events: kept with the section (formatted per reader), or read from the event
        cache (sent from this device). `afresh` is narrowed to those whose transaction
        ID this reader sees (a device ID is unique only among its user's devices)."""
        wanted = [events[i].nid for i in afresh if events[i].event is None]
        read = await self.event_store.get_events_by_nid(wanted) if wanted else {}
        kept: list[int] = []
        chosen: list[SectionEvent] = []
        stored: list[StoredEvent] = []
        for i in afresh:
            se = events[i]
            e = se.event if se.event is not None else read.get(se.nid)
            if e is None or (se.prefix is not None and e.transaction_id_for(user_id, device_id) is None):
                continue
            kept.append(i)
            chosen.append(se)
            stored.append(e)
        afresh[:] = kept
        return chosen, stored

    # --- other memberships ---

    async def stripped_state(
        self, room: RoomRecord, m: UserMembership, hide_from: AbstractSet[str] = frozenset()
    ) -> list[dict[str, Any]] | None:
        """The stripped state of an invite or knock; None if its sender is in `hide_from`."""
        rs = self.room_service
        member = (await self.event_store.get_events_by_nid([m.event_nid]))[m.event_nid]
        if member.sender in hide_from:
            return None
        member_entry = {
            "type": member.type, "state_key": member.state_key, "content": member.event["content"],
            "sender": member.sender, "event_id": member.event_id,
            "origin_server_ts": member.event["origin_server_ts"],
        }
        if member.outlier:
            # A room this server is not in: what its server sent is all there is.
            remote = await self.room_store.invite_state(member.nid) or []
            return [e for e in remote if (e.get("type"), e.get("state_key")) != ("m.room.member", member.state_key)] + [
                member_entry
            ]
        ids = await rs.state_ids_before(member)
        # The inviter's own member event too (the spec lets a server add events), as
        # Synapse does: clients name who invited with it.
        keys = [(t, "") for t in STRIPPED_STATE_TYPES]
        if member.sender != member.state_key:
            keys.append(("m.room.member", member.sender))
        events = await rs.state_events(ids, keys)
        stripped = [
            {"type": e.type, "state_key": e.state_key, "content": e.event["content"], "sender": e.sender}
            for e in events.values()
        ]
        stripped.append(member_entry)
        return stripped

    async def _left_room(self, req: SyncRequest, room: RoomRecord, m: UserMembership) -> dict[str, Any] | None:
        since_pos = req.since.events if req.since else None
        member = (await self.event_store.get_events_by_nid([m.event_nid])).get(m.event_nid)
        if member is not None and member.outlier:
            # Rejecting a remote invite or retracting a knock on a room this server is
            # not in: the leave event is the room's whole known timeline.
            return {
                "timeline": {"events": await self.format_events(req, room, [member]), "limited": False,
                             "prev_batch": room_token(m.stream_ordering)},
                # state_after alone tells a client the room's state: the leave is all of it here.
                _state_section(req): {
                    "events": await self.format_events(req, room, [member]) if req.use_state_after else []
                },
                "account_data": {"events": (await self._room_parts(req, room, "leave"))["account_data"]},
            }
        timeline, limited = await self.timeline(req, room, since_pos, m.stream_ordering, _limit(req), m)
        if req.use_state_after:
            end = timeline[-1].state_after if timeline else (member.state_after if member is not None else None)
            state = await self._state_after(req, room, timeline, since_pos, end, changed=True)
        else:
            state = await self._state(req, room, timeline, since_pos, limited or since_pos is None)
        return {
            "timeline": {
                "events": await self.format_events(req, room, timeline, bundle=True),
                "limited": limited,
                "prev_batch": room_token((timeline[0].stream_ordering or 1) - 1) if timeline else room_token(m.stream_ordering),
            },
            _state_section(req): {"events": await self.format_events(req, room, state)},
            "account_data": {"events": (await self._room_parts(req, room, "leave"))["account_data"]},
        }

    async def ignored(self, req: SyncRequest) -> frozenset[str]:
        """Whose messages and invites the user does not see (ignoring oneself hides nothing);
        kept in memory per user (sync/ignored.py)."""
        return await self.ignored_users.get(req.user_id)

    async def format_events(
        self, req: SyncRequest, room: RoomRecord, events: list[StoredEvent], *, bundle: bool = False,
        for_device: bool = True,
    ) -> list[dict[str, Any]]:
        """Client JSON of the events (`for_device` False: without the requesting device's
        transaction IDs, for JSON shared by many readers)."""
        if not events:  # the state section of most incremental syncs
            return []
        device_id = req.requester.device_id if for_device else None
        now = self.clock.time_ms()
        redaction_ids = [e.redacted_by for e in events if e.redacted_by]
        redactions = await self.event_store.get_events(redaction_ids) if redaction_ids else {}
        out = [
            client_event(
                e, room.room_id, room.room_version, now, device_id=device_id, user_id=req.user_id,
                redaction=redactions.get(e.redacted_by) if e.redacted_by else None,
            )
            for e in events
        ]
        if bundle and self.bundler is not None and events:
            # Events an initial sync's batch read found no relation targets need no bundling.
            unrelated: set[str] | None = req.loaded.get(_UNRELATED)
            if unrelated is None:
                await self.bundler.bundle(room, req.user_id, events, out, device_id)
            else:
                pairs = [(e, o) for e, o in zip(events, out, strict=True) if e.event_id not in unrelated]
                if pairs:
                    await self.bundler.bundle(room, req.user_id, [e for e, _ in pairs], [o for _, o in pairs], device_id)
        return out


def _page(limit: int) -> int:
    """Events read per page of a timeline (more than asked: some may be filtered out)."""
    return max(limit, 20)


def _limit(req: SyncRequest) -> int:
    limit = req.filter.timeline.limit if req.filter.timeline.limit is not None else DEFAULT_TIMELINE_LIMIT
    return min(limit, MAX_TIMELINE_LIMIT)
