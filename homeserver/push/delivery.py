"""Delivery to push gateways (the Push Gateway API, POST /_matrix/push/v1/notify).

Each http pusher has a durable queue (`push_queue`, homeserver/storage/pushers.py):
a notification is queued in the transaction of the event it is about (by
homeserver/push/actions.py), and deleted only once the gateway answered 2xx,
so a restart loses nothing and a notification is sent until acknowledged.

One worker works in rounds: it claims the oldest queued row of every woken pusher
with nothing in flight in one query, reads what those notifications need in bulk
(the push action rows, events, read receipts, and every user's badge with one
count query per room), and starts one request task per pusher; the answers are
settled together in one transaction (rows deleted or pushed back with exponential
backoff) before the pusher's next row is looked at, so each pusher's queue goes
out in order and a message to a big room costs a handful of queries, not several
per member. The requests in flight over all pushers are bounded
(`push.max_concurrent`), and each has a timeout, so a slow or failing gateway
delays only its own pushers.
A gateway that lists the pushkey as `rejected` has the pusher deleted. A read
receipt that lowers the user's unread count queues a badge-only update.

Every request goes through the server's outbound guard: a gateway on a private
or loopback address is refused unless `outbound.allowed_ranges` allows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from federation.outbound_guard import OutboundGuard, RefusedAddressError, TlsTrust
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
_CLAIM = 1000  # pushers whose queue heads one round looks at


@dataclass
class _Answer:
    """How one queue row ended (a gateway's answer, or nothing to send), waiting to be
    settled in the database with the others of its round."""

    pusher: Pusher
    item: QueuedPush
    outcome: str  # "sent", "rejected", "dropped", "skipped" or "retry"
    badge: int


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
        joined_rooms: Callable[[Iterable[str]], Awaitable[dict[str, list[tuple[int, int]]]]],
        guard: OutboundGuard,
        ssl_context: TlsTrust,
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
        self.joined_rooms = joined_rooms
        self.guard = guard
        self.ssl_context = ssl_context
        self.clock = clock
        self._pushers: dict[int, Pusher] = {}  # every http pusher, by nid (a copy of the table)
        self._by_user: dict[str, set[int]] = {}
        self._wanted: set[int] = set()  # pushers whose queue is to be looked at
        self._busy: set[int] = set()  # a row in flight, waiting to be settled, or backing off
        self._answers: list[_Answer] = []
        self._kick = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._to_wake: OrderedDict[int, list[int]] = OrderedDict()  # event nid -> pushers queued in its write
        self._last_badge: dict[int, int] = {}  # pusher nid -> unread count last sent
        self._summaries: OrderedDict[int, dict[str, Any]] = OrderedDict()  # event nid -> its fields
        self._sending = asyncio.Semaphore(config.max_concurrent)
        self._session: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()
        self._started = False

    # --- lifecycle ---

    async def start(self) -> None:
        """Load the http pushers and resume every queue left from before a restart."""
        for p in await self.store.of_kind(HTTP):
            self._remember(p)
        self._stopping.clear()
        self._started = True
        if self.config.enabled:
            self._worker = asyncio.create_task(self._work())
        for nid in await self.store.pushers_with_queue():
            self.wake(nid)

    async def stop(self) -> None:
        """Requests in flight are abandoned (their rows stay queued); answers already
        in are settled first, so a clean restart sends nothing twice."""
        self._stopping.set()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = [*self._sends, *([self._worker] if self._worker is not None else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = None
        try:
            await self._settle()
        except Exception:
            logger.exception("push delivery: answers not recorded at shutdown; those notifications go again")
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the event writer's side (PushQueue, homeserver/push/actions.py) ---

    def has_pushers(self, user_id: str) -> bool:
        return user_id in self._by_user

    def pushing_users(self) -> Collection[str]:
        return self._by_user.keys()

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

    def _remember(self, pusher: Pusher) -> None:
        self._pushers[pusher.pusher_nid] = pusher
        self._by_user.setdefault(pusher.user_id, set()).add(pusher.pusher_nid)

    def _forget(self, pusher_nid: int) -> None:
        pusher = self._pushers.pop(pusher_nid, None)
        self._last_badge.pop(pusher_nid, None)
        if pusher is not None:
            nids = self._by_user.get(pusher.user_id, set())
            nids.discard(pusher_nid)
            if not nids:
                self._by_user.pop(pusher.user_id, None)

    async def pushers_changed(self, user_id: str) -> None:
        for nid in list(self._by_user.get(user_id, ())):
            self._forget(nid)
        for p in await self.store.for_user(user_id):
            if p.kind == HTTP:
                self._remember(p)

    async def receipt_moved(self, room: RoomRecord, receipt: Receipt) -> None:
        """A read receipt (on any device): if it lowered the user's unread count below
        what a pusher last showed, queue a badge-only update for it."""
        nids = sorted(self._by_user.get(receipt.user_id, ()))
        if not nids:
            return
        badge = await self.badge(receipt.user_id)
        lowered = [n for n in nids if badge < self._last_badge.get(n, badge + 1)]
        if lowered:
            await self.store.queue_badge(lowered, room.room_nid, self.clock.time_ms())
            for nid in lowered:
                self.wake(nid)

    async def badge(self, user_id: str) -> int:
        """The user's unread notifications over all joined rooms."""
        return (await self.badges([user_id]))[user_id]

    async def badges(self, user_ids: Iterable[str]) -> dict[str, int]:
        """`badge` of many users: their joined rooms in one query, then per room one
        read of the receipts and counts not cached (a message to a big room notifies
        everyone in it at once)."""
        users = set(user_ids)
        now = self.room_service.stream.current
        by_room: dict[int, dict[str, int]] = {}
        for user_id, joined in (await self.joined_rooms(users)).items():
            for room_nid, joined_at in joined:
                by_room.setdefault(room_nid, {})[user_id] = joined_at
        out = dict.fromkeys(users, 0)
        for room_nid, members in by_room.items():
            room = await self.rooms.get_room_by_nid(room_nid)
            if room is None:
                continue
            for user_id, (n, _) in (await self.unread.room_counts_many(room, members, now)).items():
                out[user_id] += n
        return out

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

    # --- sending: one worker claims queue heads in bulk, each request its own task ---

    def wake(self, pusher_nid: int) -> None:
        if not self._started or not self.config.enabled or self._stopping.is_set():
            return
        self._wanted.add(pusher_nid)
        self._kick.set()

    async def _work(self) -> None:
        """Rounds, each when something changed: settle the answers that came in (one
        transaction), then look at the queue heads of every woken pusher that has
        nothing in flight (one query), read what their notifications need in bulk,
        and start one request per pusher. A pusher's next row is looked at only after
        its previous one is settled, so each queue goes out in order."""
        while True:
            await self._kick.wait()
            self._kick.clear()
            try:
                await self._settle()
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("push delivery: a round failed; its pushers resume at their next notification")

    async def _settle(self) -> None:
        answers, self._answers = self._answers, []
        if not answers:
            return
        now = self.clock.time_ms()
        done: list[int] = []
        retries: list[tuple[int, int, int]] = []
        for a in answers:
            if a.outcome != "retry":
                done.append(a.item.queue_nid)
            elif now - a.item.created_ts >= self.config.give_up_after_s * 1000:
                logger.warning("dropping a notification for pusher %d: not accepted after %d tries",
                               a.item.pusher_nid, a.item.attempts + 1)
                done.append(a.item.queue_nid)
            else:
                delay = min(self.config.retry_cap_s, self.config.retry_base_s * 2 ** min(a.item.attempts, 30))
                retries.append((a.item.queue_nid, a.item.attempts + 1, now + int(delay * 1000)))
        try:
            await self.store.settle(done, retries)
        except BaseException:
            self._answers[:0] = answers  # kept for the next round: nothing is lost or sent twice
            raise
        rejected: list[int] = []
        for a in answers:
            nid = a.pusher.pusher_nid
            self._busy.discard(nid)
            if a.outcome == "rejected":
                rejected.append(nid)
                continue
            if a.outcome == "sent":
                self._last_badge[nid] = a.badge
            self.wake(nid)  # its next row, if any
        for nid in rejected:
            logger.info("push gateway rejected the pushkey of pusher %d: deleting it", nid)
            self._forget(nid)
            await self.store.delete_nid(nid)

    async def _round(self) -> None:
        nids = [n for n in self._wanted if n not in self._busy][:_CLAIM]
        self._wanted.difference_update(nids)
        if any(n not in self._busy for n in self._wanted):
            self._kick.set()  # more than one round's worth
        if not nids:
            return
        now = self.clock.time_ms()
        due: list[tuple[Pusher, QueuedPush]] = []
        try:
            heads = await self.store.heads(nids)
        except BaseException:
            self._wanted.update(nids)  # looked at again at the next change
            raise
        for item in heads:
            pusher = self._pushers.get(item.pusher_nid) or await self.store.get(item.pusher_nid)
            if pusher is None:
                continue  # deleted: its queue went with it
            wait_ms = item.next_attempt_ts - now
            if wait_ms > 0:
                self._busy.add(pusher.pusher_nid)
                self._timers[pusher.pusher_nid] = asyncio.get_running_loop().call_later(
                    wait_ms / 1000, self._backed_off, pusher.pusher_nid)
                continue
            due.append((pusher, item))
        if due:
            await self._start_sends(due)

    def _backed_off(self, pusher_nid: int) -> None:
        self._timers.pop(pusher_nid, None)
        self._busy.discard(pusher_nid)
        self.wake(pusher_nid)

    async def _start_sends(self, due: list[tuple[Pusher, QueuedPush]]) -> None:
        badges = await self.badges({p.user_id for p, _ in due})
        with_event = [(p, i) for p, i in due if i.event_nid is not None]
        rows = await self.actions.get_many((p.user_id, i.event_nid) for p, i in with_event if i.event_nid)
        events = await self.events.get_events_by_nid({i.event_nid for _, i in with_event if i.event_nid})
        readers: dict[int, set[str]] = {}
        for p, i in with_event:
            readers.setdefault(i.room_nid, set()).add(p.user_id)
        rooms: dict[int, RoomRecord] = {}
        reads: dict[tuple[int, str], int | None] = {}
        for room_nid, users in readers.items():
            room = await self.rooms.get_room_by_nid(room_nid)
            if room is not None:
                rooms[room_nid] = room
                for user_id, read in (await self.receipts.read_up_to_many(room.room_id, users)).items():
                    reads[(room_nid, user_id)] = read
        for pusher, item in due:
            badge = badges.get(pusher.user_id, 0)
            if item.event_nid is None:
                notification: dict[str, Any] = {"counts": _counts(badge), "devices": [_device(pusher, {})]}
            else:
                row = rows.get((pusher.user_id, item.event_nid))
                event = events.get(item.event_nid)
                room = rooms.get(item.room_nid)
                read = reads.get((item.room_nid, pusher.user_id))
                if row is None or event is None or room is None or event.redacted_by is not None \
                        or (read is not None and read >= row.stream_ordering):
                    # redacted or purged since, or read on another device meanwhile
                    self._busy.add(pusher.pusher_nid)
                    self._answer(_Answer(pusher, item, "skipped", badge))
                    continue
                notification = await self._event_notification(pusher, room, event, row, badge)
            self._busy.add(pusher.pusher_nid)
            task = asyncio.create_task(self._send(pusher, item, notification, badge))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    def _answer(self, answer: _Answer) -> None:
        self._answers.append(answer)
        self._kick.set()

    async def _send(self, pusher: Pusher, item: QueuedPush, notification: dict[str, Any], badge: int) -> None:
        try:
            outcome = await self._post(pusher, {"notification": notification})
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("push delivery to pusher %d failed; will retry", pusher.pusher_nid)
            outcome = "retry"
        self._answer(_Answer(pusher, item, outcome, badge))

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
