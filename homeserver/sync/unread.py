"""Unread notification counts for /sync, decided by each user's push rules.

Counting from the read receipt on every sync would cost O(unread) each time,
which grows without bound in a room nobody reads. Counts are kept per (user,
room) together with the receipt position they start from and the stream
position they cover, so each sync only evaluates the events that arrived since
the last one; a new receipt changes the start and forces one recount.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from federation.events import get_room_version, get_user_power_level
from homeserver.push.evaluator import evaluate, highlights, notifies
from homeserver.receipts import MAIN_THREAD
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.push.service import PushRulesService
    from homeserver.receipts import ReceiptService
    from homeserver.rooms.recent import RecentEvents
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventPositions, EventStore
    from homeserver.storage.rooms import RoomStore

NOTIFYING_TYPES = ("m.room.message", "m.room.encrypted", "m.room.member", "m.call.invite",
                   "m.room.tombstone", "m.reaction", "m.room.server_acl")
_CACHE_SIZE = 50_000


@dataclass
class _ThreadCounts:
    signature: tuple[int, tuple[tuple[str, int], ...]]  # the receipts counted from
    upto: int
    threads: dict[str, list[int]] = field(default_factory=dict)  # thread -> [notifications, highlights]


@dataclass
class _Counts:
    start: int  # counting begins after this stream position (the read receipt)
    upto: int  # events up to here are counted
    notifications: int = 0
    highlights: int = 0


class UnreadCounter:
    def __init__(
        self,
        *,
        receipts: ReceiptService,
        push_rules: PushRulesService,
        room_service: RoomService,
        room_store: RoomStore,
        event_store: EventStore,
        event_positions: EventPositions,
        recent: RecentEvents | None = None,
    ) -> None:
        # Rooms' newest events, read once for all their readers (rooms/recent.py).
        # Once push actions are stored when events are persisted, counts come from
        # those instead, and neither this nor the rules' evaluation here is needed.
        self.recent = recent
        self.receipts = receipts
        self.push_rules = push_rules
        self.room_service = room_service
        self.room_store = room_store
        self.event_store = event_store
        self.event_positions = event_positions
        self._cache: OrderedDict[tuple[str, int], _Counts] = OrderedDict()
        self._threaded: OrderedDict[tuple[str, int], _ThreadCounts] = OrderedDict()

    async def counts(self, user_id: str, room: RoomRecord, joined_at: int, now: int) -> dict[str, int]:
        start = joined_at
        read = await self.receipts.read_up_to(user_id, room.room_id)
        if read is not None:
            start = max(start, read)
        key = (user_id, room.room_nid)
        counts = self._cache.get(key)
        if counts is None or counts.start != start or counts.upto > now:
            counts = _Counts(start, start)
        if now > counts.upto:
            await self._add(counts, user_id, room, now)
        self._cache[key] = counts
        self._cache.move_to_end(key)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return {"notification_count": counts.notifications, "highlight_count": counts.highlights}

    def forget_room(self, room_nid: int) -> None:
        """Drop the room's counts (a purged room)."""
        for key in [k for k in self._cache if k[1] == room_nid]:
            del self._cache[key]
        for key in [k for k in self._threaded if k[1] == room_nid]:
            del self._threaded[key]

    async def _candidates(self, user_id: str, room: RoomRecord, after: int, upto: int) -> list[int]:
        """Nids of the events in (after, upto] of the types that may notify, not the user's own."""
        recent = await self.recent.between(room.room_nid, after, upto) if self.recent is not None else None
        if recent is not None:
            return [e.nid for e in recent if e.type in NOTIFYING_TYPES and e.sender != user_id]
        found = await self.event_positions.count_after(room.room_nid, after, upto, NOTIFYING_TYPES, user_id)
        return [nid for nid, _ in found]

    async def _add(self, counts: _Counts, user_id: str, room: RoomRecord, now: int) -> None:
        found = await self._candidates(user_id, room, counts.upto, now)
        counts.upto = now
        for _, highlight in await self._notifying(user_id, room, found):
            counts.notifications += 1
            if highlight:
                counts.highlights += 1

    async def _notifying(self, user_id: str, room: RoomRecord, nids: list[int]) -> list[tuple[StoredEvent, bool]]:
        """Of these events, oldest first, those that notify the user by their push
        rules, each with whether it highlights."""
        if not nids:
            return []
        rules = await self.push_rules.ruleset(user_id)
        rv = get_room_version(room.room_version)
        state = await self.room_service.current_state_events(
            room, [("m.room.power_levels", ""), ("m.room.create", ""), ("m.room.member", user_id)]
        )
        plain = {k: ev.event for k, ev in state.items()}
        levels = state.get(("m.room.power_levels", ""))
        me = state.get(("m.room.member", user_id))
        display_name = me.event["content"].get("displayname") if me else None
        member_count = await self.room_service.joined_member_count(room)
        events = await self.event_store.get_events_by_nid(nids)
        # An ignored user's messages are not shown, so they do not count as unread either.
        ignored = await self.room_service.ignored_users(user_id) - {user_id}
        out: list[tuple[StoredEvent, bool]] = []
        for ev in sorted(events.values(), key=lambda e: e.stream_ordering or 0):
            if ev.redacted_by is not None or (ev.sender in ignored and ev.state_key is None):
                continue
            level = get_user_power_level(ev.sender, plain, rv)
            actions = evaluate(
                rules, {**ev.event, "room_id": room.room_id}, member_count,
                display_name if isinstance(display_name, str) else None,
                int(min(level, 2**31)), levels.event["content"] if levels else None,
            )
            if notifies(actions):
                out.append((ev, highlights(actions)))
        return out

    async def thread_counts(
        self, user_id: str, room: RoomRecord, joined_at: int, now: int
    ) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """Counts split per thread, for clients whose filter asks
        (unread_thread_notifications): the main timeline's, and each thread's by
        its root's event ID (threads with nothing unread left out). An unthreaded
        read receipt reads everything up to it; a threaded one its own thread
        ("main" for the main timeline) only."""
        unthreaded, by_thread = await self.receipts.read_positions(user_id, room.room_id)
        base = max(joined_at, unthreaded) if unthreaded is not None else joined_at
        signature = (base, tuple(sorted(by_thread.items())))
        key = (user_id, room.room_nid)
        cached = self._threaded.get(key)
        if cached is None or cached.signature != signature or cached.upto > now:
            cached = _ThreadCounts(signature, base)
        if now > cached.upto:
            found = await self._candidates(user_id, room, cached.upto, now)
            cached.upto = now
            for ev, highlight in await self._notifying(user_id, room, found):
                thread = await self.receipts.thread_of(ev) or MAIN_THREAD
                if (ev.stream_ordering or 0) <= by_thread.get(thread, base):
                    continue
                counts = cached.threads.setdefault(thread, [0, 0])
                counts[0] += 1
                counts[1] += 1 if highlight else 0
        self._threaded[key] = cached
        self._threaded.move_to_end(key)
        if len(self._threaded) > _CACHE_SIZE:
            self._threaded.popitem(last=False)

        def shape(c: list[int]) -> dict[str, int]:
            return {"notification_count": c[0], "highlight_count": c[1]}

        main = shape(cached.threads.get(MAIN_THREAD, [0, 0]))
        threads = {t: shape(c) for t, c in cached.threads.items() if t != MAIN_THREAD and c[0]}
        return main, threads
