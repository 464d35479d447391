"""Read receipts and fully-read markers (the spec's Receipts and Read markers modules).

Receipts are "up to" markers: each (user, type, thread) points at one event and
never moves backwards, so a slow device cannot undo what a faster one recorded.
They take positions on their own stream, which /sync reads through
`receipts_since`; a room's latest position is kept in memory so the common
incremental sync skips rooms with nothing new without touching the database.

`m.read` receipts are shown to the room; `m.read.private` ones only to their
owner (the spec's "Servers MUST NOT send the m.read.private receipt to any
other user"). The fully-read marker is not a receipt: it lives in room account
data as `m.fully_read` (the spec's Read markers), written through the account
data service so /sync delivers it like any other account data.

Over federation, `ReceiptEdu` takes other servers' users' m.read receipts (for
events this server has, in rooms whose server ACL admits the sender) and sends
ours to the other servers of the room, durably (queued in the database).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.federation.edus import OutgoingEdu, Submit, sent_by
from homeserver.records.events import StoredEvent
from homeserver.records.receipts import Receipt
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.stream import StreamTracker
from homeserver.storage.receipts import UNTHREADED, ReceiptStore

if TYPE_CHECKING:
    from homeserver.account_data import AccountDataService
    from homeserver.clock import Clock
    from homeserver.rooms.visibility import VisibilityService
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE)
MAIN_THREAD = "main"
# The spec recommends following at most 3 relations to find an event's thread.
_MAX_THREAD_HOPS = 3
_READ_CACHE_SIZE = 50_000


async def thread_of(
    event: dict[str, Any], parent: Callable[[str], Awaitable[dict[str, Any] | None]]
) -> str | None:
    """"main", the event ID of the thread root `event` belongs to, or None when a
    relation points at an event `parent` (a lookup by event ID) does not find."""
    current = event
    for _ in range(_MAX_THREAD_HOPS):
        content = current.get("content")
        rel = content.get("m.relates_to") if isinstance(content, dict) else None
        if not isinstance(rel, dict) or not isinstance(rel.get("event_id"), str):
            return MAIN_THREAD
        parent_id: str = rel["event_id"]
        if rel.get("rel_type") == "m.thread":
            return parent_id
        found = await parent(parent_id)
        if found is None:
            return None
        current = found
    return MAIN_THREAD


class ReceiptService:
    def __init__(
        self,
        *,
        store: ReceiptStore,
        events: EventStore,
        visibility: VisibilityService,
        account_data: AccountDataService,
        clock: Clock,
    ) -> None:
        self.store = store
        self.events = events
        self.visibility = visibility
        self.account_data = account_data
        self.clock = clock
        self._stream: StreamTracker | None = None
        self._room_pos: dict[str, int] = {}
        self._init_lock = asyncio.Lock()
        # (user, room) -> stream ordering read up to; `_writes` guards against
        # caching a value read from the database while a write was landing.
        self._read_cache: OrderedDict[tuple[str, str], int | None] = OrderedDict()
        self._writes = 0
        # callables(room, receipt) told of every receipt that moved (ReceiptEdu
        # sends our users' public ones to the room's other servers).
        self.listeners: list[Callable[[RoomRecord, Receipt], None]] = []
        # awaited after each receipt that moved (the receipts stream of /sync wakes
        # the requests it concerns).
        self.on_change: list[Callable[[RoomRecord, Receipt], Awaitable[None]]] = []

    async def _tracker(self) -> StreamTracker:
        # Loaded on first use: the database only opens once the server starts.
        if self._stream is None:
            async with self._init_lock:
                if self._stream is None:
                    self._room_pos = await self.store.room_positions()
                    self._stream = StreamTracker(await self.store.max_stream_id())
        return self._stream

    async def current_position(self) -> int:
        """Every receipt change up to this position is committed."""
        return (await self._tracker()).current

    def position_now(self) -> int | None:
        """`current_position`, once loaded (None before: the caller awaits that)."""
        return self._stream.current if self._stream is not None else None

    # --- checks shared by /receipt and /read_markers ---

    async def target_event(self, room: RoomRecord, user_id: str, event_id: str) -> StoredEvent:
        """The acknowledged event: it must be in the room's timeline and visible to the user."""
        event = await self.events.get_event(event_id)
        if (
            event is None
            or event.room_nid != room.room_nid
            or event.stream_ordering is None
            or not await self.visibility.filter(user_id, room, [event])
        ):
            raise not_found("Event not found")
        return event

    async def thread_of(self, event: StoredEvent) -> str | None:
        """"main", the event ID of the thread root the event belongs to, or None
        when a relation points at an event this server does not have."""

        async def parent(event_id: str) -> dict[str, Any] | None:
            found = await self.events.get_event(event_id)
            return found.event if found is not None else None

        return await thread_of(event.event, parent)

    async def check_thread(self, event: StoredEvent, thread_id: str) -> None:
        """Refuse a thread_id the event is known not to belong to (the spec's 400
        "The event_id is not related to the thread_id"). A thread root counts as
        part of its own thread as well as of the main timeline."""
        if thread_id != MAIN_THREAD and not thread_id.startswith("$"):
            raise invalid_param("thread_id must be 'main' or the event ID of a thread root")
        if thread_id == event.event_id:
            return
        actual = await self.thread_of(event)
        if actual is not None and actual != thread_id:
            raise invalid_param(f"The event is not in thread {thread_id}")

    # --- writing ---

    async def send_receipt(
        self, room: RoomRecord, user_id: str, receipt_type: str, event: StoredEvent, thread_id: str | None
    ) -> None:
        """Move the user's receipt to the event, unless it already points at the same
        or a later one; wakes the room (public receipt) or only the owner (private)."""
        assert receipt_type in RECEIPT_TYPES and event.stream_ordering is not None
        tracker = await self._tracker()
        pos = tracker.allocate()
        self._writes += 1
        try:
            receipt = Receipt(
                room.room_id, user_id, receipt_type, thread_id or UNTHREADED, event.event_id,
                event.stream_ordering, self.clock.time_ms(), pos,
            )
            stored = await self.store.put(receipt)
        finally:
            self._writes += 1
            tracker.finish(pos)
        if not stored:
            return
        for listener in self.listeners:
            listener(room, receipt)
        self._room_pos[room.room_id] = max(self._room_pos.get(room.room_id, 0), pos)
        if thread_id in (None, MAIN_THREAD):
            key = (user_id, room.room_id)
            if key in self._read_cache:
                self._read_cache[key] = max(self._read_cache[key] or 0, event.stream_ordering)
        for hook in self.on_change:
            await hook(room, receipt)

    async def set_fully_read(self, room: RoomRecord, user_id: str, event: StoredEvent) -> None:
        """Move the m.fully_read marker (room account data) forward to the event;
        never backwards, so a lagging device cannot undo what the user already
        read elsewhere. The account data stream wakes the user's /sync requests."""
        assert event.stream_ordering is not None
        current = await self.fully_read_marker(user_id, room.room_id)
        if current is not None:
            if current == event.event_id:
                return
            previous = await self.events.get_event(current)
            if previous is not None and (previous.stream_ordering or 0) > event.stream_ordering:
                return
        await self.account_data.set_room(user_id, room.room_id, FULLY_READ, {"event_id": event.event_id})

    async def fully_read_marker(self, user_id: str, room_id: str) -> str | None:
        """The event ID of the user's fully-read marker in the room, if set."""
        content = await self.account_data.get_room(user_id, room_id, FULLY_READ)
        event_id = content.get("event_id") if isinstance(content, dict) else None
        return event_id if isinstance(event_id, str) else None

    # --- what /sync reads ---

    async def receipts_since(
        self, room_ids: Collection[str], since_pos: int, user_id: str, upto: int | None = None
    ) -> dict[str, dict[str, Any]]:
        """room_id -> one m.receipt event holding every receipt in the room that
        changed in (since_pos, upto] (upto: the current position), as the user may
        see them: other users' private receipts are left out."""
        tracker = await self._tracker()
        upto = tracker.current if upto is None else upto
        if since_pos >= upto:
            return {}
        rooms = [r for r in room_ids if self._room_pos.get(r, 0) > since_pos]
        if not rooms:
            return {}
        return _receipt_events(await self.store.changed_in_rooms(rooms, since_pos, upto), user_id)

    async def receipts_on_events(self, room_id: str, event_ids: Collection[str], user_id: str, upto: int) -> dict[str, Any] | None:
        """The room's m.receipt event holding the receipts on the given events and the
        user's own, up to `upto` (a room shown for the first time on a sliding sync
        connection: the receipts its client can place, not the whole room's)."""
        found = [r for r in await self.store.receipts_of_events_or_user(room_id, event_ids, user_id) if r.stream_id <= upto]
        return _receipt_events(found, user_id).get(room_id)

    async def rooms_changed_since(self, room_ids: Collection[str], since_pos: int) -> list[str]:
        """The rooms among `room_ids` with a receipt after `since_pos` (from memory):
        sliding sync remembers them to send their receipts when they are next shown."""
        await self._tracker()
        return [r for r in room_ids if self._room_pos.get(r, 0) > since_pos]

    async def read_up_to(self, user_id: str, room_id: str) -> int | None:
        """The stream ordering of the latest event the user has read in the room's
        main timeline: the further of their m.read and m.read.private receipts,
        unthreaded or for thread "main" (None: no receipt). Unread counts start
        after it."""
        return (await self.read_up_to_many(room_id, [user_id]))[user_id]

    async def read_up_to_many(self, room_id: str, user_ids: Iterable[str]) -> dict[str, int | None]:
        """`read_up_to` of many users in one room; those not cached are read in one
        query (the badges of everyone a message to a big room notified)."""
        out: dict[str, int | None] = {}
        missing: list[str] = []
        for user_id in user_ids:
            key = (user_id, room_id)
            if key in self._read_cache:
                self._read_cache.move_to_end(key)
                out[user_id] = self._read_cache[key]
            else:
                missing.append(user_id)
        if not missing:
            return out
        writes = self._writes
        by_user: dict[str, list[Receipt]] = {u: [] for u in missing}
        for r in await self.store.users_receipts(room_id, missing):
            by_user[r.user_id].append(r)
        found = {u: _read_position(rs) for u, rs in by_user.items()}
        out.update(found)
        if writes == self._writes:  # no receipt landed meanwhile
            for user_id, value in found.items():
                self._keep_read((user_id, room_id), value)
        return out

    async def preload_read_up_to(self, user_id: str, room_ids: Collection[str]) -> None:
        """Cache `read_up_to` for many rooms in one read (an initial sync counts the
        unread events of every room)."""
        missing = [r for r in room_ids if (user_id, r) not in self._read_cache]
        if not missing:
            return
        writes = self._writes
        found = await self.store.user_receipts_in_rooms(user_id, missing)
        if writes == self._writes:  # no receipt landed meanwhile
            for room_id, receipts in found.items():
                self._keep_read((user_id, room_id), _read_position(receipts))

    def _keep_read(self, key: tuple[str, str], value: int | None) -> None:
        self._read_cache[key] = value
        if len(self._read_cache) > _READ_CACHE_SIZE:
            self._read_cache.popitem(last=False)


    async def read_positions(self, user_id: str, room_id: str) -> tuple[int | None, dict[str, int]]:
        """The user's read receipts in the room for threaded unread counts: how far
        the unthreaded ones reach (everything up to there is read), and how far each
        threaded one reaches by thread ("main" or a thread root's event ID)."""
        receipts = await self.store.user_receipts(room_id, user_id)
        unthreaded: int | None = None
        threads: dict[str, int] = {}
        for r in receipts:
            if r.receipt_type not in RECEIPT_TYPES:
                continue
            if r.thread_id == UNTHREADED:
                unthreaded = max(unthreaded if unthreaded is not None else r.event_stream_ordering, r.event_stream_ordering)
            else:
                threads[r.thread_id] = max(threads.get(r.thread_id, r.event_stream_ordering), r.event_stream_ordering)
        return unthreaded, threads


