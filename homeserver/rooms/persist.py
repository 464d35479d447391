"""The one writer of room events.

Every event that enters a room's DAG is written here, local or received, in one
transaction with everything it moves: the event row, its state snapshot, its
stream position, the room's forward extremities, current state and memberships,
the room head, a pending redaction it completes, and (for our own events in a
federating room) its federation outbox rows. A crash therefore leaves either
all of it or none. What the decisions are (accepted, rejected, soft-failed,
which redaction applies) is the caller's: homeserver/rooms/service.py for
local events, homeserver/rooms/received.py for received ones. After the commit
the writer updates the in-memory views (event and state caches, the room
head) and hands the event to homeserver/rooms/activity.py, which wakes clients
and listeners.

Callers hold the room's lock (RoomService.lock) for live events, so one room's
events are written in order; outliers may be written without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from federation.events.room_versions import RoomVersion
from homeserver.clock import Clock
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.activity import RoomActivity
from homeserver.rooms.heads import QueuedEvent, RoomHead, RoomHeads
from homeserver.rooms.state_reader import RoomStateReader, StateKey, StateResolver
from homeserver.rooms.stream import StreamTracker
from homeserver.storage.database import Database, IntegrityError, Txn
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.state import StateStore

CREATE: StateKey = ("m.room.create", "")
# Stands for the nid of the event being written, in state computed before its row exists.
_UNWRITTEN = -1


class EventNotWritten(Exception):
    """A queued event's write failed because the event it follows was not written."""


class EventOutbox(Protocol):
    """The federation sender's side of a write: which events are ours to send,
    queueing them in the writing transaction, and waking it after the commit."""

    def sends(self, room: RoomRecord, event: dict[str, Any]) -> bool: ...

    async def queue_event(
        self, txn: Txn, room: RoomRecord, event: dict[str, Any], joined: Iterable[str] | None = None
    ) -> list[str]: ...

    def wake(self, destinations: Iterable[str]) -> None: ...


class EventIndex(Protocol):
    """Something kept in step with the timeline in the writing transaction itself (event
    relations, the search index): told of each event that enters a room's timeline
    (live or backfilled, not rejected, not soft-failed) and of each redaction applied,
    so it can never disagree with the events after a crash."""

    async def event_written(self, txn: Txn, room: RoomRecord, stored: StoredEvent) -> None: ...

    async def event_redacted(self, txn: Txn, room: RoomRecord, redacted_event_id: str) -> None: ...


@dataclass(frozen=True)
class ClientTxn:
    """A local event's client transaction, recorded with it for idempotent retries."""

    user_id: str
    device_id: str
    scope: str  # the endpoint and its parameters: "send <room> <type>", "redact <room> <event>"
    txn_id: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.user_id, self.device_id, self.scope, self.txn_id)


@dataclass
class ReceivedWrite:
    """How a received event is to be written, as homeserver/rooms/received.py decided.

    `pos` None: soft-failed or rejected (stored, outside the timeline). `historical`
    (backfill): the event and its state only, never the room's present; `outlier`
    is the same event held as an outlier, promoted in place. `redacts`: the event
    this redaction applies to; `held`: a redaction that does not apply (yet), in the
    DAG but not the timeline; `waits_for`: the missing target it waits for;
    `waiting`: earlier redactions of this event that apply now; `joined`: users
    joined after it, when it is one of ours for the federation sender to queue;
    `before_snapshot`: the stored snapshot `before` is, when known (one prev event's).
    """

    event: dict[str, Any]
    prevs: dict[str, StoredEvent]
    before: dict[StateKey, int]
    is_state: bool
    reason: str | None
    new_extremities: list[int]
    current: dict[StateKey, int]
    pos: int | None
    historical: bool = False
    outlier: StoredEvent | None = None
    redacts: str | None = None
    held: bool = False
    waits_for: str | None = None
    waiting: list[StoredEvent] = field(default_factory=list)
    joined: list[str] | None = None
    before_snapshot: int | None = None


@dataclass
class _NewHead:
    """The room's present after a received event, worked out before the write."""

    extremities: list[int]
    changed: dict[StateKey, int]
    removed: list[StateKey]
    members: dict[int, StoredEvent]
    delta: dict[StateKey, int | None] | None  # against the new event's state after; None: one extremity


