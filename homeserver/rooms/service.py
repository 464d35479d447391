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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    select_auth_event_ids,
)
from federation.events.room_versions import RoomVersion
from homeserver.errors import MatrixError, not_found
from homeserver.rooms.received import ReceivedEvents
from homeserver.rooms.stream import StreamTracker
from homeserver.storage.database import IntegrityError, Txn
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.rooms import RoomRecord, RoomStore

if TYPE_CHECKING:
    from homeserver.server import HomeServer

StateKey = tuple[str, str]
CREATE: StateKey = ("m.room.create", "")
# Called with the current state IDs under the room lock; see `RoomService.create_event`.
Precondition = Callable[[dict[StateKey, int]], Awaitable[StoredEvent | None]]
MAX_PREV_EVENTS = 10


@dataclass
class _Head:
    """The DAG head of a room: its forward extremities and the state after them."""

    extremities: list[int]
    snapshot: int | None


@dataclass(frozen=True)
class TxnInfo:
    """A client transaction: a retransmission is the same txn_id from the same
    device to the same endpoint with the same parameters (`scope`, e.g.
    "send <room> <type>" or "redact <room> <event>"), and gets the first answer."""

    user_id: str
    device_id: str
    scope: str
    txn_id: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.user_id, self.device_id, self.scope, self.txn_id)