class ReceiptEdu:
    """m.receipt over federation (public read receipts only: private ones never
    leave the server)."""

    edu_type = "m.receipt"

    def __init__(
        self,
        *,
        receipts: ReceiptService,
        rooms: RoomStore,
        events: EventStore,
        acl_allows: Callable[[RoomRecord, str], Awaitable[bool]],
        servers_in_room: Callable[[RoomRecord], Awaitable[Iterable[str]]],
        is_mine: Callable[[str], bool],
    ) -> None:
        self.receipts = receipts
        self.rooms = rooms
        self.events = events
        self.acl_allows = acl_allows
        self.servers_in_room = servers_in_room
        self.is_mine = is_mine

    async def receive(self, origin: str, content: dict[str, Any]) -> None:
        for room_id, by_type in content.items():
            room = await self.rooms.get_room(room_id) if isinstance(room_id, str) else None
            if room is None or not isinstance(by_type, dict) or not await self.acl_allows(room, origin):
                continue
            for receipt_type, by_user in by_type.items():
                if receipt_type != READ or not isinstance(by_user, dict):
                    continue
                for user_id, receipt in by_user.items():
                    if not sent_by(user_id, origin) or not isinstance(receipt, dict):
                        continue
                    event_ids = receipt.get("event_ids")
                    if not isinstance(event_ids, list) or not event_ids:
                        continue
                    event = await self.events.get_event(str(event_ids[-1]))
                    if event is None or event.room_nid != room.room_nid or event.stream_ordering is None:
                        continue
                    data = receipt.get("data")
                    thread = data.get("thread_id") if isinstance(data, dict) else None
                    await self.receipts.send_receipt(
                        room, user_id, READ, event, thread if isinstance(thread, str) else None
                    )

    def watch(self, submit: Submit) -> None:
        def on_receipt(room: RoomRecord, receipt: Receipt) -> None:
            if room.federate and receipt.receipt_type == READ and self.is_mine(receipt.user_id):
                submit(lambda: self._outgoing(room, receipt))

        self.receipts.listeners.append(on_receipt)

    async def _outgoing(self, room: RoomRecord, r: Receipt) -> list[OutgoingEdu]:
        data: dict[str, Any] = {"ts": r.ts}
        if r.thread_id != UNTHREADED:
            data["thread_id"] = r.thread_id
        content = {r.room_id: {r.receipt_type: {r.user_id: {"event_ids": [r.event_id], "data": data}}}}
        return [OutgoingEdu(self.edu_type, content, sorted(await self.servers_in_room(room)))]


