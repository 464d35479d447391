"""Backfill: fetching a room's older history from other servers when a client
paginates past the oldest event this server has (the spec's "Backfilling and
retrieving missing events").

A server that joined a room over federation holds the room from its join on;
everything before (and the create event's descendants it only has as
outliers) is fetched on demand with `GET /backfill/{roomId}?v=...&limit=`
from the servers in the room, starting at the *backward extremities*: prev
events of the room's oldest timeline events that are not in the timeline here.

Stream positions: the timeline is ordered by one global stream, and history
older than the join must sort before it. Backfilled events therefore take
positions *below* every position in use (0 and down: -1, -2, ...), handed out
in blocks: each batch, sorted oldest first (depth, then timestamp, then ID),
takes the next block downwards, so within a batch and from one batch to the
next (each older than the last) stream order follows the DAG. /messages
tokens are plain positions ("t-42"), so pagination crosses from live events to
backfilled ones without a seam. Positions are never reused and never 0.

Each event is checked like any received PDU (format, signatures, content hash:
`InboundTransactions.check`; the auth rules against the state before it), then
stored as history (`ReceivedEvents.persist_backfilled`): never a forward
extremity, no change to the current state or memberships, no wake-up of /sync,
never sent on. The state before the oldest events of a batch, whose prev events
are not here yet, is asked for with /state_ids (`StateFetcher`). Who may see
each backfilled event is decided by the normal history visibility at it.

Right after a join over federation the first page of older history is fetched at
once, in the background (`prefetch`), so a client's first /messages finds it here
instead of waiting for the round trip.

Bounds: one backfill per room at a time; at most MAX_BATCH events and
MAX_STATE_FETCHES state requests per batch. Extremities no server could extend
are not asked about again for a while: for FRUITLESS_RETRY_MS when no server
answered (in memory: they may be back soon), for NO_OLDER_HISTORY_RETRY_MS when
the servers answered with nothing older (stored, so a restart does not send
every client that pages to the top of such a room asking them all again).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from federation.client import quote_path_segment
from federation.events import get_room_version, prev_event_ids
from federation.events.room_versions import RoomVersion
from homeserver.background import cancel_and_wait
from homeserver.federation.pdu_checks import MissingEventsError, PduError, event_in_room
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.received import Outcome

if TYPE_CHECKING:
    from federation.client import FederationClient
    from homeserver.clock import Clock
    from homeserver.federation.pdu_checks import PduChecks
    from homeserver.federation.state_fetch import StateFetcher
    from homeserver.rooms.received import ReceivedEvents
    from homeserver.rooms.servers import RoomServers
    from homeserver.rooms.service import RoomService
    from homeserver.storage.backfill import BackfillStore
    from homeserver.storage.events import EventStore

logger = logging.getLogger(__name__)

MAX_BATCH = 100  # events asked for at once (what our own /backfill serves at most)
MIN_BATCH = 20
MAX_STATE_FETCHES = 3
MAX_SERVERS = 5  # servers tried per backfill
OLDEST_SCAN = 20  # oldest timeline events whose prev events are looked at
FRUITLESS_RETRY_MS = 60_000
NO_OLDER_HISTORY_RETRY_MS = 3_600_000
_FRUITLESS_SIZE = 1000
PREFETCH = 50  # events fetched right after a join: about a client's first page


class RoomBackfill:
    def __init__(
        self, *, client: FederationClient | None, checks: PduChecks, received: ReceivedEvents,
        events: EventStore, store: BackfillStore, room_service: RoomService, room_servers: RoomServers,
        state_fetcher: StateFetcher, clock: Clock,
    ) -> None:
        self.client = client  # None when federation is off
        self.checks = checks
        self.received = received
        self.events = events
        self.store = store
        self.room_service = room_service
        self.room_servers = room_servers
        self.state_fetcher = state_fetcher
        self.clock = clock
        self._lowest: int | None = None  # the lowest stream position handed out so far
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        # (room nid, extremities) -> when every server failed to extend them
        self._fruitless: OrderedDict[tuple[int, frozenset[str]], int] = OrderedDict()
        self._prefetches: set[asyncio.Task[None]] = set()
        # room nid -> events backfilled since start (how a waiting backfill tells
        # that the one before it stored something)
        self._added: dict[int, int] = {}

    def prefetch(self, room: RoomRecord) -> None:
        """Fetch the page before a join now, in the background (the server has just
        joined the room: nothing older is here yet, and a client opening the room
        asks for it next). A /messages arriving meanwhile waits on the room's
        backfill lock and then finds the events stored."""
        if self.client is None:
            return
        task = asyncio.get_running_loop().create_task(self._prefetch(room))
        self._prefetches.add(task)
        task.add_done_callback(self._prefetches.discard)

    async def _prefetch(self, room: RoomRecord) -> None:
        try:
            await self.backfill(room, PREFETCH)
        except Exception:  # a later /messages tries again on its own
            logger.info("backfill after joining %s failed", room.room_id, exc_info=True)

    async def stop(self) -> None:
        """Cancel the prefetches under way (before the client and database close)."""
        for task in list(self._prefetches):
            await cancel_and_wait(task)

    def _lock(self, room_nid: int) -> asyncio.Lock:
        lock = self._locks.get(room_nid)
        if lock is None:
            lock = self._locks[room_nid] = asyncio.Lock()
        return lock

    async def _allocate(self, n: int) -> list[int]:
        """`n` fresh positions below all others, ascending. Synchronous after the
        first call (no await between reading and moving the floor), so concurrent
        backfills of different rooms never share a position."""
        if self._lowest is None:
            lowest = min(0, await self.events.min_stream_ordering())
            if self._lowest is None:
                self._lowest = lowest
        top = self._lowest - 1
        self._lowest -= n
        return list(range(self._lowest, top + 1))

    async def backward_extremities(self, room: RoomRecord) -> list[str]:
        """Prev events of the room's oldest timeline events that are not in the
        timeline here (unknown, or held only as outliers). Rejected and
        soft-failed events have no timeline place on purpose and are not chased.

        Only the bottom of the timeline counts: backfilled events (positions at or
        below zero) and the first live event. A hole between live events (a gap
        closed with /state_ids, see inbound.py) is not filled from here: its
        events would need positions between live ones, which a single stream
        order cannot give them once later events have theirs."""
        oldest = await self.events.oldest_in_room(room.room_nid, OLDEST_SCAN)
        bottom = []
        for ev in oldest:
            bottom.append(ev)
            if ev.stream_ordering is not None and ev.stream_ordering > 0:
                break
        prev_ids: list[str] = []
        for ev in bottom:
            prev_ids.extend(prev_event_ids(ev.event))
        prev_ids = list(dict.fromkeys(prev_ids))
        known = await self.events.get_events(prev_ids)
        return [p for p in prev_ids if p not in known or known[p].outlier]

    async def backfill(self, room: RoomRecord, limit: int) -> int:
        """Fetch and store up to about `limit` events older than the room's oldest;
        the number of events that entered the timeline (0: nothing more to get)."""
        if self.client is None or not room.federate:
            return 0
        servers = sorted(await self.room_servers.servers_in_room(room))
        if not servers:
            return 0
        added_before = self._added.get(room.room_nid, 0)
        async with self._lock(room.room_nid):
            meanwhile = self._added.get(room.room_nid, 0) - added_before
            if meanwhile:
                # Another backfill of the room (a prefetch after the join, another
                # client's page) ran while this one waited: what it stored is what
                # the caller is after, and "nothing more" would end its pagination.
                return meanwhile
            extremities = await self.backward_extremities(room)
            if not extremities:
                return 0
            key = (room.room_nid, frozenset(extremities))
            now = self.clock.time_ms()
            failed_at = self._fruitless.get(key)
            if failed_at is not None and now - failed_at < FRUITLESS_RETRY_MS:
                return 0
            digest = _digest(extremities)
            if await self._no_older_history_since(room.room_nid, digest, now):
                return 0
            batch = max(MIN_BATCH, min(limit, MAX_BATCH))
            answered = False
            for server in servers[:MAX_SERVERS]:
                try:
                    added = await self._from_server(server, room, extremities, batch)
                except PduError as e:
                    logger.info("backfill of %s from %s failed: %s", room.room_id, server, e)
                    continue
                if added:
                    self._added[room.room_nid] = self._added.get(room.room_nid, 0) + added
                    return added
                answered = True
            if answered:
                await self._record_no_older_history(room.room_nid, digest, now)
            else:
                self._fruitless[key] = now
                if len(self._fruitless) > _FRUITLESS_SIZE:
                    self._fruitless.popitem(last=False)
            return 0

    async def _no_older_history_since(self, room_nid: int, digest: str, now: int) -> bool:
        """Whether the servers said lately that they have nothing older than these
        extremities (a stale record, or one for other extremities, does not count)."""
        found = await self.store.no_older_history(room_nid)
        return found is not None and found[0] == digest and now - found[1] < NO_OLDER_HISTORY_RETRY_MS

    async def _record_no_older_history(self, room_nid: int, digest: str, now: int) -> None:
        await self.store.record_no_older_history(room_nid, digest, now)

    async def _from_server(self, server: str, room: RoomRecord, extremities: list[str], limit: int) -> int:
        client = self.client
        assert client is not None
        try:
            body = await client.get_json(
                server,
                f"/_matrix/federation/v1/backfill/{quote_path_segment(room.room_id)}",
                query={"v": extremities[:20], "limit": str(limit)},
            )
        except Exception as e:
            raise PduError(f"no answer: {e}") from None
        pdus = body.get("pdus") if isinstance(body, dict) else None
        if not isinstance(pdus, list):
            raise PduError("the answer has no 'pdus' list")
        rv = get_room_version(room.room_version)
        events = await self._checked(server, room, rv, pdus[:limit])
        if not events:
            return 0
        positions = await self._allocate(len(events))
        added = 0
        state_fetches = MAX_STATE_FETCHES
        # The room's lock is taken per event, around its write only (see `_store`):
        # this backfill's own lock keeps other backfills of the room out meanwhile.
        for event, pos in zip(events, positions, strict=True):
            outcome, used = await self._store(server, room, rv, event, pos, state_fetches)
            state_fetches -= used
            if outcome is not None and outcome.status == "backfilled":
                added += 1
        return added

    async def _checked(
        self, server: str, room: RoomRecord, rv: RoomVersion, pdus: list[Any]
    ) -> list[dict[str, Any]]:
        """The answer's events that verify, are of this room and are not in the
        timeline yet, oldest first."""
        events: dict[str, dict[str, Any]] = {}
        for pdu in pdus:
            if not isinstance(pdu, dict):
                continue
            try:
                event = await self.checks.check(pdu, rv)
            except PduError as e:
                logger.info("backfilled event from %s refused: %s", server, e)
                continue
            if event_in_room(event, room.room_id, rv):
                events[event["event_id"]] = event
        stored = await self.events.get_events(events)
        fresh = [e for eid, e in events.items() if eid not in stored or stored[eid].outlier]
        return sorted(fresh, key=lambda e: (e.get("depth", 0), e.get("origin_server_ts", 0), e["event_id"]))

    async def _store(
        self, server: str, room: RoomRecord, rv: RoomVersion, event: dict[str, Any], pos: int, state_fetches: int
    ) -> tuple[Outcome | None, int]:
        """Persist one event as history, fetching its auth chain or the state at its
        prev events from `server` when they are missing; (outcome, state fetches used).

        The fetches (`/event_auth`, `/state_ids`, `/event`) run without the room's
        lock, so live events of the room are not held up by a slow peer; the write
        takes it, and `persist_backfilled` checks again under it what may have
        changed meanwhile (the event arrived another way: a duplicate)."""
        state = None
        used = 0
        fetched_auth = False
        for _ in range(3):
            try:
                async with self.room_service.lock(room.room_id):
                    return await self.received.persist_backfilled(room, event, pos, state_before=state), used
            except MissingEventsError as missing:
                try:
                    if missing.kind == "auth" and not fetched_auth:
                        fetched_auth = True
                        await self.state_fetcher.fetch_auth_chain(server, room, rv, event)
                    elif missing.kind == "prev" and state is None and used < state_fetches:
                        used += 1
                        state = await self.state_fetcher.state_at_prevs(server, room, rv, event)
                    else:
                        break
                except PduError as e:
                    logger.info("backfilled event %s not stored: %s", event["event_id"], e)
                    break
        return None, used


def _digest(extremities: list[str]) -> str:
    """A short, order-free name for a set of backward extremities."""
    return hashlib.sha256("\n".join(sorted(set(extremities))).encode()).hexdigest()