class RoomService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.rooms: RoomStore = hs.room_store
        self.events: EventStore = hs.event_store
        self.state = hs.state_store
        self.stream = StreamTracker(0)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._heads: dict[int, _Head] = {}
        self.listeners: list[Any] = []  # callables(StoredEvent, RoomRecord) run after each persist
        # room nid -> local users joined now; kept exact by _notify after each membership change.
        self._joined_local: dict[int, set[str]] = {}
        self._member_versions: dict[int, int] = {}  # bumped per membership event, guards lazy loads
        self._background: set[asyncio.Task[None]] = set()
        self._last_pos: dict[int, int] = {}  # room nid -> stream position of its newest event
        # (user, device, scope, txn ID) -> event ID of recent sends, for cheap idempotent retries
        self._recent_txns: OrderedDict[tuple[str, str, str, str], str] = OrderedDict()

    async def start(self) -> None:
        self.stream = StreamTracker(await self.events.max_stream_ordering())

    def lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[room_id] = lock
        return lock

    # --- reading state ---

    async def get_room(self, room_id: str) -> RoomRecord:
        room = await self.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        return room

    async def _head(self, room: RoomRecord) -> _Head:
        head = self._heads.get(room.room_nid)
        if head is None:
            extremities = await self.rooms.forward_extremities(room.room_nid)
            row = await self.hs.db.fetchone(
                "SELECT snapshot_nid FROM room_heads WHERE room_nid = ?", (room.room_nid,)
            )
            if row is not None:
                snapshot: int | None = int(row[0])  # resolved state of several extremities
            else:
                events = await self.events.get_events_by_nid(extremities)
                newest = max(events.values(), key=lambda e: e.stream_ordering or 0, default=None)
                snapshot = newest.state_after if newest is not None else None
            # setdefault: a persist that finished while we read must win over our older view.
            head = self._heads.setdefault(room.room_nid, _Head(extremities, snapshot))
        return head

    async def head(self, room: RoomRecord) -> _Head:
        """The room's forward extremities and current state snapshot."""
        return await self._head(room)

    def set_head(self, room_nid: int, extremities: list[int], snapshot: int) -> None:
        self._heads[room_nid] = _Head(list(extremities), snapshot)

    def notify(self, event: StoredEvent, room: RoomRecord) -> None:
        """Tell waiting clients and listeners (federation sender, presence) of an event."""
        self._notify(event, room)

    async def current_state_ids(self, room: RoomRecord) -> dict[StateKey, int]:
        """The room's current state as (type, state_key) -> event nid."""
        head = await self._head(room)
        return await self.state_ids_at_snapshot(head.snapshot)

    async def state_ids_at_snapshot(self, snapshot: int | None) -> dict[StateKey, int]:
        if snapshot is None:
            return {}
        nid_state = await self.state.get_state(snapshot)
        keys = await self.state.keys_for(set(nid_state))
        return {keys[k]: e for k, e in nid_state.items()}

    async def state_events(
        self, state_ids: dict[StateKey, int], keys: Iterable[StateKey] | None = None
    ) -> dict[StateKey, StoredEvent]:
        wanted = state_ids if keys is None else {k: state_ids[k] for k in keys if k in state_ids}
        by_nid = await self.events.get_events_by_nid(wanted.values())
        return {k: by_nid[n] for k, n in wanted.items() if n in by_nid}

    async def current_state_events(
        self, room: RoomRecord, keys: Iterable[StateKey] | None = None
    ) -> dict[StateKey, StoredEvent]:
        return await self.state_events(await self.current_state_ids(room), keys)

    async def current_state_event(self, room: RoomRecord, key: StateKey) -> StoredEvent | None:
        return (await self.current_state_events(room, [key])).get(key)

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
        content = await self.hs.account_data.get_global(user_id, "m.ignored_user_list")
        ignored = content.get("ignored_users", {}) if isinstance(content, dict) else {}
        return set(ignored) if isinstance(ignored, dict) else set()

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
        txn: TxnInfo | None = None,
        precondition: Precondition | None = None,
        before_persist: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
    ) -> StoredEvent:
        """Build, authorise and persist one event; idempotent per client transaction (`TxnInfo`).

        `precondition` sees the room's current state under the lock, so checks
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
            if txn is not None:
                # Retries usually come soon after the first attempt: answer those from
                # memory. Older ones are caught by the unique transaction key on write.
                recent = self._recent_txns.get(txn.key)
                if recent is not None:
                    found = await self.events.get_event(recent)
                    if found is not None:
                        return found
            rv = get_room_version(room.room_version)
            head = await self._head(room)
            if precondition is not None:
                unchanged = await precondition(await self.state_ids_at_snapshot(head.snapshot))
                if unchanged is not None:
                    return unchanged
            event = await self._build(room, rv, head, sender, event_type, content, state_key, redacts)
            if before_persist is None:
                return await self._persist_once(room, rv, head, event, txn)
        # Another server's answer (an invitee's countersignature) must not hold up
        # every other event of the room while it is awaited.
        event = await before_persist(event)
        async with self.lock(room.room_id):
            now = await self._head(room)
            if now.extremities == head.extremities and now.snapshot == head.snapshot:
                return await self._persist_once(room, rv, now, event, txn)
            return await self._persist_after_changes(room, rv, event)

    async def _persist_once(
        self, room: RoomRecord, rv: RoomVersion, head: _Head, event: dict[str, Any], txn: TxnInfo | None
    ) -> StoredEvent:
        """`_persist`, answering a retried client transaction with its first event."""
        try:
            return await self._persist(room, rv, head, event, txn)
        except IntegrityError:
            if txn is None:
                raise
            existing = await self.rooms.get_txn_event(*txn.key)
            found = await self.events.get_event(existing) if existing else None
            if found is None:
                raise
            return found

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
        outcome = await ReceivedEvents(self).persist(room, event)
        stored = await self.events.get_event(event["event_id"])
        if outcome.status not in ("accepted", "duplicate") or stored is None:
            raise MatrixError(403, "M_FORBIDDEN", f"The room changed meanwhile: {outcome.reason}")
        return stored

    async def _build(
        self,
        room: RoomRecord,
        rv: RoomVersion,
        head: _Head,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None,
        redacts: str | None,
    ) -> dict[str, Any]:
        prev = await self.events.get_events_by_nid(head.extremities[-MAX_PREV_EVENTS:])
        state_ids = await self.state_ids_at_snapshot(head.snapshot)
        partial: dict[str, Any] = {"type": event_type, "sender": sender, "content": content}
        if state_key is not None:
            partial["state_key"] = state_key
        needed = auth_types_for_event(partial, rv) | {CREATE}
        auth_state = await self.state_events(state_ids, needed)
        auth_ids = select_auth_event_ids(
            partial, {k: ev.event_id for k, ev in auth_state.items()}, rv
        )
        try:
            event = build_event(
                rv,
                room_id=room.room_id,
                sender=sender,
                event_type=event_type,
                content=content,
                prev_events=[ev.event_id for ev in prev.values()],
                auth_events=auth_ids,
                depth=max((ev.event["depth"] for ev in prev.values()), default=0) + 1,
                origin_server_ts=self.hs.clock.time_ms(),
                state_key=state_key,
                redacts=redacts,
                signing_key=self.hs.signing_key,
                server_name=self.hs.config.server_name,
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

    async def create_room_event(
        self, room_id: str, rv: RoomVersion, creator: str, federate: bool, create_event: dict[str, Any]
    ) -> tuple[RoomRecord, StoredEvent]:
        """Persist a new room together with its m.room.create event."""
        try:
            check_auth(create_event, {}, rv)
        except AuthError as e:
            raise MatrixError(400, "M_INVALID_PARAM", e.reason) from None
        now = self.hs.clock.time_ms()
        pos = self.stream.allocate()
        try:

            async def fn(txn: Txn) -> tuple[int, StoredEvent, int, int]:
                room_nid = await RoomStore.insert_room(txn, room_id, rv.identifier, creator, federate, now)
                stored, key_nid, snapshot, _ = await self._write_event(
                    txn, room_nid, create_event, None, [], pos, None
                )
                assert key_nid is not None and snapshot is not None
                return room_nid, stored, key_nid, snapshot

            room_nid, stored, key_nid, snapshot = await self.hs.db.write(fn)
        finally:
            self.stream.finish(pos)
        room = await self.rooms.get_room_by_nid(room_nid)
        assert room is not None
        self.events.remember(stored)
        self.state.remember_key(CREATE, key_nid)
        self.state.remember_snapshot(snapshot, 0, {key_nid: stored.nid})
        self._heads[room_nid] = _Head([stored.nid], snapshot)
        self._joined_local[room_nid] = set()  # a new room has no members yet
        self._notify(stored, room)
        return room, stored

    async def _write_event(
        self,
        txn: Txn,
        room_nid: int,
        event: dict[str, Any],
        snapshot: int | None,
        prev_nids: list[int],
        pos: int,
        txn_info: TxnInfo | None,
    ) -> tuple[StoredEvent, int | None, int | None, int | None]:
        """All rows of one event, inside the caller's transaction. Returns
        (event, state key nid, snapshot after, chain length of a new snapshot)."""
        is_state = "state_key" in event
        key_nid = await self.state.key_nid(txn, (event["type"], event["state_key"])) if is_state else None
        stored = await EventStore.insert(
            txn, event, room_nid=room_nid, stream_ordering=pos, state_key_nid=key_nid,
            state_before=snapshot, state_after=None if is_state else snapshot,
            txn_device=txn_info.device_id if txn_info else None,
            txn_id=txn_info.txn_id if txn_info else None,
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
        target = _redaction_target(event)
        if target is not None:
            await EventStore.mark_redacted(txn, target, event["event_id"])
        await RoomStore.set_forward_extremities(txn, room_nid, prev_nids, stored.nid)
        # A local event cites every extremity, so the room's state is again that of one
        # event: drop any stored resolved head (its snapshot would now be stale).
        await txn.execute("DELETE FROM room_heads WHERE room_nid = ?", (room_nid,))
        if txn_info is not None:
            await RoomStore.insert_txn(
                txn, *txn_info.key, event["event_id"],
                self.hs.clock.time_ms(),
            )
        return stored, key_nid, after, length

    async def _persist(
        self, room: RoomRecord, rv: RoomVersion, head: _Head, event: dict[str, Any], txn_info: TxnInfo | None
    ) -> StoredEvent:
        sender = self.hs.federation_sender
        federated = sender.sends(room, event)
        joined: set[str] | None = None
        if federated and event["type"] != "m.room.member":
            # Under the room lock no membership of the room changes, so the servers in
            # the room now are those after this event. A membership event reads them in
            # its own transaction instead, once its membership row is written.
            joined = await self.hs.room_servers.servers_in_room(room)
        pos = self.stream.allocate()
        prev_nids = list(head.extremities)

        async def write(txn: Txn) -> tuple[tuple[StoredEvent, int | None, int | None, int | None], list[str]]:
            written = await self._write_event(txn, room.room_nid, event, head.snapshot, prev_nids, pos, txn_info)
            # The outbox rows commit with the event: a crash cannot keep one without the other.
            dests = await sender.queue_event(txn, room, event, joined) if federated else []
            return written, dests

        try:
            (stored, key_nid, after, length), dests = await self.hs.db.write(write)
        finally:
            self.stream.finish(pos)
        sender.wake(dests)
        self.events.remember(stored)
        if key_nid is not None and after is not None:
            self.state.remember_key((event["type"], event["state_key"]), key_nid)
            if length is not None and head.snapshot is not None:
                parent = await self.state.get_state(head.snapshot)
                parent[key_nid] = stored.nid
                self.state.remember_snapshot(after, length, parent)
        self._heads[room.room_nid] = _Head([stored.nid], after)
        if txn_info is not None:
            self._recent_txns[txn_info.key] = stored.event_id
            if len(self._recent_txns) > 10_000:
                self._recent_txns.popitem(last=False)
        target = _redaction_target(event)
        if target is not None:
            cached = await self.events.get_event(target)
            if cached is not None and cached.redacted_by is None:
                cached.redacted_by = stored.event_id
        self._notify(stored, room)
        return stored

    async def joined_local_users(self, room: RoomRecord) -> set[str]:
        """Local users joined to the room now (cached; the notifier asks on every event)."""
        joined = self._joined_local.get(room.room_nid)
        if joined is None:
            version = self._member_versions.get(room.room_nid, 0)
            suffix = ":" + self.hs.config.server_name
            members = await self.rooms.members(room.room_nid, "join")
            loaded = {u for u, _, _ in members if u.endswith(suffix)}
            joined = self._joined_local.get(room.room_nid)
            if joined is None:
                if self._member_versions.get(room.room_nid, 0) != version:
                    return loaded  # a membership change landed meanwhile: don't cache this read
                self._joined_local[room.room_nid] = joined = loaded
        return joined

    async def last_position(self, room_nid: int) -> int:
        """Stream position of the room's newest event: /sync skips rooms with nothing new
        without touching the database."""
        pos = self._last_pos.get(room_nid)
        if pos is None:
            loaded = await self.hs.event_positions.last_position(room_nid)
            pos = max(loaded, self._last_pos.get(room_nid, 0))
            self._last_pos[room_nid] = pos
        return pos

    def _notify(self, event: StoredEvent, room: RoomRecord) -> None:
        if event.stream_ordering is not None:
            self._last_pos[room.room_nid] = max(self._last_pos.get(room.room_nid, 0), event.stream_ordering)
        concerned: set[str] = set()
        joined = self._joined_local.get(room.room_nid)
        if event.type == "m.room.member" and event.state_key is not None:
            target = event.state_key
            concerned.add(target)  # invitees, the kicked and the banned hear of it too
            self._member_versions[room.room_nid] = self._member_versions.get(room.room_nid, 0) + 1
            if joined is not None and target.endswith(":" + self.hs.config.server_name):
                if event.event["content"].get("membership") == "join":
                    joined.add(target)
                else:
                    joined.discard(target)
        if joined is not None:
            concerned |= joined
            self.hs.notifier.notify_users(concerned)
        else:
            # First event seen for this room since start: load its members, then wake them.
            async def load_and_notify() -> None:
                concerned.update(await self.joined_local_users(room))
                self.hs.notifier.notify_users(concerned)

            task = asyncio.ensure_future(load_and_notify())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        for listener in self.listeners:
            listener(event, room)


def _redaction_target(event: dict[str, Any]) -> str | None:
    if event["type"] != "m.room.redaction":
        return None
    target = event.get("redacts") or event.get("content", {}).get("redacts")
    return target if isinstance(target, str) else None


def _format_error(e: EventFormatError) -> MatrixError:
    if e.too_large:
        return MatrixError(413, "M_TOO_LARGE", str(e))
    return MatrixError(400, "M_BAD_JSON", str(e))