class EventPersister:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        events: EventStore,
        rooms: RoomStore,
        state: StateStore,
        reader: RoomStateReader,
        resolver: StateResolver,
        heads: RoomHeads,
        activity: RoomActivity,
        outbox: EventOutbox,
        servers_in_room: Callable[[RoomRecord], Awaitable[set[str]]],
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.rooms = rooms
        self.state = state
        self.reader = reader
        self.resolver = resolver
        self.heads = heads
        self.activity = activity
        self.outbox = outbox
        self.servers_in_room = servers_in_room
        self.stream = StreamTracker(0)
        # Kept in step with the timeline inside each write (see EventIndex); registered
        # in server.py as the modules that need one are built.
        self.indexes: list[EventIndex] = []
        # Told (room nid) right after a commit that moved a room's current state or
        # memberships, before the room's lock is released: what an index keeps of a
        # room's present between writes (push actions' member lists) stays exact.
        # `by` is the local event whose commit alone moved it (its transaction wrote the
        # room's whole new present before its indexes ran), None when that is not known.
        self.state_listeners: list[Callable[[int, StoredEvent | None], None]] = []

    def state_changed(self, room_nid: int, by: StoredEvent | None = None) -> None:
        """Tell the state listeners that the room's present moved (or the room was purged)."""
        for listener in self.state_listeners:
            listener(room_nid, by)

    async def _indexed(self, txn: Txn, room: RoomRecord, stored: StoredEvent, redacted: list[str]) -> None:
        for index in self.indexes:
            await index.event_written(txn, room, stored)
            for event_id in redacted:
                await index.event_redacted(txn, room, event_id)

    async def start(self) -> None:
        self.stream = StreamTracker(await self.events.max_stream_ordering())

    # --- rooms ---

    async def new_room(
        self, room_id: str, rv: RoomVersion, creator: str, federate: bool, create_event: dict[str, Any]
    ) -> tuple[RoomRecord, StoredEvent]:
        """A new room together with its m.room.create event (already authorised)."""
        now = self.clock.time_ms()
        pos = self.stream.allocate()
        try:

            async def fn(txn: Txn) -> tuple[int, StoredEvent, int, int]:
                room_nid = await RoomStore.insert_room(txn, room_id, rv.identifier, creator, federate, now)
                stored, key_nid, snapshot, _ = await self._write_local(txn, None, room_nid, create_event, None, [], pos, None)
                assert key_nid is not None and snapshot is not None
                return room_nid, stored, key_nid, snapshot

            room_nid, stored, key_nid, snapshot = await self.db.write(fn)
            self.activity.placed(room_nid, stored.stream_ordering, stored.nid)
        finally:
            self.stream.finish(pos)
        room = await self.rooms.get_room_by_nid(room_nid)
        assert room is not None
        self.events.remember(stored)
        self.state_changed(room_nid)
        self.state.remember_key(CREATE, key_nid)
        self.state.remember_snapshot(snapshot, 0, {key_nid: stored.nid})
        self.heads.set(room_nid, [stored.nid], snapshot)
        self.activity.room_created(room_nid)
        self.activity.event_persisted(stored, room)
        return room, stored

    async def ensure_room(self, room_id: str, room_version: str, creator: str) -> RoomRecord:
        """The room's record, created as an empty shell for a room known only from
        the outside (an invite, a knock, a join about to fetch its state)."""
        room = await self.rooms.get_room(room_id)
        if room is not None:
            return room
        now = self.clock.time_ms()

        async def fn(txn: Txn) -> None:
            await RoomStore.insert_room_if_absent(txn, room_id, room_version, creator, True, now)

        await self.db.write(fn)
        room = await self.rooms.get_room(room_id)
        assert room is not None
        return room

    # --- local events ---

    async def local_event(
        self, room: RoomRecord, head: RoomHead, event: dict[str, Any], client_txn: ClientTxn | None
    ) -> StoredEvent:
        """Write an event built here on `head` (it cites every extremity), and queue it
        for the room's other servers in the same transaction."""
        joined = await self._servers_after(room, event)
        pos = self.stream.allocate()
        prev_nids = list(head.extremities)

        async def write(txn: Txn) -> tuple[tuple[StoredEvent, int | None, int | None, int | None], list[str]]:
            return await self._write_local_with_outbox(txn, room, event, head.snapshot, prev_nids, pos, client_txn, joined)

        # The position is settled only once the caches after the commit are current
        # (as for received events), so no reader sees the event with caches of before.
        try:
            (stored, key_nid, after, length), dests = await self.db.write(write)
            self.activity.placed(room.room_nid, stored.stream_ordering, stored.nid)
            await self._after_local(room, head.snapshot, event, stored, key_nid, after, length, dests)
            self.heads.set(room.room_nid, [stored.nid], after)
            self.activity.event_persisted(stored, room)
        finally:
            self.stream.finish(pos)
        return stored

    @property
    def ordered_writes(self) -> bool:
        """Whether `queue_local_event` can be used: the database runs queued writes in
        order (SQLite's single writer). PostgreSQL runs writes concurrently, so there
        the room's lock is held until each event is committed."""
        return self.db.ordered_writes

    async def queue_local_event(
        self, room: RoomRecord, head: RoomHead, event: dict[str, Any], client_txn: ClientTxn | None
    ) -> asyncio.Future[StoredEvent]:
        """`local_event` for an event that changes no state, pipelined (`ordered_writes`):
        returns once the write is queued, the room's head naming the event, so the
        caller can release the room's lock and the room's next event be built and
        queued behind it while this one commits (often in the same commit). The
        returned task gives the event once committed, or raises (await it shielded).

        The next event's transaction runs after this one's in the single writer's
        queue; it reads this event's nid from the `QueuedEvent` and checks that it is
        indeed the room's one extremity, so when this write fails the next one fails
        too rather than citing an event that does not exist. The caches after the
        commit are updated by a task of their own, which a caller going away does
        not cancel: the room's head must always settle.
        """
        joined = await self._servers_after(room, event)
        pos = self.stream.allocate()
        queued = QueuedEvent(event)
        before = head.queued

        async def write(txn: Txn) -> tuple[tuple[StoredEvent, int | None, int | None, int | None], list[str]]:
            queued.nid.clear()
            if before is None:
                prev_nids = list(head.extremities)
            else:
                prev_nids = await RoomStore.forward_extremities_in(txn, room.room_nid)
                if not before.nid or prev_nids != before.nid:
                    raise EventNotWritten(f"{event['event_id']} follows {before.event['event_id']}, which was not written")
            written = await self._write_local_with_outbox(
                txn, room, event, head.snapshot, prev_nids, pos, client_txn, joined, follows_local=before is not None
            )
            queued.nid.append(written[0][0].nid)
            return written

        try:
            committed = self.db.queue_write(write)
            assert committed is not None, "queue_local_event needs ordered_writes"
        except BaseException:
            self.stream.finish(pos)
            raise
        self.heads.queue(room.room_nid, queued, head.snapshot)

        async def settle() -> StoredEvent:
            try:
                (stored, key_nid, after, length), dests = await committed
            except BaseException:
                self.heads.settle(room.room_nid, queued, None, head.snapshot)
                self.stream.finish(pos)
                raise
            self.activity.placed(room.room_nid, stored.stream_ordering, stored.nid)
            try:
                await self._after_local(room, head.snapshot, event, stored, key_nid, after, length, dests)
            finally:
                self.heads.settle(room.room_nid, queued, stored.nid, head.snapshot)
                try:
                    self.activity.event_persisted(stored, room)
                finally:
                    self.stream.finish(pos)
            return stored

        return asyncio.ensure_future(settle())

    async def _servers_after(self, room: RoomRecord, event: dict[str, Any]) -> set[str] | None:
        """The other servers with a member joined once `event` (built here) is applied.
        Under the room lock no membership of the room changes, so they are those in
        the room now (cached), and a membership event moves none of them that matters:
        it is a local user's own (ours is not counted), or another server's user's (an
        invite, kick, ban or unban), whose server `queue_event` adds anyway. So a join
        into a big room reads none of its members inside the write transaction, where
        it held up every other write."""
        if not self.outbox.sends(room, event):
            return None
        return await self.servers_in_room(room)

    async def _write_local_with_outbox(
        self, txn: Txn, room: RoomRecord, event: dict[str, Any], snapshot: int | None, prev_nids: list[int],
        pos: int, client_txn: ClientTxn | None, joined: set[str] | None, *, follows_local: bool = False,
    ) -> tuple[tuple[StoredEvent, int | None, int | None, int | None], list[str]]:
        written = await self._write_local(
            txn, room, room.room_nid, event, snapshot, prev_nids, pos, client_txn, follows_local=follows_local
        )
        # The outbox rows commit with the event: a crash cannot keep one without the other.
        # A room with no other server queues nothing but a membership event's (its
        # target's server hears of it though not joined): nothing to ask the outbox.
        alone = joined is not None and not joined and event.get("type") != "m.room.member"
        dests = await self.outbox.queue_event(txn, room, event, joined) if not alone and self.outbox.sends(room, event) else []
        return written, dests

    async def _after_local(
        self, room: RoomRecord, snapshot: int | None, event: dict[str, Any], stored: StoredEvent,
        key_nid: int | None, after: int | None, length: int | None, dests: list[str],
    ) -> None:
        """The in-memory views after a local event's commit (not its head, not activity)."""
        self.outbox.wake(dests)
        self.events.remember(stored)
        if key_nid is not None:
            self.state_changed(room.room_nid, stored)
        if key_nid is not None and after is not None:
            self.state.remember_key((event["type"], event["state_key"]), key_nid)
            if length is not None and snapshot is not None:
                await self.state.remember_child(after, length, snapshot, {key_nid: stored.nid})
        target = redaction_target(event)
        if target is not None:
            cached = await self.events.get_event(target)
            if cached is not None and cached.redacted_by is None:
                cached.redacted_by = stored.event_id

    async def _write_local(
        self,
        txn: Txn,
        room: RoomRecord | None,
        room_nid: int,
        event: dict[str, Any],
        snapshot: int | None,
        prev_nids: list[int],
        pos: int,
        client_txn: ClientTxn | None,
        *,
        follows_local: bool = False,
    ) -> tuple[StoredEvent, int | None, int | None, int | None]:
        """All rows of one local event, inside the caller's transaction. Returns
        (event, state key nid, snapshot after, chain length of a new snapshot).
        `follows_local`: the caller checked in this transaction that the room's one
        forward extremity, `prev_nids`' one event, is a local event written just before
        (queued ahead of it): its write left no stored resolved head, and the
        extremity row is moved to this event in place."""
        is_state = "state_key" in event
        key_nid = await self.state.key_nid(txn, (event["type"], event["state_key"])) if is_state else None
        stored = await EventStore.insert(
            txn, event, room_nid=room_nid, stream_ordering=pos, state_key_nid=key_nid,
            state_before=snapshot, state_after=None if is_state else snapshot,
            txn_device=client_txn.device_id if client_txn else None,
            txn_id=client_txn.txn_id if client_txn else None,
        )
        after, length = snapshot, None
        if key_nid is not None:
            after, length = await self.state.create_snapshot(txn, room_nid, snapshot, {key_nid: stored.nid})
            await EventStore.set_state_after(txn, stored.nid, after)
            stored.state_after = after
            await RoomStore.set_current_state(txn, room_nid, {key_nid: stored.nid})
            if event["type"] == "m.room.member":
                membership = event["content"].get("membership")
                await RoomStore.set_membership(
                    txn, room_nid, event["state_key"], str(membership), stored.nid, pos
                )
        target = redaction_target(event)
        if target is not None:
            await EventStore.mark_redacted(txn, target, event["event_id"])
        if room is not None:  # None: a new room's create event, which no index wants
            await self._indexed(txn, room, stored, [target] if target is not None else [])
        if follows_local:
            (prev_nid,) = prev_nids
            await RoomStore.move_forward_extremity(txn, room_nid, prev_nid, stored.nid)
        else:
            await RoomStore.set_forward_extremities(txn, room_nid, prev_nids, stored.nid)
            # A local event cites every extremity, so the room's state is again that of one
            # event: drop any stored resolved head (its snapshot would now be stale).
            await RoomStore.clear_head_snapshot(txn, room_nid)
        if client_txn is not None:
            await RoomStore.insert_txn(txn, *client_txn.key, event["event_id"], self.clock.time_ms())
        return stored, key_nid, after, length

    # --- events from elsewhere ---

    async def outliers(self, room: RoomRecord, events: list[dict[str, Any]]) -> None:
        """Events known only as auth or state of others: stored, no place in the timeline.
        Another writer storing some of the same events first costs a second try."""
        try:
            await self._outliers(room, events)
        except IntegrityError:
            await self._outliers(room, events)

    async def _outliers(self, room: RoomRecord, events: list[dict[str, Any]]) -> None:
        seen = await self.events.get_events(e["event_id"] for e in events)
        fresh = [e for e in events if e["event_id"] not in seen]
        if not fresh:
            return

        async def fn(txn: Txn) -> list[StoredEvent]:
            out = []
            for e in fresh:
                key_nid = None
                if "state_key" in e:
                    key_nid = await self.state.key_nid(txn, (e["type"], e["state_key"]))
                out.append(await EventStore.insert(
                    txn, e, room_nid=room.room_nid, stream_ordering=None, state_key_nid=key_nid,
                    state_before=None, state_after=None, outlier=True,
                ))
            return out

        for stored in await self.db.write(fn):
            self.events.remember(stored)

    async def outliers_in_bulk(self, room: RoomRecord, events: list[dict[str, Any]]) -> None:
        """`outliers` for thousands of events (a large room's state and auth chain from
        send_join): their state keys and rows are written with a few batched
        statements in one transaction, not three statements per event."""
        try:
            await self._outliers_in_bulk(room, events)
        except IntegrityError:  # another writer stored some of them first
            await self._outliers_in_bulk(room, events)

    async def _outliers_in_bulk(self, room: RoomRecord, events: list[dict[str, Any]]) -> None:
        seen = await self.events.get_events(e["event_id"] for e in events)
        fresh = list({e["event_id"]: e for e in events if e["event_id"] not in seen}.values())
        if not fresh:
            return

        async def fn(txn: Txn) -> tuple[dict[StateKey, int], list[StoredEvent]]:
            keys = await self.state.key_nids(txn, {(e["type"], e["state_key"]) for e in fresh if "state_key" in e})
            return keys, await EventStore.insert_outliers(txn, fresh, room_nid=room.room_nid, key_nids=keys)

        keys, stored = await self.db.write(fn)
        for key, nid in keys.items():
            self.state.remember_key(key, nid)
        for event in stored:
            self.events.remember(event)

    async def membership_outlier(
        self, room: RoomRecord, event: dict[str, Any], stripped: list[dict[str, Any]] | None
    ) -> StoredEvent:
        """A local user's membership in a room this server is not in: the event is
        stored outside the DAG, the stripped state kept, and the membership takes a
        stream position of its own so /sync reports the change."""
        user_id = event["state_key"]
        membership = str(event["content"].get("membership"))
        existing = await self.events.get_event(event["event_id"])
        pos = self.stream.allocate()
        try:
            async def fn(txn: Txn) -> StoredEvent:
                if existing is not None:
                    stored = existing
                else:
                    key_nid = await self.state.key_nid(txn, (event["type"], user_id))
                    stored = await EventStore.insert(
                        txn, event, room_nid=room.room_nid, stream_ordering=None, state_key_nid=key_nid,
                        state_before=None, state_after=None, outlier=True,
                    )
                if stripped is not None:
                    await RoomStore.set_invite_state(txn, stored.nid, stripped)
                await RoomStore.set_membership(txn, room.room_nid, user_id, membership, stored.nid, pos)
                return stored

            stored = await self.db.write(fn)
        finally:
            self.stream.finish(pos)
        self.events.remember(stored)
        self.state_changed(room.room_nid)
        self.activity.membership_outside_dag(user_id)
        return stored

    async def received_event(self, room: RoomRecord, rv: RoomVersion, w: ReceivedWrite) -> StoredEvent:
        """Write a received event as `w` decides, and, when it is accepted live, the
        room's new present (extremities, current state, memberships, head) with it."""
        event, rs_key = w.event, (w.event["type"], w.event["state_key"]) if w.is_state else None
        live = w.reason is None and w.pos is not None and not w.historical
        late_positions = [self.stream.allocate() for r in w.waiting if r.stream_ordering is None]
        # Reads happen before the write: a transaction function may only use its Txn.
        first_prev = next(iter(w.prevs.values()), None)
        base = first_prev.state_after if first_prev is not None else None
        if base is not None and base == w.before_snapshot:
            base_state = w.before  # the same state: nothing to read or compare
        else:
            base_state = await self.reader.state_ids_at_snapshot(base) if base is not None else {}
        after_state = dict(w.before)
        if rs_key is not None:
            after_state[rs_key] = _UNWRITTEN
        new_head = await self._new_head(room, rv, w, after_state) if live else None
        # Keys whose nids the write uses: where the state before differs from the first
        # prev event's, the event's own, and the head's changes; not every key of a big
        # room's state (an await each inside the write transaction, per event).
        differing: set[StateKey] = set()
        if base_state is not w.before:
            differing = {k for k, v in w.before.items() if base_state.get(k) != v}
            differing.update(k for k in base_state if k not in w.before)
        needed_keys = differing | ({rs_key} if rs_key else set())
        if new_head is not None:
            needed_keys |= set(new_head.changed) | set(new_head.removed) | set(new_head.delta or {})
        dests: list[str] = []
        snapshot_box: list[int] = []

        async def fn(txn: Txn) -> StoredEvent:
            key_nids = {k: await self.state.key_nid(txn, k) for k in needed_keys}
            before_snap: int | None = None
            if first_prev is not None and not differing:
                before_snap = first_prev.state_after
            elif w.before:
                changes: dict[int, int | None] = {key_nids[k]: w.before.get(k) for k in differing}
                before_snap, _ = await self.state.create_snapshot(txn, room.room_nid, base, changes)
            key_nid = key_nids[rs_key] if rs_key else None
            if w.outlier is not None:
                stored = await EventStore.promote_outlier(
                    txn, w.outlier, stream_ordering=w.pos, state_before=before_snap,
                    state_after=None if w.is_state else before_snap,
                )
            else:
                stored = await EventStore.insert(
                    txn, event, room_nid=room.room_nid, stream_ordering=None if w.held else w.pos,
                    state_key_nid=key_nid,
                    state_before=None if w.reason else before_snap,
                    state_after=None if (w.reason or w.is_state) else before_snap,
                    rejected=w.reason,
                )
            if w.reason is not None:
                return stored
            if w.redacts is not None and w.pos is not None:  # a soft-failed redaction redacts nothing
                await EventStore.mark_redacted(txn, w.redacts, stored.event_id)
            if w.waits_for is not None:
                await EventStore.add_pending_redaction(txn, w.waits_for, stored.nid, room.room_nid)
            if w.waiting:
                await EventStore.mark_redacted(txn, stored.event_id, w.waiting[0].event_id)
                stored.redacted_by = w.waiting[0].event_id
                # Applied now, so now shown: held redactions take their timeline place.
                late = iter(late_positions)
                for redaction in w.waiting:
                    if redaction.stream_ordering is None:
                        await EventStore.place_in_timeline(txn, redaction.nid, next(late))
                await EventStore.clear_pending_redactions(txn, stored.event_id)
            if w.pos is not None:  # in the timeline (live or backfilled), or waiting to be
                redacted = [w.redacts] if w.redacts is not None else []
                if w.waiting:
                    redacted.append(stored.event_id)
                await self._indexed(txn, room, stored, redacted)
            if key_nid is not None:
                after_snap, _ = await self.state.create_snapshot(
                    txn, room.room_nid, before_snap, {key_nid: stored.nid}
                )
                await EventStore.set_state_after(txn, stored.nid, after_snap)
                stored.state_after = after_snap
            if new_head is None or w.pos is None:  # soft-failed or history: not the room's present
                return stored
            await self._write_head(txn, room, new_head, stored, key_nids, w.pos, snapshot_box)
            if w.joined is not None:
                dests[:] = await self.outbox.queue_event(txn, room, event, w.joined)
            return stored

        try:
            stored = await self.db.write(fn)
            # Told before any of their positions is finished (the caller finishes `pos`).
            self.activity.placed(room.room_nid, stored.stream_ordering, stored.nid)
            late = iter(late_positions)
            for redaction in w.waiting:
                if redaction.stream_ordering is None:
                    self.activity.placed(room.room_nid, next(late), redaction.nid)
        finally:
            for late_pos in late_positions:
                self.stream.finish(late_pos)
        self.outbox.wake(dests)
        self.events.remember(stored)
        if new_head is not None and (new_head.changed or new_head.removed):
            self.state_changed(room.room_nid)
        if w.redacts is not None and w.pos is not None:
            target = await self.events.get_event(w.redacts)
            if target is not None and target.redacted_by is None:
                target.redacted_by = stored.event_id
        if new_head is not None and snapshot_box:
            self.heads.set(room.room_nid, [*new_head.extremities[:-1], stored.nid], snapshot_box[0])
        return stored

    async def shown_redactions(self, waiting: list[StoredEvent]) -> list[StoredEvent]:
        """The held redactions a received event's write just placed in the timeline, reloaded."""
        shown: list[StoredEvent] = []
        for redaction in waiting:
            if redaction.stream_ordering is None:
                self.events.forget(redaction.event_id)
                reloaded = await self.events.get_event(redaction.event_id)
                if reloaded is not None:
                    shown.append(reloaded)
        return shown

    async def _new_head(
        self, room: RoomRecord, rv: RoomVersion, w: ReceivedWrite, after_state: dict[StateKey, int]
    ) -> _NewHead:
        """The room's current state once the event is in: the resolved state after its
        extremities (the event itself, not yet written, stands in as `_UNWRITTEN`)."""
        extremities = [*w.new_extremities, _UNWRITTEN]
        if len(extremities) == 1:
            current = dict(after_state)
            delta: dict[StateKey, int | None] | None = None
        else:
            events = await self.events.get_events_by_nid(w.new_extremities)
            states = [await self.reader.state_ids_at_snapshot(e.state_after) for e in events.values()]
            unwritten = StoredEvent(_UNWRITTEN, w.event["event_id"], room.room_nid, w.pos, None, None,
                                    False, None, None, None, None, w.event)
            current = await self.resolver.resolve(rv, [*states, after_state], unstored=unwritten)
            delta = {k: v for k, v in current.items() if after_state.get(k) != v}
            delta.update({k: None for k in after_state if k not in current})
        changed = {k: v for k, v in current.items() if w.current.get(k) != v}
        removed = [k for k in w.current if k not in current]
        members = await self.events.get_events_by_nid(
            [v for k, v in changed.items() if k[0] == "m.room.member" and v != _UNWRITTEN]
        )
        return _NewHead(extremities, changed, removed, members, delta)

    async def _write_head(
        self, txn: Txn, room: RoomRecord, head: _NewHead, stored: StoredEvent, key_nids: dict[StateKey, int],
        pos: int, snapshot_box: list[int],
    ) -> None:
        def nid(v: int) -> int:
            return stored.nid if v == _UNWRITTEN else v

        extremities = [nid(n) for n in head.extremities]
        await RoomStore.replace_forward_extremities(txn, room.room_nid, extremities)
        if head.delta is None:
            snapshot = stored.state_after
        else:
            changes = {key_nids[k]: (None if v is None else nid(v)) for k, v in head.delta.items()}
            snapshot, _ = await self.state.create_snapshot(txn, room.room_nid, stored.state_after, changes)
        assert snapshot is not None
        await RoomStore.set_current_state(
            txn, room.room_nid,
            {**{key_nids[k]: nid(v) for k, v in head.changed.items()}, **{key_nids[k]: None for k in head.removed}},
        )
        for k, v in head.changed.items():
            if k[0] != "m.room.member":
                continue
            member = stored if v == _UNWRITTEN else head.members.get(v)
            if member is not None:
                await RoomStore.set_membership(
                    txn, room.room_nid, str(member.state_key), str(member.event["content"].get("membership")),
                    member.nid, pos,
                )
        await RoomStore.set_head_snapshot(txn, room.room_nid, snapshot)
        snapshot_box.append(snapshot)


def redaction_target(event: dict[str, Any]) -> str | None:
    """The event ID an m.room.redaction names (top level before v11, in content since)."""
    if event.get("type") != "m.room.redaction":
        return None
    target = event.get("redacts") or event.get("content", {}).get("redacts")
    return target if isinstance(target, str) else None
