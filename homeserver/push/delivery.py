"""Delivery to push gateways (the Push Gateway API, POST /_matrix/push/v1/notify).

Each http pusher has a durable queue (`push_queue`, homeserver/storage/pushers.py):
a notification is queued in the transaction of the event it is about (by
homeserver/push/actions.py), and deleted only once the gateway answered 2xx,
so a restart loses nothing and a notification is sent until acknowledged.

Each pusher with something queued has one task that sends its queue in order,
one request at a time, and waits with exponential backoff after a failure; the
requests in flight over all pushers are bounded (`push.max_concurrent`), and
each has a timeout, so a slow or failing gateway delays only its own pushers.
A gateway that lists the pushkey as `rejected` has the pusher deleted. A read
receipt that lowers the user's unread count queues a badge-only update.

Every request goes through the server's outbound guard: a gateway on a private
or loopback address is refused unless `outbound.allowed_ranges` allows it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from federation.outbound_guard import OutboundGuard, RefusedAddressError
from homeserver.clock import Clock
from homeserver.config import PushConfig
from homeserver.push.evaluator import tweak
from homeserver.records.events import StoredEvent
from homeserver.records.pushers import Pusher, QueuedPush
from homeserver.records.receipts import Receipt
from homeserver.records.rooms import RoomRecord, UserMembership
from homeserver.storage.database import Txn
from homeserver.storage.push_actions import PushActionRow, PushActionStore
from homeserver.storage.pushers import PusherStore

if TYPE_CHECKING:
    from homeserver.receipts import ReceiptService
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore
    from homeserver.sync.unread import UnreadCounter

logger = logging.getLogger(__name__)

HTTP = "http"
_MAX_ANSWER_BYTES = 64 * 1024
_MAX_CONTENT_BYTES = 4096  # push providers cap a notification's size; bigger content is left out
_WAKE_BACKLOG = 10_000
_SUMMARIES = 256


class PushDelivery:
    def __init__(
        self,
        *,
        config: PushConfig,
        store: PusherStore,
        actions: PushActionStore,
        events: EventStore,
        rooms: RoomStore,
        room_service: RoomService,
        receipts: ReceiptService,
        unread: UnreadCounter,
        memberships: Callable[[str], Awaitable[list[UserMembership]]],
        guard: OutboundGuard,
        ssl_context: ssl.SSLContext,
        clock: Clock,
    ) -> None:
        self.config = config
        self.store = store
        self.actions = actions
        self.events = events
        self.rooms = rooms
        self.room_service = room_service
        self.receipts = receipts
        self.unread = unread
        self.memberships = memberships
        self.guard = guard
        self.ssl_context = ssl_context
        self.clock = clock
        self._http_users: set[str] = set()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._dirty: set[int] = set()
        self._to_wake: OrderedDict[int, list[int]] = OrderedDict()  # event nid -> pushers queued in its write
        self._last_badge: dict[int, int] = {}  # pusher nid -> unread count last sent
        self._summaries: OrderedDict[int, dict[str, Any]] = OrderedDict()  # event nid -> its fields
        self._sending = asyncio.Semaphore(config.max_concurrent)
        self._session: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()
        self._started = False

    # --- lifecycle ---

    async def start(self) -> None:
        """Load who has pushers and resume every queue left from before a restart."""
        self._http_users = await self.store.users_with_kind(HTTP)
        self._stopping.clear()
        self._started = True
        for nid in await self.store.pushers_with_queue():
            self.wake(nid)

    async def stop(self) -> None:
        self._stopping.set()
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the event writer's side (PushQueue, homeserver/push/actions.py) ---

    def has_pushers(self, user_id: str) -> bool:
        return user_id in self._http_users

    async def queue_in(self, txn: Txn, room: RoomRecord, stored: StoredEvent, user_ids: list[str]) -> None:
        nids = await PusherStore.queue_in(txn, user_ids, HTTP, stored.nid, room.room_nid, self.clock.time_ms())
        if nids:
            self._to_wake[stored.nid] = nids
            while len(self._to_wake) > _WAKE_BACKLOG:  # writes that never committed
                _, stale = self._to_wake.popitem(last=False)
                for nid in stale:
                    self.wake(nid)

    def event_persisted(self, event: StoredEvent, room: RoomRecord) -> None:
        """After the commit (a RoomActivity listener): send what the write queued."""
        for nid in self._to_wake.pop(event.nid, ()):
            self.wake(nid)

    # --- pushers changing (PusherService) and receipts ---

    async def pushers_changed(self, user_id: str) -> None:
        pushers = await self.store.for_user(user_id)
        if any(p.kind == HTTP for p in pushers):
            self._http_users.add(user_id)
        else:
            self._http_users.discard(user_id)

    async def receipt_moved(self, room: RoomRecord, receipt: Receipt) -> None:
        """A read receipt (on any device): if it lowered the user's unread count below
        what a pusher last showed, queue a badge-only update for it."""
        if receipt.user_id not in self._http_users:
            return
        pushers = [p for p in await self.store.for_user(receipt.user_id) if p.kind == HTTP]
        if not pushers:
            return
        badge = await self.badge(receipt.user_id)
        lowered = [p.pusher_nid for p in pushers if badge < self._last_badge.get(p.pusher_nid, badge + 1)]
        if lowered:
            await self.store.queue_badge(lowered, room.room_nid, self.clock.time_ms())
            for nid in lowered:
                self.wake(nid)

    async def badge(self, user_id: str) -> int:
        """The user's unread notifications over all joined rooms."""
        return sum(n for _, n in await self.unread_by_room(user_id))

    async def unread_by_room(self, user_id: str) -> list[tuple[RoomRecord, int]]:
        """The user's joined rooms with unread notifications, and how many (digests too)."""
        now = self.room_service.stream.current
        out: list[tuple[RoomRecord, int]] = []
        for m in await self.memberships(user_id):
            if m.membership != "join":
                continue
            room = await self.rooms.get_room_by_nid(m.room_nid)
            if room is not None:
                n = (await self.unread.room_counts(user_id, room, m.stream_ordering, now))[0]
                if n:
                    out.append((room, n))
        return out

    # --- the per-pusher senders ---

    def wake(self, pusher_nid: int) -> None:
        if not self._started or not self.config.enabled or self._stopping.is_set():
            return
        self._dirty.add(pusher_nid)
        if pusher_nid not in self._tasks:
            self._tasks[pusher_nid] = asyncio.create_task(self._run(pusher_nid))

    async def _run(self, pusher_nid: int) -> None:
        try:
            while not self._stopping.is_set():
                self._dirty.discard(pusher_nid)
                item = await self.store.next_queued(pusher_nid)
                if item is None:
                    if pusher_nid in self._dirty:
                        continue
                    return
                wait_ms = item.next_attempt_ts - self.clock.time_ms()
                if wait_ms > 0 and await self._stopped_within(wait_ms / 1000):
                    return
                pusher = await self.store.get(pusher_nid)
                if pusher is None:  # deleted: its queue went with it
                    return
                await self._deliver(pusher, item)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("push delivery for pusher %d failed; it resumes at the next notification", pusher_nid)
        finally:
            self._tasks.pop(pusher_nid, None)

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def _deliver(self, pusher: Pusher, item: QueuedPush) -> None:
        badge = await self.badge(pusher.user_id)
        if item.event_nid is None:
            notification: dict[str, Any] = {"counts": _counts(badge), "devices": [_device(pusher, {})]}
        else:
            row = await self.actions.get(pusher.user_id, item.event_nid)
            event = (await self.events.get_events_by_nid([item.event_nid])).get(item.event_nid)
            room = await self.rooms.get_room_by_nid(item.room_nid)
            if row is None or event is None or room is None or event.redacted_by is not None:
                await self.store.done(item.queue_nid)  # redacted (or purged) since: nothing to say
                return
            read = await self.receipts.read_up_to(pusher.user_id, room.room_id)
            if read is not None and read >= row.stream_ordering:
                await self.store.done(item.queue_nid)  # read on another device meanwhile
                return
            notification = await self._event_notification(pusher, room, event, row, badge)
        outcome = await self._post(pusher, {"notification": notification})
        if outcome == "retry":
            await self._retry(item)
            return
        await self.store.done(item.queue_nid)
        if outcome == "sent":
            self._last_badge[pusher.pusher_nid] = badge
        elif outcome == "rejected":
            logger.info("push gateway rejected the pushkey of pusher %d: deleting it", pusher.pusher_nid)
            await self.store.delete_nid(pusher.pusher_nid)
            self._last_badge.pop(pusher.pusher_nid, None)
            await self.pushers_changed(pusher.user_id)

    async def _retry(self, item: QueuedPush) -> None:
        now = self.clock.time_ms()
        if now - item.created_ts >= self.config.give_up_after_s * 1000:
            logger.warning("dropping a notification for pusher %d: not accepted after %d tries",
                           item.pusher_nid, item.attempts + 1)
            await self.store.done(item.queue_nid)
            return
        delay = min(self.config.retry_cap_s, self.config.retry_base_s * 2 ** min(item.attempts, 30))
        await self.store.retry_later(item.queue_nid, item.attempts + 1, now + int(delay * 1000))

    async def _event_notification(
        self, pusher: Pusher, room: RoomRecord, event: StoredEvent, row: PushActionRow, badge: int
    ) -> dict[str, Any]:
        tweaks = _tweaks(row.actions)
        out: dict[str, Any] = {
            "event_id": event.event_id, "room_id": room.room_id, "counts": _counts(badge),
            "prio": "high" if (row.highlight or "sound" in tweaks or event.type == "m.room.encrypted") else "low",
            "devices": [_device(pusher, tweaks)],
        }
        if pusher.data.get("format") == "event_id_only":
            return out
        out.update(await self._summary(room, event))
        if event.type == "m.room.member":
            out["user_is_target"] = event.state_key == pusher.user_id
        return out

    async def _summary(self, room: RoomRecord, event: StoredEvent) -> dict[str, Any]:
        """The event's fields of a full-format notification, the same for every pusher:
        read once per event (a message to a big room goes to many pushers at once)."""
        cached = self._summaries.get(event.nid)
        if cached is not None:
            return cached
        out: dict[str, Any] = {"type": event.type, "sender": event.sender}
        state = await self.room_service.current_state_events(
            room, [("m.room.member", event.sender), ("m.room.name", ""), ("m.room.canonical_alias", "")]
        )
        for key, name, field in (
            (("m.room.member", event.sender), "sender_display_name", "displayname"),
            (("m.room.name", ""), "room_name", "name"),
            (("m.room.canonical_alias", ""), "room_alias", "alias"),
        ):
            value = _string(state.get(key), field)
            if value is not None:
                out[name] = value
        content = event.event.get("content")
        if self.config.include_content and isinstance(content, dict) and content:
            if len(orjson.dumps(content)) <= _MAX_CONTENT_BYTES:
                out["content"] = content
        self._summaries[event.nid] = out
        if len(self._summaries) > _SUMMARIES:
            self._summaries.popitem(last=False)
        return out

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self.guard.session(
                connector_args={"ssl": self.ssl_context, "limit": self.config.max_concurrent},
            )
        return self._session

    async def _post(self, pusher: Pusher, body: dict[str, Any]) -> str:
        """"sent", "rejected" (the pushkey), "dropped" (never to succeed) or "retry"."""
        url = pusher.data.get("url")
        if not isinstance(url, str):
            return "dropped"
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        try:
            async with self._sending, self._get_session().post(
                url, data=orjson.dumps(body), headers={"Content-Type": "application/json"},
                timeout=timeout, allow_redirects=False,
            ) as resp:
                status = resp.status
                raw = await resp.content.read(_MAX_ANSWER_BYTES)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddressError):
                logger.warning("pusher %d: %s; notification dropped", pusher.pusher_nid, exc.os_error.strerror)
                return "dropped"
            return "retry"
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            logger.info("pusher %d: gateway unreachable (%s); will retry", pusher.pusher_nid, type(exc).__name__)
            return "retry"
        if 200 <= status < 300:
            try:
                answer = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                answer = {}
            rejected = answer.get("rejected") if isinstance(answer, dict) else None
            if isinstance(rejected, list) and pusher.pushkey in rejected:
                return "rejected"
            return "sent"
        if status == 429 or status >= 500 or status == 408:
            return "retry"
        logger.warning("pusher %d: gateway answered %d; notification dropped", pusher.pusher_nid, status)
        return "dropped"


def _counts(badge: int) -> dict[str, int]:
    # "Counts whose value is zero should be omitted" (the Push Gateway API).
    return {"unread": badge} if badge else {}


def _device(pusher: Pusher, tweaks: dict[str, Any]) -> dict[str, Any]:
    return {
        "app_id": pusher.app_id, "pushkey": pusher.pushkey, "pushkey_ts": pusher.created_ts // 1000,
        "data": {k: v for k, v in pusher.data.items() if k != "url"}, "tweaks": tweaks,
    }


def _tweaks(actions: Iterable[Any]) -> dict[str, Any]:
    names = {a["set_tweak"] for a in actions if isinstance(a, dict) and isinstance(a.get("set_tweak"), str)}
    return {name: tweak(actions, name) for name in sorted(names)}


def _string(event: StoredEvent | None, key: str) -> str | None:
    content = event.event.get("content") if event is not None else None
    value = content.get(key) if isinstance(content, dict) else None
    return value if isinstance(value, str) and value else None