def check_thread_id(body: dict[str, Any], receipt_type: str) -> str | None:
    """The optional thread_id of a receipt body, per the spec's 400 cases."""
    if "thread_id" not in body:
        return None
    thread_id = body["thread_id"]
    if not isinstance(thread_id, str) or not thread_id:
        raise MatrixError(400, "M_INVALID_PARAM", "thread_id field must be a non-empty string")
    if receipt_type not in RECEIPT_TYPES:
        raise MatrixError(400, "M_INVALID_PARAM", f"thread_id is not allowed for {receipt_type}")
    return thread_id


def _receipt_events(receipts: Iterable[Receipt], user_id: str) -> dict[str, dict[str, Any]]:
    """room_id -> one m.receipt event of the receipts, as `user_id` may see them (other
    users' private receipts left out)."""
    out: dict[str, dict[str, Any]] = {}
    for r in receipts:
        if r.receipt_type == READ_PRIVATE and r.user_id != user_id:
            continue
        event = out.setdefault(r.room_id, {"type": "m.receipt", "content": {}})
        body: dict[str, Any] = {"ts": r.ts}
        if r.thread_id != UNTHREADED:
            body["thread_id"] = r.thread_id
        by_type = event["content"].setdefault(r.event_id, {})
        by_type.setdefault(r.receipt_type, {})[r.user_id] = body
    return out


def _read_position(receipts: list[Receipt]) -> int | None:
    """How far a user's receipts in a room read its main timeline (see `read_up_to`)."""
    return max(
        (r.event_stream_ordering for r in receipts
         if r.receipt_type in RECEIPT_TYPES and r.thread_id in (UNTHREADED, MAIN_THREAD)),
        default=None,
    )
