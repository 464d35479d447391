"""Network analytics: daily rollups the server keeps as things happen, so that the
console's charts (and Prometheus) read a few rows per day instead of scanning events.

- Messages (``m.room.message``, ``m.room.encrypted``, ``m.sticker``) are counted by the
  event writer's own transaction (`Analytics` is one of `EventPersister.indexes`): on
  the day they are written, as internal (no other server in the room) or federated,
  and, for each active partner in the room, as sent to it (our user's message) or
  received from it (its user's). Backfilled history is not traffic and is not counted.
- Active users: the local users who sent a message that day. The server's own system
  account (server notices) is neither traffic nor a user. A user's row for the day is
  written by the transaction of their first message that day; the users whose row is
  known committed (told after the commit, `event_persisted`) are remembered for the
  day, so their later messages write nothing more. A transaction that fails leaves
  nothing remembered, and after a restart the first message writes the row again
  (a no-op on conflict).
- Partners over time: the number of active partners, recorded whenever it changes
  (and at startup); a day without a record carries the previous value.
- Partner servers' response times and the destinations' delivery state come from the
  federation sender (`delivered`, `failed`) and refusals from the federation policy;
  they are kept in memory and written every few seconds (and at stop), since a write
  per federation transaction would cost more than the figure is worth.

Days are UTC day numbers (milliseconds since the epoch // 86,400,000) of this server's
clock: a remote server's timestamps are not trusted to place its messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from federation.events.identifiers import domain_of
from homeserver.background import cancel_and_wait
from homeserver.clock import Clock
from homeserver.records.analytics import DestinationRecord
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.storage.analytics import AnalyticsStore
from homeserver.storage.database import Txn

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
MESSAGE_TYPES = frozenset({"m.room.message", "m.room.encrypted", "m.sticker"})
MAX_DAYS = 366
FLUSH_INTERVAL_S = 5.0
MAX_ERROR = 300
# Active-user rows written by transactions not yet known committed, by event ID: a bound
# on what failed writes leave behind (forgetting them costs a later message its write).
MAX_UNCONFIRMED = 10_000

# Metric names in analytics_daily.
MESSAGES_INTERNAL = "messages_internal"
MESSAGES_FEDERATED = "messages_federated"
PARTNER_SENT = "partner_sent"
PARTNER_RECEIVED = "partner_received"
PARTNERS = "partners"
RESPONSE_MS = "response_ms"
RESPONSES = "responses"


def day_of(ts_ms: int) -> int:
    return ts_ms // DAY_MS


def day_label(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")


class Analytics:
    def __init__(
        self, *, store: AnalyticsStore, server_name: str,
        cached_servers: Callable[[int], frozenset[str] | None],
        is_partner: Callable[[str], bool], clock: Clock, system_users: frozenset[str] = frozenset(),
        federating: bool = True,
    ) -> None:
        self.store = store
        # With federation off no message leaves the server (all count as internal), and
        # the room servers' cache, which the sender fills, stays empty: without this a
        # message's write would read the room's whole member list.
        self.federating = federating
        self.server_name = server_name
        self.cached_servers = cached_servers
        self.is_partner = is_partner
        self.clock = clock
        self.system_users = system_users  # the server's own accounts: notices are not traffic
        self._destinations: dict[str, DestinationRecord] = {}
        self._dirty: set[str] = set()
        self._responses: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])  # ms, count
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        # (day, local users whose row for that day is committed); one value, which the
        # writing transaction (the SQLite writer's thread) reads at once
        self._active: tuple[int, set[str]] = (-1, set())
        # event ID -> (day, user) of the active-user row its transaction wrote, until the
        # event is known committed (`event_persisted`)
        self._unconfirmed: dict[str, tuple[int, str]] = {}

    def today(self) -> int:
        return day_of(self.clock.time_ms())

    # --- lifecycle ---

    async def start(self, active_partners: int) -> None:
        for record in await self.store.destinations():
            self._destinations[record.destination] = record
        await self.partners_changed(active_partners)
        self._task = asyncio.create_task(self._flush_loop(), name="analytics-flush")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.flush()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except Exception:  # a database hiccup: keep the figures for the next try
                logger.exception("analytics: flushing the federation figures failed")

    async def flush(self) -> None:
        """Write the destinations' state and the response times gathered since the last flush."""
        async with self._flush_lock:
            dirty = [self._destinations[d] for d in sorted(self._dirty)]
            responses = dict(self._responses)
            self._dirty.clear()
            self._responses.clear()
            try:
                await self.store.save_destinations(dirty)
                by_day: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
                for (day, dest), (ms, n) in responses.items():
                    by_day[day] += [(RESPONSE_MS, dest, ms), (RESPONSES, dest, n)]
                for day, counts in by_day.items():
                    await self.store.add(day, counts)
            except BaseException:
                self._dirty.update(r.destination for r in dirty)
                for key, (ms, n) in responses.items():
                    self._responses[key][0] += ms
                    self._responses[key][1] += n
                raise

    # --- the event writer's index (homeserver/rooms/persist.py EventIndex) ---

    def _counted_sender(self, stored: StoredEvent) -> str | None:
        """The sender of a message the rollups count (a live timeline message, not the
        server's own), or None."""
        if (
            stored.type not in MESSAGE_TYPES or stored.state_key is not None
            or stored.stream_ordering is None or stored.stream_ordering <= 0  # backfilled history
        ):
            return None
        sender = stored.event.get("sender")
        if not isinstance(sender, str) or sender in self.system_users:
            return None
        return sender

    async def event_written(self, txn: Txn, room: RoomRecord, stored: StoredEvent) -> None:
        sender = self._counted_sender(stored)
        if sender is None:
            return
        try:
            sender_server = domain_of(sender)
        except ValueError:
            return
        day = self.today()
        local = sender_server == self.server_name
        servers = await self._servers(txn, room) if room.federate and self.federating else set()
        if not local:
            servers.add(sender_server)  # a sender who left since still came from there
        counts = [(MESSAGES_FEDERATED if servers else MESSAGES_INTERNAL, "", 1)]
        if local:
            counts += [(PARTNER_SENT, s, 1) for s in sorted(servers) if self.is_partner(s)]
        elif self.is_partner(sender_server):
            counts.append((PARTNER_RECEIVED, sender_server, 1))
        await AnalyticsStore.add_in_txn(txn, day, counts)
        active_day, active = self._active
        if local and (day != active_day or sender not in active):
            await AnalyticsStore.mark_active_in_txn(txn, day, sender)
            if len(self._unconfirmed) >= MAX_UNCONFIRMED:
                self._unconfirmed.clear()
            self._unconfirmed[stored.event_id] = (day, sender)

    def event_persisted(self, stored: StoredEvent, room: RoomRecord) -> None:
        """After an event's commit (a room activity listener): the active-user row its
        transaction wrote is committed, so the sender need not be written again that
        day. Only a timeline message's own committed transaction can have written (or
        rewritten) the entry it confirms: one left by a failed attempt at another
        event is never confirmed, and one left by a failed attempt at this event is
        either written anew by this commit, or stands for a row of a day already
        past, or for a user already remembered."""
        if not self._unconfirmed or self._counted_sender(stored) is None:
            return
        written = self._unconfirmed.pop(stored.event_id, None)
        if written is None:
            return
        day, user = written
        active_day, active = self._active
        if day < active_day:
            return
        if day > active_day:
            self._active = (day, {user})
        else:
            active.add(user)

    async def _servers(self, txn: Txn, room: RoomRecord) -> set[str]:
        """The room's other servers: the membership cache (which a local message's
        write has just filled), else the memberships read in the writing transaction."""
        cached = self.cached_servers(room.room_nid)
        if cached is not None:
            return set(cached) - {self.server_name}
        servers: set[str] = set()
        for user_id in await AnalyticsStore.joined_users_in_txn(txn, room.room_nid):
            with contextlib.suppress(ValueError):
                servers.add(domain_of(user_id))
        servers.discard(self.server_name)
        return servers

    async def event_redacted(self, txn: Txn, room: RoomRecord, redacted_event_id: str) -> None:
        """A message sent stays sent: traffic figures ignore redactions."""

    # --- partnerships (Partnerships.on_active_changed) ---

    async def partners_changed(self, active: int) -> None:
        await self.store.set_gauge(self.today(), PARTNERS, active)

    # --- the federation sender and policy ---

    def _dest(self, destination: str) -> DestinationRecord:
        record = self._destinations.get(destination)
        if record is None:
            record = self._destinations[destination] = DestinationRecord(destination)
        self._dirty.add(destination)
        return record

    def delivered(self, destination: str, elapsed_ms: int) -> None:
        """A transaction the destination took, and how long it took to answer."""
        now = self.clock.time_ms()
        record = self._dest(destination)
        record.last_success_ts = now
        record.failure_ts = None
        record.retry_interval_ms = 0
        record.failures = 0
        totals = self._responses[(day_of(now), destination)]
        totals[0] += max(0, elapsed_ms)
        totals[1] += 1

    def failed(self, destination: str, error: str, retry_in_s: float) -> None:
        now = self.clock.time_ms()
        record = self._dest(destination)
        record.failure_ts = record.failure_ts or now
        record.retry_last_ts = now
        record.retry_interval_ms = int(retry_in_s * 1000)
        record.failures += 1
        record.last_error = error[:MAX_ERROR]

    def refused(self, server_name: str) -> None:
        """Our federation policy refused a request to or from the server."""
        record = self._dest(server_name)
        record.refusals += 1
        record.last_refusal_ts = self.clock.time_ms()

    async def destinations(self) -> list[DestinationRecord]:
        """Every destination we know of, with its current state."""
        await self.flush()
        return sorted(self._destinations.values(), key=lambda r: r.destination)

    async def destination(self, name: str) -> DestinationRecord | None:
        await self.flush()
        return self._destinations.get(name)

    async def queue_depths(self) -> dict[str, int]:
        return await self.store.queue_depths()

    async def rooms_shared_with(self, server_name: str) -> list[dict[str, Any]]:
        """The rooms `server_name`'s users are joined to here, with those users, oldest
        join first (Synapse's `stream_ordering`: the latest of those joins)."""
        rooms: dict[str, dict[str, Any]] = {}
        for room_id, user_id, pos in await self.store.members_from(server_name):
            room = rooms.setdefault(room_id, {"room_id": room_id, "stream_ordering": pos, "members": []})
            room["members"].append(user_id)
            room["stream_ordering"] = max(room["stream_ordering"], pos)
        return sorted(rooms.values(), key=lambda r: (r["stream_ordering"], r["room_id"]))

    # --- reading the rollups ---

    async def report(self, days: int) -> dict[str, Any]:
        """The last `days` days (today included) of every series, oldest first."""
        await self.flush()
        last = self.today()
        first = last - days + 1
        rows = await self.store.daily(first, last)
        index = {day: i for i, day in enumerate(range(first, last + 1))}
        internal = [0] * days
        federated = [0] * days
        partners: list[int | None] = [None] * days
        traffic: dict[str, dict[str, int]] = defaultdict(lambda: {"sent": 0, "received": 0})
        response: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for day, metric, dim, value in rows:
            i = index[day]
            if metric == MESSAGES_INTERNAL:
                internal[i] += value
            elif metric == MESSAGES_FEDERATED:
                federated[i] += value
            elif metric == PARTNERS:
                partners[i] = value
            elif metric == PARTNER_SENT:
                traffic[dim]["sent"] += value
            elif metric == PARTNER_RECEIVED:
                traffic[dim]["received"] += value
            elif metric == RESPONSE_MS:
                response[dim][0] += value
            elif metric == RESPONSES:
                response[dim][1] += value
        carried: int = await self.store.gauge_before(first, PARTNERS) or 0
        partner_series: list[int] = []
        for recorded in partners:
            if recorded is not None:
                carried = recorded
            partner_series.append(carried)
        active = await self.store.active_users(first, last)
        return {
            "days": [day_label(d) for d in range(first, last + 1)],
            "messages": {"internal": internal, "federated": federated},
            "active_users": [active.get(d, 0) for d in range(first, last + 1)],
            "partners": partner_series,
            "partner_traffic": [
                {"server_name": s, **t} for s, t in sorted(traffic.items(), key=lambda kv: kv[0])
            ],
            "response_times": [
                {"server_name": s, "transactions": n, "avg_ms": round(ms / n, 1) if n else None}
                for s, (ms, n) in sorted(response.items())
            ],
        }

    async def prometheus(self, active_partners: int) -> str:
        """Today's figures and the destinations' state, in the Prometheus text format."""
        today = await self.report(1)
        depths = await self.queue_depths()
        lines = [
            "# HELP accord_messages_today Messages written today, by whether other servers were in the room.",
            "# TYPE accord_messages_today gauge",
            f'accord_messages_today{{scope="internal"}} {today["messages"]["internal"][0]}',
            f'accord_messages_today{{scope="federated"}} {today["messages"]["federated"][0]}',
            "# TYPE accord_active_users_today gauge",
            f"accord_active_users_today {today['active_users'][0]}",
            "# TYPE accord_partners_active gauge",
            f"accord_partners_active {active_partners}",
            "# TYPE accord_partner_messages_today gauge",
        ]
        for t in today["partner_traffic"]:
            name = _label(t["server_name"])
            lines.append(f'accord_partner_messages_today{{partner="{name}",direction="sent"}} {t["sent"]}')
            lines.append(f'accord_partner_messages_today{{partner="{name}",direction="received"}} {t["received"]}')
        lines.append("# TYPE accord_federation_response_seconds_avg_today gauge")
        for r in today["response_times"]:
            if r["avg_ms"] is not None:
                lines.append(
                    f'accord_federation_response_seconds_avg_today{{destination="{_label(r["server_name"])}"}}'
                    f' {r["avg_ms"] / 1000:.4f}'
                )
        lines.append("# TYPE accord_federation_destination_failures gauge")
        lines.append("# TYPE accord_federation_destination_queue gauge")
        for record in await self.destinations():
            name = _label(record.destination)
            lines.append(f'accord_federation_destination_failures{{destination="{name}"}} {record.failures}')
            lines.append(f'accord_federation_destination_queue{{destination="{name}"}} {depths.get(record.destination, 0)}')
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
