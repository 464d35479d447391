"""Which event is nearest a point in time: `GET /timestamp_to_event` for clients
(`/_matrix/client/v1/rooms/{roomId}/timestamp_to_event`) and for other servers
(`/_matrix/federation/v1/timestamp_to_event/{roomId}`).

Both scan the room's timeline events in timestamp order from `ts` in the direction
asked, skipping those the reader (a user's `Viewer`, a server's `ServerViewer`) may
not see, up to MAX_SCAN events.

A server that joined late, or has a hole in its DAG, may lack the true answer: the
nearest event it holds might have older or newer events, held elsewhere, between it
and `ts`. So, as Synapse does, the client lookup asks the other servers in the room
(`ask_others`) when it found nothing, or when the event it found may sit next to
such a gap: going forward, when a prev event of it is not in our timeline (history
before it that we lack); going back, when it is not a forward extremity and no
later event of ours cites it (a hole after it). The first server that answers with
an event closer to `ts` than ours wins, once its event is fetched with `/event`
and passes the PDU checks (a server cannot make us answer with an event that does
not exist, is of another room, or has another timestamp than it claimed). The
client will want to read around it (`/context`, `/messages`), so when it is not in
our timeline one batch of backfill is run first, which brings it in when it lies
within a batch of our oldest events (the late-joiner's case); once held, the
reader's history visibility is applied to it like to ours.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from federation.client import quote_path_segment
from federation.events import get_room_version, prev_event_ids
from homeserver.errors import not_found
from homeserver.federation.pdu_checks import PduError
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from federation.client import FederationClient
    from homeserver.federation.access import ServerGate
    from homeserver.federation.backfill import RoomBackfill
    from homeserver.federation.state_fetch import StateFetcher
    from homeserver.rooms.servers import RoomServers
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventStore

logger = logging.getLogger(__name__)

# Events the reader may not see are skipped, but only so many.
MAX_SCAN = 1000
_BATCH = 100
# How many servers of the room are asked before giving up on a better answer.
MAX_SERVERS = 5
# Events asked for when the answer is another server's event we lack.
BACKFILL_BATCH = 50
# Later events looked at for one that cites the found event (going back).
_CHILD_SCAN = 20


@dataclass(frozen=True)
class Nearest:
    event_id: str
    origin_server_ts: int

    def answer(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "origin_server_ts": self.origin_server_ts}


class TimestampLookup:
    def __init__(
        self, *, client: FederationClient | None, gate: ServerGate, events: EventStore,
        room_service: RoomService, room_servers: RoomServers, state_fetcher: StateFetcher,
        backfill: RoomBackfill,
    ) -> None:
        self.backfill = backfill
        self.client = client  # None when federation is off
        self.gate = gate
        self.events = events
        self.room_service = room_service
        self.room_servers = room_servers
        self.state_fetcher = state_fetcher

    async def local(
        self, room: RoomRecord, ts: int, backwards: bool, can_see: Callable[[StoredEvent], Awaitable[bool]],
        bound: int | None = None,
    ) -> StoredEvent | None:
        """Our timeline event nearest `ts` in the direction asked that the reader may
        see (at or below stream position `bound`, when given)."""
        after: tuple[int, int] | None = None
        scanned = 0
        while scanned < MAX_SCAN:
            batch = await self.events.events_by_timestamp(
                room.room_nid, ts, backwards=backwards, after=after, limit=_BATCH
            )
            for ev in batch:
                assert ev.stream_ordering is not None
                if (bound is None or ev.stream_ordering <= bound) and await can_see(ev):
                    return ev
            if len(batch) < _BATCH:
                return None
            scanned += len(batch)
            last = batch[-1]
            after = (int(last.event["origin_server_ts"]), last.stream_ordering or 0)
        return None

    async def for_server(self, origin: str, room_id: str, ts: int, backwards: bool) -> dict[str, Any]:
        """The federation endpoint's answer: our nearest event `origin` may see (the
        room gate first: 403 for a server that may not read the room), else 404."""
        access = await self.gate.authorise(room_id, origin)
        found = await self.local(access.room, ts, backwards, self.gate.viewer(access).can_see)
        if found is None:
            word = "backward" if backwards else "forward"
            raise not_found(f"Unable to find event from {ts} in {word} direction")
        return Nearest(found.event_id, int(found.event["origin_server_ts"])).answer()

    async def nearest(
        self, room: RoomRecord, ts: int, backwards: bool, can_see: Callable[[StoredEvent], Awaitable[bool]],
        bound: int | None = None,
    ) -> Nearest | None:
        """The client's answer: ours, or another server's when ours may be incomplete
        and theirs is closer (module docstring)."""
        found = await self.local(room, ts, backwards, can_see, bound)
        ours = None if found is None else Nearest(found.event_id, int(found.event["origin_server_ts"]))
        if found is not None and not await self._may_lack_history(room, found, backwards):
            return ours
        theirs = await self.ask_others(room, ts, backwards)
        if theirs is None or (ours is not None and abs(theirs.origin_server_ts - ts) >= abs(ours.origin_server_ts - ts)):
            return ours
        held = await self.events.get_event(theirs.event_id)
        if held is None or held.stream_ordering is None:
            try:
                await self.backfill.backfill(room, BACKFILL_BATCH)
            except Exception as e:  # the answer stands without it
                logger.info("backfill towards %s in %s failed: %s", theirs.event_id, room.room_id, e)
            held = await self.events.get_event(theirs.event_id)
        if held is not None and held.stream_ordering is not None and not await can_see(held):
            return ours  # now that it is ours to judge: the reader may not see it
        return theirs

    async def _may_lack_history(self, room: RoomRecord, event: StoredEvent, backwards: bool) -> bool:
        if not room.federate or self.client is None:
            return False
        if not backwards:
            prevs = prev_event_ids(event.event)
            held = await self.events.get_events(prevs)
            return any(p not in held or held[p].stream_ordering is None for p in prevs)
        head = await self.room_service.head(room)
        if event.nid in head.extremities:
            return False
        assert event.stream_ordering is not None
        later = await self.events.room_stream(
            room.room_nid, from_pos=event.stream_ordering, to_pos=None, backwards=False, limit=_CHILD_SCAN
        )
        return not any(event.event_id in prev_event_ids(ev.event) for ev in later)

    async def ask_others(self, room: RoomRecord, ts: int, backwards: bool) -> Nearest | None:
        """The first checked answer of the room's other servers, or None."""
        if self.client is None or not room.federate:
            return None
        rv = get_room_version(room.room_version)
        path = f"/_matrix/federation/v1/timestamp_to_event/{quote_path_segment(room.room_id)}"
        for server in sorted(await self.room_servers.servers_in_room(room))[:MAX_SERVERS]:
            try:
                body = await self.client.get_json(server, path, query={"ts": str(ts), "dir": "b" if backwards else "f"})
                event_id = body.get("event_id") if isinstance(body, dict) else None
                claimed = body.get("origin_server_ts") if isinstance(body, dict) else None
                if not isinstance(event_id, str) or not event_id.startswith("$") or type(claimed) is not int:
                    raise PduError("answered without an event ID and timestamp")
                held = await self.events.get_event(event_id)
                if held is not None and held.room_nid == room.room_nid and held.rejected is None:
                    event = held.event
                else:
                    event = (await self.state_fetcher.fetch_events(server, room, rv, [event_id]))[event_id]
                if event.get("origin_server_ts") != claimed or (claimed < ts if not backwards else claimed > ts):
                    raise PduError(f"answered with {event_id}, whose timestamp is not what it claimed or asked")
                return Nearest(event_id, claimed)
            except Exception as e:  # one server's failure is a reason to ask the next
                logger.info("timestamp_to_event at %s for %s: %s", server, room.room_id, e)
        return None
