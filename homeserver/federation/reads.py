"""The federation read APIs' behaviour: single events, state at an event, auth
chains, backfill and missing events (spec: "Retrieving events", "Backfilling
and retrieving missing events").

Every method first passes the room gate (`ServerGate.authorise`), then serves each
event through a `ServerViewer`, so no path can hand another server an event of
a room it may not read, or the content of an event its users could not see.

Withheld events are served *redacted* rather than dropped: backfill and
get_missing_events return pieces of the DAG, and a hole would leave the
requester chasing prev_events it can never get. The redacted form keeps the
event ID, hashes and signatures, so it verifies; its content hash does not
match, which tells the receiver it is redacted.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from federation.events import compute_auth_chain, get_room_version, prev_event_ids
from homeserver.errors import MatrixError, not_found
from homeserver.federation.access import ServerAccess, ServerGate, federation_pdu
from homeserver.records.events import StoredEvent

if TYPE_CHECKING:
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore

# Bounds on one request's walk: a peer cannot make us read an unbounded DAG.
MAX_BACKFILL = 100
MAX_MISSING_EVENTS = 100
DEFAULT_MISSING_EVENTS = 10


def _by_depth(events: Iterable[StoredEvent]) -> list[StoredEvent]:
    """Oldest first: depth, then our stream order, then ID (total and stable)."""
    return sorted(
        events, key=lambda e: (int(e.event.get("depth", 0)), e.stream_ordering or 0, e.event_id)
    )


def _prev_ids(event: StoredEvent) -> list[str]:
    return prev_event_ids(event.event)


class FederationReads:
    def __init__(
        self, *, gate: ServerGate, rooms: RoomStore, events: EventStore, room_service: RoomService
    ) -> None:
        self.gate = gate
        self.rooms = rooms
        self.events = events
        self.room_service = room_service

    async def _event_in_room(self, access: ServerAccess, event_id: str) -> StoredEvent:
        """An accepted event of the gated room, else 404 (whether it is unknown or
        belongs to another room: the caller's rights in that room were not checked)."""
        ev = await self.events.get_event(event_id)
        if ev is None or ev.room_nid != access.room.room_nid or ev.rejected is not None:
            raise not_found(f"Could not find event {event_id}")
        return ev

    async def _known_in_room(self, access: ServerAccess, event_ids: Iterable[str]) -> list[StoredEvent]:
        found = await self.events.get_events(list(dict.fromkeys(event_ids)))
        return [
            ev for ev in found.values()
            if ev.room_nid == access.room.room_nid and ev.rejected is None and not ev.outlier
        ]

    async def _auth_chain(self, access: ServerAccess, start: Iterable[StoredEvent]) -> list[StoredEvent]:
        """The auth chains of `start`, loaded from the store layer by layer and
        computed by the protocol's `compute_auth_chain` (which knows the v12
        implicit create event)."""
        rv = get_room_version(access.room.room_version)
        loaded: dict[str, dict[str, Any]] = {}
        stored: dict[str, StoredEvent] = {}
        for ev in start:
            loaded[ev.event_id] = ev.event
        start_ids = list(loaded)
        unknown: set[str] = set()
        while True:
            chain = compute_auth_chain(start_ids, loaded, rv)
            missing = [e for e in chain if e not in stored and e not in unknown]
            if not missing:
                break
            found = await self.events.get_events(missing)
            for event_id in missing:
                got = found.get(event_id)
                if got is None or got.room_nid != access.room.room_nid:
                    unknown.add(event_id)  # never leak another room's events
                    continue
                stored[event_id] = got
                loaded[event_id] = got.event
        return _by_depth(stored.values())

    def _pdus(self, access: ServerAccess, events: Iterable[StoredEvent]) -> list[dict[str, Any]]:
        """State and auth events, served whole (they are needed to run the auth rules;
        redacted copies already keep every key the rules read)."""
        return [federation_pdu(ev, access.room.room_version) for ev in events]

    # --- /event, /state, /state_ids, /event_auth ---

    async def event(self, origin: str, event_id: str) -> dict[str, Any]:
        """The PDU of one event, redacted if the origin may not see it."""
        ev = await self.events.get_event(event_id)
        if ev is None or ev.rejected is not None:
            raise not_found(f"Could not find event {event_id}")
        room = await self.rooms.get_room_by_nid(ev.room_nid)
        if room is None:
            raise not_found(f"Could not find event {event_id}")
        access = await self.gate.authorise(room.room_id, origin)
        return await self.gate.viewer(access).pdu(ev)

    async def _state_before(self, origin: str, room_id: str, event_id: str) -> tuple[ServerAccess, list[StoredEvent]]:
        access = await self.gate.authorise(room_id, origin)
        ev = await self._event_in_room(access, event_id)
        if ev.outlier:
            raise not_found(f"The state at {event_id} is not known here")
        if not access.joined and not await self.gate.viewer(access).can_see(ev):
            # Readers of a world-readable room see the state only where they see the event.
            raise MatrixError(403, "M_FORBIDDEN", "You may not see the state at this event")
        state_ids = await self.room_service.state_ids_before(ev)
        by_nid = await self.events.get_events_by_nid(state_ids.values())
        return access, _by_depth(by_nid.values())

    async def state(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        """The room state before `event_id` and the auth chain of that state."""
        access, state = await self._state_before(origin, room_id, event_id)
        chain = await self._auth_chain(access, state)
        return {"pdus": self._pdus(access, state), "auth_chain": self._pdus(access, chain)}

    async def state_ids(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        access, state = await self._state_before(origin, room_id, event_id)
        chain = await self._auth_chain(access, state)
        return {"pdu_ids": [ev.event_id for ev in state], "auth_chain_ids": [ev.event_id for ev in chain]}

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        """The full auth chain of one event (the event itself excluded)."""
        access = await self.gate.authorise(room_id, origin)
        ev = await self._event_in_room(access, event_id)
        if not access.joined and not await self.gate.viewer(access).can_see(ev):
            raise MatrixError(403, "M_FORBIDDEN", "You may not see this event")
        return {"auth_chain": self._pdus(access, await self._auth_chain(access, [ev]))}

    # --- /backfill, /get_missing_events ---

    async def backfill(self, origin: str, room_id: str, from_ids: list[str], limit: int) -> list[dict[str, Any]]:
        """The given events and those before them, newest first, at most `limit`.

        A walk of prev_events that always takes the deepest event not yet taken
        (ties: newest stream position, then ID), so with several starting points
        the result is the `limit` most recent events behind all of them, which is
        what a server filling a gap backwards wants next. Events we hold only as
        outliers have no place in our DAG and end the walk along that branch.
        """
        access = await self.gate.authorise(room_id, origin)
        start = await self._known_in_room(access, from_ids)
        if not start:
            raise not_found("None of the events to backfill from are known here")
        limit = min(limit, MAX_BACKFILL)
        viewer = self.gate.viewer(access)
        seen = {ev.event_id for ev in start}
        heap: list[tuple[int, int, str, StoredEvent]] = []

        def push(ev: StoredEvent) -> None:
            heapq.heappush(heap, (-int(ev.event.get("depth", 0)), -(ev.stream_ordering or 0), ev.event_id, ev))

        for ev in start:
            push(ev)
        out: list[dict[str, Any]] = []
        while heap and len(out) < limit:
            ev = heapq.heappop(heap)[3]
            out.append(await viewer.pdu(ev))
            prevs = [p for p in _prev_ids(ev) if p not in seen]
            seen.update(prevs)
            for prev in await self._known_in_room(access, prevs):
                push(prev)
        return out

    async def missing_events(
        self,
        origin: str,
        room_id: str,
        *,
        earliest: list[str],
        latest: list[str],
        limit: int,
        min_depth: int,
    ) -> list[dict[str, Any]]:
        """A breadth-first walk of prev_events back from `latest` (which are not
        returned), neither returning nor walking past `earliest` (the requester has
        those) or events shallower than `min_depth`; at most `limit` events,
        returned oldest first so the requester can process them in order."""
        access = await self.gate.authorise(room_id, origin)
        start = await self._known_in_room(access, latest)
        if not start:
            raise not_found("None of the latest events are known here")
        limit = min(limit, MAX_MISSING_EVENTS)
        viewer = self.gate.viewer(access)
        seen = set(earliest) | {ev.event_id for ev in start} | set(latest)
        level = _by_depth(start)
        found: list[StoredEvent] = []
        while level and len(found) < limit:
            wanted: list[str] = []
            for ev in reversed(level):  # newest first within a level
                for prev in _prev_ids(ev):
                    if prev not in seen:
                        seen.add(prev)
                        wanted.append(prev)
            known = {ev.event_id: ev for ev in await self._known_in_room(access, wanted)}
            level = []
            for event_id in wanted:
                candidate = known.get(event_id)
                if candidate is None or int(candidate.event.get("depth", 0)) < min_depth:
                    continue
                if len(found) >= limit:
                    break
                found.append(candidate)
                level.append(candidate)
        return [await viewer.pdu(ev) for ev in _by_depth(found)]
