"""Creating, authorising and persisting room events.

Everything that changes a room goes through `RoomService.create_event`, which
holds the room's lock from reading the DAG head to committing the new event, so
events of one room are strictly ordered while different rooms proceed
concurrently. The event is a complete, signed PDU of the room's version from
the moment it is built, so it can later be shared over federation unchanged.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from federation.events import (
    AuthError,
    CanonicalJSONError,
    EventFormatError,
    auth_types_for_event,
    build_event,
    check_auth,
    get_named_level,
    get_room_version,
    get_user_power_level,
    reference_hash_b64,
    select_auth_event_ids,
)
from federation.events.room_versions import RoomVersion
from homeserver.clock import Clock
from homeserver.errors import MatrixError, not_found
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.activity import Listener, RoomActivity
from homeserver.rooms.heads import RoomHead, RoomHeads
from homeserver.rooms.persist import ClientTxn, EventNotWritten, EventPersister
from homeserver.rooms.received import ReceivedEvents
from homeserver.rooms.state_reader import RoomStateReader, StateKey
from homeserver.rooms.stream import StreamTracker
from homeserver.signing_key import SigningKey
from homeserver.storage.database import IntegrityError
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore

CREATE: StateKey = ("m.room.create", "")
# Called with the current state snapshot under the room lock; see `RoomService.create_event`.
# A snapshot, not the state IDs: a big room's state (a member each) is read by the keys
# the check needs (`state_events_at_snapshot`), not copied whole per membership change.
Precondition = Callable[[int | None], Awaitable[StoredEvent | None]]
MAX_PREV_EVENTS = 10
# Sends whose transaction IDs are answered from memory. Retries come within seconds of
# the first attempt; older ones are answered by the unique transaction key on write, so
# more entries only cost memory (about 400 bytes each: 10,000 held 4 MB).
RECENT_TXNS = 1_000
# Senders' auth events kept (`RoomService._auth_events`): three events each, shared with
# the event cache.
AUTH_CACHE = 4_096


class RoomService:
    def __init__(
        self,
        *,
        server_name: str,
        signing_key: SigningKey,
        clock: Clock,
        rooms: RoomStore,
        events: EventStore,
        reader: RoomStateReader,
        heads: RoomHeads,
        activity: RoomActivity,
        persister: EventPersister,
        received: ReceivedEvents,
        ignored_users: Callable[[str], Awaitable[set[str]]],
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.clock = clock
        self.rooms = rooms
        self.events = events
        self.reader = reader
        self.heads = heads
        self.activity = activity
        self.persister = persister
        self.received = received
        self._ignored_users = ignored_users
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # (user, device, scope, txn ID) -> event ID of recent sends, for cheap idempotent retries
        self._recent_txns: OrderedDict[tuple[str, str, str, str], str] = OrderedDict()
        # the same, for sends whose write is queued and not committed yet
        self._queued_txns: dict[tuple[str, str, str, str], asyncio.Future[StoredEvent]] = {}
        # (room nid, snapshot, sender, room version) -> auth state and auth event IDs (`_auth_events`)
        self._auth_cache: OrderedDict[tuple[int, int, str, str], tuple[dict[StateKey, StoredEvent], list[str]]] = (
            OrderedDict()
        )

    async def start(self) -> None:
        await self.persister.start()

    @property
    def stream(self) -> StreamTracker:
        """The global event stream position (the writer hands positions out)."""
        return self.persister.stream

    @property
    def listeners(self) -> list[Listener]:
        """Callables(StoredEvent, RoomRecord) run after each persisted event."""
        return self.activity.listeners

    def lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[room_id] = lock
        return lock

    def forget_room(self, room_nid: int, event_ids: Iterable[str]) -> None:
        """Drop what is cached of a purged room."""
        self.heads.forget(room_nid)
        self.activity.forget_room(room_nid)
        self.persister.state_changed(room_nid)
        self._auth_cache.clear()  # a purged room's snapshot nids may be given out again
        purged = set(event_ids)
        for key in [k for k, v in self._recent_txns.items() if v in purged]:
            del self._recent_txns[key]

    # --- reading state ---

    async def get_room(self, room_id: str) -> RoomRecord:
        room = await self.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        return room

    async def find_room(self, room_id: str) -> RoomRecord | None:
        """The room, or None when this server knows nothing of it."""
        return await self.rooms.get_room(room_id)

    async def get_event(self, event_id: str) -> StoredEvent | None:
        return await self.events.get_event(event_id)

    async def membership_of(self, room: RoomRecord, user_id: str) -> str | None:
        """The user's membership in the room now, None if they never had one."""
        row = await self.rooms.membership_of(room.room_nid, user_id)
        return row[0] if row is not None else None

    async def membership_event(self, room: RoomRecord, user_id: str) -> StoredEvent | None:
        """The event that gave the user their membership now, also when it lives
        outside the room's DAG (an invite to a room this server is not in)."""
        row = await self.rooms.membership_of(room.room_nid, user_id)
        if row is None:
            return None
        return (await self.events.get_events_by_nid([row[1]])).get(row[1])
    async def current_members(self, room: RoomRecord) -> list[tuple[str, str, int]]:
        """(user, membership, event nid) of every membership in the room now (cached;
        not to be changed by the caller)."""
        return await self.activity.members(room)

    async def preload_members(self, rooms: Iterable[RoomRecord]) -> None:
        """Cache the member lists of many rooms in one read (see `current_members`)."""
        await self.activity.preload_members(rooms)

    async def preload_heads(self, rooms: Collection[RoomRecord]) -> None:
        """Cache the heads and newest positions of many rooms in a few reads (see `head`
        and `last_position`)."""
        await self.heads.preload(rooms)
        await self.activity.preload_positions(r.room_nid for r in rooms)

    async def joined_member_count(self, room: RoomRecord) -> int:
        """How many users are joined to the room now, local or not (cached)."""
        return await self.activity.joined_count(room)

    async def rooms_for_user(self, user_id: str, memberships: tuple[str, ...] = ("join",)) -> list[str]:
        """IDs of the rooms in which the user's membership is one of `memberships`."""
        return [room_id for room_id, _ in await self.rooms.rooms_for_user(user_id, memberships)]

    async def head(self, room: RoomRecord) -> RoomHead:
        """The room's forward extremities and current state snapshot."""
        return await self.heads.get(room)

    def notify(self, event: StoredEvent, room: RoomRecord) -> None:
        """Tell waiting clients and listeners (federation sender, presence) of an event."""
        self.activity.event_persisted(event, room)

    async def current_state_ids(self, room: RoomRecord) -> dict[StateKey, int]:
        """The room's current state as (type, state_key) -> event nid."""
        return await self.reader.state_ids_at_snapshot(await self.heads.snapshot(room))

    async def state_ids_at_snapshot(self, snapshot: int | None) -> dict[StateKey, int]:
        return await self.reader.state_ids_at_snapshot(snapshot)

    async def state_events(
        self, state_ids: dict[StateKey, int], keys: Iterable[StateKey] | None = None
    ) -> dict[StateKey, StoredEvent]:
        return await self.reader.state_events(state_ids, keys)

    async def current_state_events(
        self, room: RoomRecord, keys: Iterable[StateKey] | None = None
    ) -> dict[StateKey, StoredEvent]:
        if keys is not None:  # only those keys: no copy of the whole state
            return await self.reader.state_events_at_snapshot(await self.heads.snapshot(room), keys)
        return await self.state_events(await self.current_state_ids(room), keys)

    async def current_state_event(self, room: RoomRecord, key: StateKey) -> StoredEvent | None:
        return (await self.current_state_events(room, [key])).get(key)

    async def state_events_at_snapshot(
        self, snapshot: int | None, keys: Iterable[StateKey], *, look_up: bool = False
    ) -> dict[StateKey, StoredEvent]:
        """Some keys' events of a state snapshot, reading only those keys (`look_up`:
        see `RoomStateReader.state_events_at_snapshot`)."""
        return await self.reader.state_events_at_snapshot(snapshot, keys, look_up=look_up)

    async def preload_state(self, snapshots: Iterable[int], members: Collection[str] | None = None) -> None:
        """Load many snapshots and their events into the caches in a few statements
        (see RoomStateReader.preload)."""
        await self.reader.preload(snapshots, members)

    async def state_ids_before(self, event: StoredEvent) -> dict[StateKey, int]:
        return await self.state_ids_at_snapshot(event.state_before)

    async def state_ids_after(self, event: StoredEvent) -> dict[StateKey, int]:
        return await self.state_ids_at_snapshot(event.state_after)

    async def require_power(self, room: RoomRecord, user_id: str, action: str) -> None:
        """Refuse with M_FORBIDDEN unless the user has the named power (redact, kick, ...)."""
        rv = get_room_version(room.room_version)
        state = await self.current_state_events(room, [("m.room.power_levels", ""), CREATE])
        plain = {k: ev.event for k, ev in state.items()}
        if get_user_power_level(user_id, plain, rv) < get_named_level(plain, action):
            raise MatrixError(403, "M_FORBIDDEN", f"You don't have permission to {action}")

    async def ignored_users(self, user_id: str) -> set[str]:
        """Users whose events this user has chosen not to see (m.ignored_user_list)."""
        return await self._ignored_users(user_id)

    # --- creating events ---

    async def create_event(
        self,
        room: RoomRecord,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        *,
        state_key: str | None = None,
        redacts: str | None = None,
        txn: ClientTxn | None = None,
        precondition: Precondition | None = None,
        before_persist: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
    ) -> StoredEvent:
        """Build, authorise and persist one event; idempotent per client transaction (`ClientTxn`).

        `precondition` sees the room's current state snapshot under the lock, so checks
        that go beyond the auth rules (unban only the banned, no duplicate
        membership events) cannot race a concurrent change: it raises to
        refuse, or returns an existing event to make the call a no-op. It runs
        before the event is built, so it may still complete `content` from that
        state (a restricted join's authorising user). `before_persist` sees the
        built event and returns what to persist: an invite to another server's
        user carries that server's signature too. It may use the network, so it
        runs without the lock: if the room moved on meanwhile, the event is
        checked against the room's state then and joins the DAG beside the newer
        events (see `_persist_after_changes`).
        """
        async with self.lock(room.room_id):
            queued: asyncio.Future[StoredEvent] | None = None
            if txn is not None:
                # Retries usually come soon after the first attempt: answer those from
                # memory. Older ones are caught by the unique transaction key on write.
                recent = self._recent_txns.get(txn.key)
                if recent is not None:
                    found = await self.events.get_event(recent)
                    if found is not None:
                        return found
                queued = self._queued_txns.get(txn.key)  # the first attempt is being written
            if queued is None:
                rv = get_room_version(room.room_version)
                # An event that changes no state may be built on one still being written
                # and queued behind it (see EventPersister.queue_local_event).
                pipelined = before_persist is None and state_key is None and self.persister.ordered_writes
                head = await (self.heads.get_for_next(room) if pipelined else self.heads.get(room))
                if precondition is not None:
                    unchanged = await precondition(head.snapshot)
                    if unchanged is not None:
                        return unchanged
                event = await self._build(room, rv, head, sender, event_type, content, state_key, redacts)
                if pipelined:
                    queued = await self.persister.queue_local_event(room, head, event, txn)
                    if txn is not None:
                        self._queued_txns[txn.key] = queued
                elif before_persist is None:
                    return await self._persist_once(room, rv, head, event, txn)
        if queued is not None:
            # Committed without the lock: the room's next event is being built meanwhile.
            try:
                return await self._written_once(queued, txn)
            except EventNotWritten:
                # Built on a queued event whose write failed (a retried transaction
                # that was already written, say): nothing of it was written, so it
                # is built again on the room's head as it is now.
                return await self.create_event(
                    room, sender, event_type, content, state_key=state_key, redacts=redacts, txn=txn,
                    precondition=precondition,
                )
        assert before_persist is not None
        # Another server's answer (an invitee's countersignature) must not hold up
        # every other event of the room while it is awaited.
        event = await before_persist(event)
        async with self.lock(room.room_id):
            now = await self.heads.get(room)
            if now.extremities == head.extremities and now.snapshot == head.snapshot:
                return await self._persist_once(room, rv, now, event, txn)
            return await self._persist_after_changes(room, rv, event)

    async def _persist_once(
        self, room: RoomRecord, rv: RoomVersion, head: RoomHead, event: dict[str, Any], txn: ClientTxn | None
    ) -> StoredEvent:
        """`_persist`, answering a retried client transaction with its first event."""
        try:
            return await self._persist(room, rv, head, event, txn)
        except IntegrityError as e:
            return await self._first_attempt(txn, e)

    async def _first_attempt(self, txn: ClientTxn | None, error: IntegrityError) -> StoredEvent:
        """The event a client transaction's first attempt wrote, when a write failed on
        the transaction's unique key (a retry); otherwise the error stands."""
        existing = await self.rooms.get_txn_event(*txn.key) if txn is not None else None
        found = await self.events.get_event(existing) if existing else None
        if found is None:
            raise error
        return found

    async def _written_once(self, written: asyncio.Future[StoredEvent], txn: ClientTxn | None) -> StoredEvent:
        """A queued event once committed, answering a retried client transaction with
        its first event (as `_persist_once`). Shielded: a caller going away must not
        cancel the write others wait on (a retry, the room's head)."""
        try:
            stored = await asyncio.shield(written)
        except IntegrityError as e:
            return await self._first_attempt(txn, e)
        finally:
            if txn is not None and self._queued_txns.get(txn.key) is written:
                del self._queued_txns[txn.key]
        self._remember_txn(txn, stored)
        return stored

    async def _persist_after_changes(self, room: RoomRecord, rv: RoomVersion, event: dict[str, Any]) -> StoredEvent:
        """Persist a built event whose prev events are no longer the room's only
        extremities (events arrived while it was out for countersigning). Refused
        (M_FORBIDDEN) if the room's state now no longer allows it; otherwise it joins
        the DAG as a received event would, beside the newer events, and the room's
        state is resolved from both ends. The caller holds the room's lock."""
        current = await self.current_state_ids(room)
        auth_state = await self.state_events(current, auth_types_for_event(event, rv) | {CREATE})
        try:
            check_auth(event, {k: ev.event for k, ev in auth_state.items()}, rv)
        except AuthError as e:
            raise MatrixError(403, "M_FORBIDDEN", f"The room changed meanwhile: {e.reason}") from None
        outcome = await self.received.persist(room, event)
        stored = await self.events.get_event(event["event_id"])
        if outcome.status not in ("accepted", "duplicate") or stored is None:
            raise MatrixError(403, "M_FORBIDDEN", f"The room changed meanwhile: {outcome.reason}")
        return stored

    async def _build(
        self,
        room: RoomRecord,
        rv: RoomVersion,
        head: RoomHead,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None,
        redacts: str | None,
    ) -> dict[str, Any]:
        if head.queued is not None:  # queued, not committed: the one event to follow
            prev = [head.queued.event]
        else:
            stored_prev = await self.events.get_events_by_nid(head.extremities[-MAX_PREV_EVENTS:])
            prev = [ev.event for ev in stored_prev.values()]
        partial: dict[str, Any] = {"type": event_type, "sender": sender, "content": content}
        if state_key is not None:
            partial["state_key"] = state_key
        auth_state, auth_ids = await self._auth_events(room, rv, head.snapshot, partial)
        cited = {ev["event_id"]: ev for ev in prev}
        cited.update({ev.event_id: ev.event for ev in auth_state.values()})
        try:
            event = build_event(
                rv,
                room_id=room.room_id,
                sender=sender,
                event_type=event_type,
                content=content,
                prev_events=[ev["event_id"] for ev in prev],
                auth_events=auth_ids,
                depth=max((ev["depth"] for ev in prev), default=0) + 1,
                origin_server_ts=self.clock.time_ms(),
                state_key=state_key,
                redacts=redacts,
                signing_key=self.signing_key,
                server_name=self.server_name,
                # v1/v2 cite events with their reference hashes.
                reference_hashes=lambda event_id: reference_hash_b64(cited[event_id], rv),
            )
        except EventFormatError as e:
            raise _format_error(e) from None
        except CanonicalJSONError as e:
            raise MatrixError(400, "M_BAD_JSON", f"Content is not valid canonical JSON: {e}") from None
        try:
            check_auth(event, {k: ev.event for k, ev in auth_state.items()}, rv)
        except AuthError as e:
            raise MatrixError(403, "M_FORBIDDEN", e.reason) from None
        return event

    async def _auth_events(
        self, room: RoomRecord, rv: RoomVersion, snapshot: int | None, partial: dict[str, Any]
    ) -> tuple[dict[StateKey, StoredEvent], list[str]]:
        """The state events a new event's auth check reads, and the IDs it cites as its
        auth events, at the room's state `snapshot`. For any event but a membership
        (whose auth events depend on its content) or a create event, they depend only
        on the snapshot (which never changes once written) and the sender, so they
        are kept per (room, snapshot, sender): a room's messages between two state
        changes are built without reading them again."""
        key = None
        if snapshot is not None and partial["type"] not in ("m.room.member", "m.room.create"):
            key = (room.room_nid, snapshot, partial["sender"], rv.identifier)
            known = self._auth_cache.get(key)
            if known is not None:
                self._auth_cache.move_to_end(key)
                return known
        needed = auth_types_for_event(partial, rv) | {CREATE}
        # Only the auth keys: a big room's whole state (a member each) is not copied per
        # event. A membership's target key is new on every user's first join: looked up
        # (one indexed read), not the whole state copied to find it absent, which cost
        # half a join's CPU in a room of 10,000.
        auth_state = await self.reader.state_events_at_snapshot(
            snapshot, needed, look_up=partial["type"] == "m.room.member"
        )
        auth_ids = select_auth_event_ids(partial, {k: ev.event_id for k, ev in auth_state.items()}, rv)
        if key is not None:
            self._auth_cache[key] = (auth_state, auth_ids)
            if len(self._auth_cache) > AUTH_CACHE:
                self._auth_cache.popitem(last=False)
        return auth_state, auth_ids

    async def create_room_event(
        self, room_id: str, rv: RoomVersion, creator: str, federate: bool, create_event: dict[str, Any]
    ) -> tuple[RoomRecord, StoredEvent]:
        """Persist a new room together with its m.room.create event."""
        try:
            check_auth(create_event, {}, rv)
        except AuthError as e:
            raise MatrixError(400, "M_INVALID_PARAM", e.reason) from None
        return await self.persister.new_room(room_id, rv, creator, federate, create_event)

    async def _persist(
        self, room: RoomRecord, rv: RoomVersion, head: RoomHead, event: dict[str, Any], txn_info: ClientTxn | None
    ) -> StoredEvent:
        stored = await self.persister.local_event(room, head, event, txn_info)
        self._remember_txn(txn_info, stored)
        return stored

    def _remember_txn(self, txn_info: ClientTxn | None, stored: StoredEvent) -> None:
        if txn_info is not None:
            self._recent_txns[txn_info.key] = stored.event_id
            if len(self._recent_txns) > RECENT_TXNS:
                self._recent_txns.popitem(last=False)

    async def joined_local_users(self, room: RoomRecord) -> set[str]:
        """Local users joined to the room now (cached; the notifier asks on every event)."""
        return await self.activity.joined_local_users(room)

    async def last_position(self, room_nid: int) -> int:
        """Stream position of the room's newest event: /sync skips rooms with nothing new
        without touching the database."""
        return await self.activity.last_position(room_nid)


def _format_error(e: EventFormatError) -> MatrixError:
    if e.too_large:
        return MatrixError(413, "M_TOO_LARGE", str(e))
    return MatrixError(400, "M_BAD_JSON", str(e))
