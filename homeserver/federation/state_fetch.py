"""Learning the room state at events this server does not have, from another server.

When the DAG has a hole (prev events that /get_missing_events could not
supply, or the oldest events of a backfilled batch) the state before an event
cannot be computed from its prev events. It is asked for instead, the way the
spec's "Retrieving events" section describes: `GET /state_ids/{roomId}?event_id=P`
names the state before P and its auth chain by event ID; the events not held
here are fetched (one by one with `/event`, or all at once with `/state` when
many are missing), checked (format, signatures, content hash) and stored as
outliers. The state *after* a missing prev P is then that state plus P itself
when P is a state event, and the state before the event whose prevs these are
is the resolution of the states after each prev, as for any event.

An event's missing auth events come the same way (`fetch_auth_chain`): its whole
auth chain from `GET /event_auth/{roomId}/{eventId}`, or, when the peer does not
serve that endpoint or fails to answer it, one by one with `/event`: the event's
auth events not held here, then theirs, until every one is held here or fetched
(at most MAX_AUTH_FETCHES). A peer that stopped answering /event_auth (it is
optional in practice: some servers refuse it for events they consider private)
can still be followed.

Everything the peer answers is bounded and checked: IDs must be event IDs of
this room, fetched events must hash to the ID they were asked for, and a state
naming two events for one (type, state_key) is refused.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from federation.client import quote_path_segment
from federation.events import auth_event_ids, prev_event_ids
from federation.events.room_versions import RoomVersion
from homeserver.federation.pdu_checks import PduError, event_in_room
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from federation.client import FederationClient
    from homeserver.federation.pdu_checks import PduChecks
    from homeserver.rooms.received import ReceivedEvents
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventStore

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]
V1 = "/_matrix/federation/v1"
# A state (or auth chain) larger than this is not taken from a peer in one go.
MAX_STATE_IDS = 50_000
# Missing events up to this many are fetched one by one; beyond, with one /state.
MAX_SINGLE_FETCHES = 20
# A gap is closed from at most this many prev events.
MAX_PREVS = 10
# An auth chain taken from /event_auth is cut at this many events.
MAX_AUTH_CHAIN = 500
# Without /event_auth, at most this many auth events are fetched one by one for one event.
MAX_AUTH_FETCHES = 50


def _event_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_STATE_IDS:
        raise PduError("state_ids answered with an unusable list")
    ids = [v for v in value if isinstance(v, str) and v.startswith("$")]
    if len(ids) != len(value):
        raise PduError("state_ids answered with something that is not an event ID")
    return list(dict.fromkeys(ids))


class StateFetcher:
    def __init__(
        self, *, client: FederationClient | None, checks: PduChecks, received: ReceivedEvents,
        events: EventStore, room_service: RoomService,
    ) -> None:
        self.client = client  # None when federation is off
        self.checks = checks
        self.received = received
        self.events = events
        self.room_service = room_service

    async def _get(self, server: str, path: str, query: dict[str, str] | None = None) -> Any:
        client = self.client
        if client is None:
            raise PduError("Federation is disabled")
        try:
            return await client.get_json(server, path, query=query)
        except Exception as e:
            raise PduError(f"{server} did not answer {path.split('/')[4]}: {e}") from None

    async def fetch_events(
        self, server: str, room: RoomRecord, rv: RoomVersion, event_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        """The events with these IDs, each from `/event` and checked; an answer that
        is not the event asked for (another ID, another room) is refused."""
        out: dict[str, dict[str, Any]] = {}
        for event_id in event_ids:
            body = await self._get(server, f"{V1}/event/{quote_path_segment(event_id)}")
            pdus = body.get("pdus") if isinstance(body, dict) else None
            if not isinstance(pdus, list) or len(pdus) != 1 or not isinstance(pdus[0], dict):
                raise PduError(f"/event answered without the event {event_id}")
            event = await self.checks.check(pdus[0], rv)
            if event["event_id"] != event_id or not event_in_room(event, room.room_id, rv):
                raise PduError(f"/event answered with another event than {event_id}")
            out[event_id] = event
        return out

    async def fetch_auth_chain(
        self, server: str, room: RoomRecord, rv: RoomVersion, event: dict[str, Any]
    ) -> None:
        """Store (as outliers) the auth events of `event` that are missing here, as
        `server` gives them, each checked: the chain from /event_auth, or, when that
        fails, one by one (`fetch_auth_events`)."""
        try:
            chain = await self._event_auth(server, room, rv, event["event_id"])
        except PduError as e:
            logger.info("falling back to /event for the auth events of %s: %s", event["event_id"], e)
            chain = await self.fetch_auth_events(server, room, rv, event)
        await self.received.persist_outliers(room, sorted(chain, key=lambda e: e.get("depth", 0)))

    async def _event_auth(
        self, server: str, room: RoomRecord, rv: RoomVersion, event_id: str
    ) -> list[dict[str, Any]]:
        """The checked events of this room in the `/event_auth` answer."""
        body = await self._get(
            server, f"{V1}/event_auth/{quote_path_segment(room.room_id)}/{quote_path_segment(event_id)}"
        )
        chain = body.get("auth_chain") if isinstance(body, dict) else None
        if not isinstance(chain, list):
            raise PduError("event_auth answered without an auth chain")
        checked = []
        for pdu in chain[:MAX_AUTH_CHAIN]:
            if isinstance(pdu, dict):
                ev = await self.checks.check(pdu, rv)
                if event_in_room(ev, room.room_id, rv):  # never another room's events
                    checked.append(ev)
        return checked

    async def fetch_auth_events(
        self, server: str, room: RoomRecord, rv: RoomVersion, event: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The auth events of `event` missing here, walking the auth DAG down from it
        with `/event` until every reference is held here or fetched; each fetched
        event is checked like any other. Bounded by MAX_AUTH_FETCHES."""
        fetched: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(auth_event_ids(event)))
        while wanted:
            have = await self.events.get_events(wanted)
            missing = [e for e in wanted if e not in have and e not in fetched]
            if len(fetched) + len(missing) > MAX_AUTH_FETCHES:
                raise PduError(f"The auth chain of {event['event_id']} needs more than {MAX_AUTH_FETCHES} fetches")
            new = await self.fetch_events(server, room, rv, missing)
            fetched.update(new)
            wanted = list(dict.fromkeys(a for ev in new.values() for a in auth_event_ids(ev) if a not in fetched))
        return list(fetched.values())

    async def _fetch_by_state(
        self, server: str, room: RoomRecord, rv: RoomVersion, at: str, wanted: set[str]
    ) -> dict[str, dict[str, Any]]:
        """Many missing events at once: the full `/state` answer at `at`, keeping
        only the checked events that were asked for."""
        body = await self._get(
            server, f"{V1}/state/{quote_path_segment(room.room_id)}", {"event_id": at}
        )
        if not isinstance(body, dict):
            raise PduError("/state answered with something that is not an object")
        given: list[dict[str, Any]] = []
        for key in ("pdus", "auth_chain"):
            pdus = body.get(key)
            if not isinstance(pdus, list) or len(pdus) > MAX_STATE_IDS:
                raise PduError(f"/state answered without a usable '{key}'")
            given.extend(pdu for pdu in pdus if isinstance(pdu, dict))
        # A large room's whole state: verified in bulk, each event once.
        return {
            event["event_id"]: event
            for event in await self.checks.check_many(given, rv)
            if event["event_id"] in wanted and event_in_room(event, room.room_id, rv)
        }

    async def state_before(
        self, server: str, room: RoomRecord, rv: RoomVersion, event_id: str
    ) -> dict[StateKey, int]:
        """The state before `event_id` according to `server`, every event of it and
        of its auth chain stored here (as outliers when they were new)."""
        body = await self._get(
            server, f"{V1}/state_ids/{quote_path_segment(room.room_id)}", {"event_id": event_id}
        )
        if not isinstance(body, dict):
            raise PduError("state_ids answered with something that is not an object")
        pdu_ids = _event_ids(body.get("pdu_ids"))
        auth_ids = _event_ids(body.get("auth_chain_ids"))
        wanted = list(dict.fromkeys([*pdu_ids, *auth_ids]))
        have = await self.events.get_events(wanted)
        missing = [e for e in wanted if e not in have]
        if len(missing) > MAX_SINGLE_FETCHES:
            fetched = await self._fetch_by_state(server, room, rv, event_id, set(missing))
        else:
            fetched = await self.fetch_events(server, room, rv, missing)
        if len(fetched) != len(missing):
            raise PduError(f"{server} could not supply the state at {event_id}")
        # A state handed over must be allowed by its own auth events, as at a join.
        failures = await self.checks.chain_failures(fetched, await self.checks.create_event(room.room_id, rv, fetched), rv)
        bad = sorted(e for e in pdu_ids if e in failures)
        if bad:
            raise PduError(f"The state at {event_id} holds {bad[0]}, which fails the auth rules: {failures[bad[0]]}")
        fetched = {i: e for i, e in fetched.items() if i not in failures}
        await self.received.persist_outliers(room, sorted(fetched.values(), key=lambda e: e.get("depth", 0)))
        stored = await self.events.get_events(pdu_ids)
        state: dict[StateKey, int] = {}
        for eid in pdu_ids:
            ev = stored.get(eid)
            if ev is None or ev.room_nid != room.room_nid or ev.state_key is None:
                raise PduError(f"The state at {event_id} names {eid}, which is not a state event of the room")
            key = (ev.type, ev.state_key)
            if key in state:
                raise PduError(f"The state at {event_id} names two events for {key}")
            state[key] = ev.nid
        return state

    async def state_at_prevs(
        self, server: str, room: RoomRecord, rv: RoomVersion, event: dict[str, Any]
    ) -> dict[StateKey, int]:
        """The state before `event`: the resolved states after its prev events, those
        held here read locally, the others asked of `server`."""
        prev_ids = list(dict.fromkeys(prev_event_ids(event)))
        if not prev_ids or len(prev_ids) > MAX_PREVS:
            raise PduError("Cannot recover the state at this many prev events")
        rs = self.room_service
        known = await self.events.get_events(prev_ids)
        unknown = [p for p in prev_ids if p not in known]
        fetched = await self.fetch_events(server, room, rv, unknown)
        await self.received.persist_outliers(room, sorted(fetched.values(), key=lambda e: e.get("depth", 0)))
        known = await self.events.get_events(prev_ids)
        states: list[dict[StateKey, int]] = []
        for prev_id in prev_ids:
            prev = known.get(prev_id)
            if prev is None or prev.room_nid != room.room_nid:
                raise PduError(f"Prev event {prev_id} is not an event of the room")
            if prev.state_after is not None:
                states.append(await rs.state_ids_at_snapshot(prev.state_after))
                continue
            state = await self.state_before(server, room, rv, prev_id)
            if prev.state_key is not None and prev.rejected is None:
                state[(prev.type, prev.state_key)] = prev.nid
            states.append(state)
        return await self.received.resolve(rv, states)
