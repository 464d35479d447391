"""Push actions, computed once per event and member when the event is written.

`PushActionsIndex` is one of the event writer's indexes (EventIndex,
homeserver/rooms/persist.py): inside the transaction that writes a live timeline
event it evaluates the push rules of every local member the event may notify
(joined members, and the invitee of an invite), stores one row per member it
notifies (homeserver/storage/push_actions.py), and queues the notification for
that member's pushers in the same transaction, so neither can be lost or
disagree with the event after a crash. A redaction drops the event's rows.

The transaction may only read through its own `txn`, so everything the rules
read comes from there or from caches: rulesets and ignore lists (the services'
own caches, filled through the txn on a miss), display names by membership
event, power levels and create events by event. The room's send path therefore
costs one members query, one rule evaluation per member and one batch insert.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from federation.events import get_room_version, get_user_power_level
from homeserver.clock import Clock
from homeserver.push.evaluator import evaluate, highlights, notifies
from homeserver.receipts import MAIN_THREAD, thread_of
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.storage.database import Txn
from homeserver.storage.push_actions import PushActionRow, PushActionStore

if TYPE_CHECKING:
    from homeserver.account_data import AccountDataService
    from homeserver.push.service import PushRulesService

_CACHE_SIZE = 50_000
IGNORED_USERS = "m.ignored_user_list"


class PushQueue(Protocol):
    """The delivery side (homeserver/push/delivery.py): which users have pushers, and
    queueing a notification for them inside the event's transaction."""

    def has_pushers(self, user_id: str) -> bool: ...

    async def queue_in(self, txn: Txn, room: RoomRecord, stored: StoredEvent, user_ids: list[str]) -> None: ...


class CountsListener(Protocol):
    def __call__(self, room_nid: int, user_ids: list[str]) -> None: ...


class _Lru:
    """A small bounded map, most recently used last."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self.size = size
        self.data: OrderedDict[int, Any] = OrderedDict()

    def get(self, key: int) -> Any:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: int, value: Any) -> None:
        self.data[key] = value
        if len(self.data) > self.size:
            self.data.popitem(last=False)


class PushActionsIndex:
    """Writes each live event's push actions for the local users it notifies."""

    def __init__(
        self,
        *,
        store: PushActionStore,
        push_rules: PushRulesService,
        account_data: AccountDataService,
        is_mine: Callable[[str], bool],
        clock: Clock,
    ) -> None:
        self.store = store
        self.push_rules = push_rules
        self.account_data = account_data
        self.is_mine = is_mine
        self.clock = clock
        self.queue: PushQueue | None = None
        # told (room nid, users) when stored counts changed other than by growing
        # at the stream's head: a redaction removed notifications
        self.on_removed: list[CountsListener] = []
        self._names = _Lru()  # membership event nid -> display name ("" when none)
        self._contents = _Lru(4096)  # power levels / create event nid -> event

    def connect(self, queue: PushQueue) -> None:
        """The delivery queue, built after the event writer (it reads these rows)."""
        self.queue = queue

    async def event_written(self, txn: Txn, room: RoomRecord, stored: StoredEvent) -> None:
        # Backfilled history sits below position 1 and notifies nobody; so do
        # events already redacted when they arrive.
        if stored.stream_ordering is None or stored.stream_ordering <= 0 or stored.redacted_by is not None:
            return
        event = stored.event
        sender = event.get("sender")
        ctx = await PushActionStore.room_context(txn, room.room_nid)
        joined = [(u, nid) for u, m, nid in ctx.members if m == "join"]
        targets = [(u, nid) for u, nid in joined if u != sender and self.is_mine(u)]
        state_key = event.get("state_key")
        if (
            event.get("type") == "m.room.member" and isinstance(state_key, str) and state_key != sender
            and self.is_mine(state_key) and isinstance(event.get("content"), dict)
            and event["content"].get("membership") == "invite"
        ):
            targets.append((state_key, stored.nid))  # the invitee, not a member yet
        if not targets:
            return
        await self._load_events(txn, [n for n in (ctx.power_levels_nid, ctx.create_nid) if n is not None])
        await self._load_names(txn, [nid for _, nid in targets])
        state: dict[tuple[str, str], Any] = {}
        if ctx.create_nid is not None:
            state[("m.room.create", "")] = self._contents.get(ctx.create_nid)
        levels = self._contents.get(ctx.power_levels_nid) if ctx.power_levels_nid is not None else None
        if levels is not None:
            state[("m.room.power_levels", "")] = levels
        rv = get_room_version(room.room_version)
        sender_level = int(min(get_user_power_level(str(sender), state, rv), 2**31))
        levels_content = levels.get("content") if isinstance(levels, dict) else None
        shown = {**event, "room_id": room.room_id}
        is_state = state_key is not None
        thread: str | None = None
        now = self.clock.time_ms()
        rows: list[PushActionRow] = []
        for user_id, member_nid in targets:
            if not is_state and sender in await self._ignored(txn, user_id):
                continue  # an ignored user's messages are not shown, so they do not notify
            name = self._names.get(member_nid) or None
            actions = evaluate(
                await self.push_rules.ruleset_in(txn, user_id), shown, len(joined), name, sender_level,
                levels_content if isinstance(levels_content, dict) else None,
            )
            if not notifies(actions):
                continue
            if thread is None:
                thread = await self._thread(txn, event)
            rows.append(PushActionRow(
                user_id, room.room_nid, stored.stream_ordering, stored.nid, thread, highlights(actions), actions, now,
            ))
        if not rows:
            return
        await PushActionStore.add(txn, rows)
        if self.queue is not None:
            pushed = [r.user_id for r in rows if self.queue.has_pushers(r.user_id)]
            if pushed:
                await self.queue.queue_in(txn, room, stored, pushed)

    async def event_redacted(self, txn: Txn, room: RoomRecord, redacted_event_id: str) -> None:
        users = await PushActionStore.remove_event(txn, redacted_event_id)
        if users:
            for listener in self.on_removed:
                listener(room.room_nid, users)

    async def _thread(self, txn: Txn, event: dict[str, Any]) -> str:
        # No event ID holds NUL (and PostgreSQL text cannot): such a relation is to nothing.
        async def parent(event_id: str) -> dict[str, Any] | None:
            return None if "\x00" in event_id else await PushActionStore.event_json_by_id(txn, event_id)

        thread = await thread_of(event, parent)
        return MAIN_THREAD if thread is None or "\x00" in thread else thread

    async def _ignored(self, txn: Txn, user_id: str) -> set[str] | dict[str, Any]:
        content = await self.account_data.get_global_in(txn, user_id, IGNORED_USERS)
        ignored = content.get("ignored_users") if isinstance(content, dict) else None
        return ignored if isinstance(ignored, dict) else set()

    async def _load_events(self, txn: Txn, nids: list[int]) -> None:
        missing = [n for n in nids if self._contents.get(n) is None]
        if missing:
            for nid, ev in (await PushActionStore.event_json(txn, missing)).items():
                self._contents.put(nid, ev)

    async def _load_names(self, txn: Txn, nids: list[int]) -> None:
        missing = [n for n in nids if self._names.get(n) is None]
        if not missing:
            return
        for nid, ev in (await PushActionStore.event_json(txn, missing)).items():
            content = ev.get("content")
            name = content.get("displayname") if isinstance(content, dict) else None
            self._names.put(nid, name if isinstance(name, str) else "")
