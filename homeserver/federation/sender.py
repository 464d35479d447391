"""The outbound federation sender: local events and EDUs to the other servers of a room.

Flow: a local event's outbox rows are written by the very transaction that
persists the event (`queue_event`, called by RoomService and ReceivedEvents
inside their write), with the destinations worked out from the membership
after that event; once it commits, the sender only needs a wakeup (`wake`).
So an event acknowledged to its client can never be lost to a crash between
its commit and its queueing, and a server that joins later is not pushed
earlier history as if it were live.

EDUs come from the handler registered for each EDU type
(homeserver/federation/edus.py), which watches its service and submits the
changes other servers should hear of (synchronously, so the hot paths are never
slowed). One intake worker takes them in order, asks each for its EDUs and
destinations and queues them: durable ones (read receipts) in the database
(``federation_outbox``, so they survive a restart), coalesced ones (typing,
presence) in memory only (they are worthless after a restart and change too
often to be worth a write). Each destination then has at most one task, which sends one transaction at a time
(``PUT /_matrix/federation/v1/send/{txnId}``) with at most 50 PDUs and 100 EDUs,
in queue order, and deletes what was delivered.

Failures: 401 (our key not yet fetchable), 429, 5xx and unreachable peers are retried with the same transaction
(same ID, same content, as the spec's "wait and retry for a 200 OK" asks) after
an exponential backoff with jitter, reset by a success or by any sign that the
peer is back (an inbound request from it: `peer_seen`). Any other 4xx means the
peer will never take this transaction: it is dropped (logged) so one bad item
cannot wedge the destination forever.

Only events created here (sender on our server) in rooms with ``m.federate``
true are sent; with ``federation.enabled: false`` the sender does nothing.
Nothing is queued for a server the federation policy refuses (``partners``
mode), and a revoked partner's queue is dropped (``drop_destination``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from federation.client import (
    BadResponseError,
    DestinationRefusedError,
    FederationClient,
    FederationError,
    RemoteError,
    quote_path_segment,
)
from federation.events.hashing import pdu_json
from federation.events.identifiers import domain_of
from federation.events.json_bounds import MAX_EVENT_DEPTH, JSONBoundsError, check_depth
from homeserver.clock import Clock
from homeserver.federation.edus import EduRegistry, EphemeralKey, PendingEdus
from homeserver.identifiers import LocalServer
from homeserver.records.federation_outbox import EDU, PDU, OutboxBatch, OutboxItem
from homeserver.records.rooms import RoomRecord
from homeserver.storage.database import Txn
from homeserver.storage.events import EventStore
from homeserver.storage.federation_outbox import FederationOutboxStore

logger = logging.getLogger(__name__)

SEND_PATH = "/_matrix/federation/v1/send/"
MAX_PDUS = 50  # per transaction, the spec's limit
MAX_EDUS = 100
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 3600.0
STOP_DRAIN_TIMEOUT_S = 10.0
# Memberships whose target may be on a server that is not (or no longer) joined.
_TARGET_TOO = ("invite", "leave", "ban")


class DeliveryObserver(Protocol):
    """Told of each transaction's outcome (the console's federation health and the
    partner response times, homeserver/analytics/service.py); must not block."""

    def delivered(self, destination: str, elapsed_ms: int) -> None: ...

    def failed(self, destination: str, error: str, retry_in_s: float) -> None: ...


@dataclass
class _Destination:
    name: str
    # Coalesced in-memory EDUs (typing, presence): a newer one for the same key
    # replaces the queued one, so a burst of changes costs one EDU.
    ephemeral: dict[EphemeralKey, dict[str, Any]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    dirty: bool = False  # something was queued since the task last looked
    failures: int = 0
    sending: bool = False
    # Set by `peer_seen` to cut a backoff wait short.
    retry_now: asyncio.Event = field(default_factory=asyncio.Event)


class FederationSender:
    def __init__(
        self,
        *,
        server_name: str,
        store: FederationOutboxStore,
        client: FederationClient | None,
        events: EventStore,
        edus: EduRegistry,
        allow_destination: Callable[[str, str], bool],
        clock: Clock,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        max_pdus: int = MAX_PDUS,
        max_edus: int = MAX_EDUS,
        rng: random.Random | None = None,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.client = client
        self.events = events
        self.allow_destination = allow_destination  # the federation policy
        self.clock = clock
        self.enabled = client is not None
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.max_pdus = max_pdus
        self.max_edus = max_edus
        self._rng = rng or random.Random()
        self.observer = observer
        self._local = LocalServer(self.server_name)
        self.edus = edus
        self._intake: asyncio.Queue[PendingEdus] = asyncio.Queue()
        self._watching = False
        self._worker: asyncio.Task[None] | None = None
        self._destinations: dict[str, _Destination] = {}
        self._epoch = 0
        self._txn_counter = itertools.count(1)
        self._running = False

    # --- lifecycle ---

    async def start(self) -> None:
        """Watch for EDUs and resume destinations with queued items. The EDU
        handlers start watching here, not in __init__, so nothing is queued by a
        sender that never starts."""
        if not self.enabled:
            return
        if self._running:
            return
        self._epoch = await self.store.next_epoch()
        # A sender stopped and started again keeps its watches (`_submit` checks _running).
        if not self._watching:
            self._watching = True
            for handler in self.edus:
                handler.watch(self._submit)
        self._running = True
        self._worker = asyncio.ensure_future(self._intake_loop())
        for name in await self.store.pending_destinations():
            self._wake(name)

    async def stop(self) -> None:
        """Queue to the database what listeners already handed over, then cancel
        every send and backoff wait; undelivered items stay queued for the next start."""
        if not self._running:
            return
        self._running = False
        try:
            await asyncio.wait_for(self._intake.join(), STOP_DRAIN_TIMEOUT_S)
        except TimeoutError:
            logger.warning("federation sender: intake not drained at shutdown")
        tasks = [d.task for d in self._destinations.values() if d.task is not None]
        if self._worker is not None:
            tasks.append(self._worker)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = None

    # --- what tests and operators may look at ---

    def destination_state(self, name: str) -> tuple[int, bool]:
        """(consecutive failures, transaction in flight) of a destination."""
        d = self._destinations.get(name)
        return (d.failures, d.sending) if d else (0, False)

    async def drain_intake(self) -> None:
        """Wait until every change handed over so far has been queued."""
        await self._intake.join()

    def idle(self, name: str) -> bool:
        """No task sending to `name` and no ephemeral EDU waiting for it. After
        `drain_intake`, with nothing in the outbox for `name` either, everything
        ever queued for it has been delivered or dropped."""
        d = self._destinations.get(name)
        return d is None or (d.task is None and not d.ephemeral)

    # --- local events: queued by the transaction that persists them ---

    def sends(self, room: RoomRecord, event: dict[str, Any]) -> bool:
        """Whether `event`, about to be persisted as a live event of `room`, is ours
        to send: federation on, the room federates, and its sender is one of ours."""
        return self.enabled and room.federate and self._local.is_mine(str(event.get("sender", "")))

    async def queue_event(
        self, txn: Txn, room: RoomRecord, event: dict[str, Any], joined: Iterable[str] | None = None
    ) -> list[str]:
        """Queue `event` for its destinations inside `txn`, the transaction that
        persists it, so the event and its outbox rows commit together. The
        destinations are the servers with a member joined once the event is
        applied: `joined` (user IDs or server names) when the caller knows them,
        else read from the room's memberships in `txn` (which must then already
        hold the event's own membership row), plus the target's server for an
        invite, leave, kick or ban (it must hear of it though it is not, or no
        longer, joined). Returns the destinations, to `wake` once committed.
        """
        if joined is None:
            rows = await txn.fetchall(
                "SELECT user_id FROM memberships WHERE room_nid = ? AND membership = 'join'", (room.room_nid,)
            )
            joined = (str(r[0]) for r in rows)
        dests: set[str] = set()
        for name in joined:
            try:
                dests.add(domain_of(name) if name.startswith("@") else name)
            except ValueError:
                continue
        if event.get("type") == "m.room.member" and isinstance(event.get("state_key"), str):
            if event.get("content", {}).get("membership") in _TARGET_TOO:
                try:
                    dests.add(domain_of(event["state_key"]))
                except ValueError:
                    pass
        dests.discard(self.server_name)
        # The federation policy: nothing is even queued for a server we do not federate with.
        allowed = sorted(d for d in dests if self.allow_destination(d, SEND_PATH))
        await FederationOutboxStore.add_in_txn(
            txn, [OutboxItem(d, PDU, event_id=event["event_id"]) for d in allowed]
        )
        return allowed

    def wake(self, destinations: Iterable[str]) -> None:
        """Start sending what was just committed to the outbox for `destinations`."""
        if not self.enabled:
            return
        for name in destinations:
            self._wake(name)

    def peer_seen(self, server_name: str) -> None:
        """`server_name` is up (it just sent us an authenticated request): forget its
        backoff and retry what is queued for it now, rather than at the end of a
        wait that grew while it was down. Cheap: called on every inbound request."""
        d = self._destinations.get(server_name)
        if d is None or d.failures == 0:
            return
        d.failures = 0
        d.retry_now.set()
        self._wake(server_name)

    # --- EDUs, submitted synchronously on the hot paths ---

    def _submit(self, pending: PendingEdus) -> None:
        if self._running:
            self._intake.put_nowait(pending)

    # --- intake: destinations, then the queues ---

    async def _intake_loop(self) -> None:
        """One worker, so EDUs are queued in the order they were submitted."""
        while True:
            batch = [await self._intake.get()]
            while not self._intake.empty():
                batch.append(self._intake.get_nowait())
            try:
                await self._queue(batch)
            except Exception:
                logger.exception("federation sender: could not queue %d changes", len(batch))
            finally:
                for _ in batch:
                    self._intake.task_done()

    async def _queue(self, batch: list[PendingEdus]) -> None:
        rows: list[OutboxItem] = []
        ephemeral: list[tuple[str, EphemeralKey, dict[str, Any]]] = []
        for pending in batch:
            for out in await pending():
                edu = out.body()
                if out.coalesce_key is None:
                    edu_json = orjson.dumps(edu).decode()
                    rows.extend(OutboxItem(dest, EDU, edu_json=edu_json) for dest in out.destinations)
                else:
                    ephemeral.extend((dest, out.coalesce_key, edu) for dest in out.destinations)
        # The federation policy: nothing is even queued for a server we do not federate with.
        allowed = {
            dest: self.allow_destination(dest, SEND_PATH)
            for dest in {r.destination for r in rows} | {e[0] for e in ephemeral}
        }
        rows = [r for r in rows if allowed[r.destination]]
        ephemeral = [e for e in ephemeral if allowed[e[0]]]
        await self.store.add(rows)
        for dest, key, edu in ephemeral:
            self._dest(dest).ephemeral[key] = edu
        for dest in {r.destination for r in rows} | {e[0] for e in ephemeral}:
            self._wake(dest)

    # --- per destination: one transaction in flight at a time ---

    def _dest(self, name: str) -> _Destination:
        d = self._destinations.get(name)
        if d is None:
            d = self._destinations[name] = _Destination(name)
        return d

    def _wake(self, name: str) -> None:
        d = self._dest(name)
        d.dirty = True
        if d.task is None and self._running:
            d.task = asyncio.ensure_future(self._run(d))

    async def _run(self, d: _Destination) -> None:
        """Send transactions until the destination's queue is empty; the only task
        that sends to it."""
        try:
            while True:
                d.dirty = False
                try:
                    batch = await self.store.next_batch(d.name, self.max_pdus, self.max_edus)
                    room_left = self.max_edus - len(batch.edus)
                    ephemeral = list(itertools.islice(d.ephemeral.items(), max(0, room_left)))
                    if not batch.seqs and not ephemeral:
                        if d.dirty:
                            continue  # queued while we read: look again
                        return
                    await self._deliver(d, batch, ephemeral)
                except Exception:
                    # A storage failure or a bug: keep the queue and try again later
                    # rather than leave the destination without a task.
                    logger.exception("federation sender: sending to %s failed", d.name)
                    d.sending = False
                    await self._wait(d, self._backoff(d))
        finally:
            d.task = None
            d.sending = False

    async def _deliver(
        self, d: _Destination, batch: OutboxBatch, ephemeral: list[tuple[EphemeralKey, dict[str, Any]]]
    ) -> None:
        pdus: list[dict[str, Any]] = []
        for _, event_id in batch.pdus:
            stored = await self.events.get_event(event_id)
            if stored is None:
                logger.warning("federation sender: queued event %s is gone; not sending it", event_id)
                continue
            pdu = pdu_json(stored.event)
            if not _encodable(pdu):
                # Stored before the nesting bound existed: no peer could take it, and
                # retrying the transaction would hold back everything queued behind it.
                logger.warning("federation sender: event %s cannot be encoded; not sending it", event_id)
                continue
            pdus.append(pdu)
        edus = [orjson.loads(j) for _, j in batch.edus] + [edu for _, edu in ephemeral]
        body: dict[str, Any] = {
            "origin": self.server_name,
            "origin_server_ts": self.clock.time_ms(),
            "pdus": pdus,
        }
        if edus:
            body["edus"] = edus
        txn_id = f"{self._epoch}.{next(self._txn_counter)}"
        path = SEND_PATH + quote_path_segment(txn_id)
        client = self.client
        assert client is not None
        d.sending = True
        while True:
            started = self.clock.monotonic()
            try:
                response = await client.put_json(d.name, path, body)
            except RemoteError as e:
                # 401: the peer could not verify our signature, most likely because it
                # cannot fetch our key yet (we have just started, or it throttles key
                # fetches); a later try can succeed, so it is retried like a 5xx.
                if 400 <= e.status < 500 and e.status not in (401, 429):
                    logger.warning(
                        "federation sender: %s refused transaction %s (%d PDUs, %d EDUs) with %s;"
                        " dropping it", d.name, txn_id, len(pdus), len(edus), e,
                    )
                    break
                await self._retry_later(d, txn_id, e)
                continue
            except (TypeError, ValueError) as e:
                # The body cannot be encoded or signed (JSONEncodeError is a TypeError):
                # no retry can succeed, so drop it rather than stall the destination.
                logger.error("federation sender: transaction %s to %s cannot be sent: %s", txn_id, d.name, e)
                break
            except DestinationRefusedError:
                # Our policy no longer allows the destination (a revoked partner):
                # drop what was queued before, as a retry could never send it.
                logger.info("federation sender: %s is refused by policy; dropping %s", d.name, txn_id)
                break
            except BadResponseError as e:
                # 2xx: the peer took the transaction, it only answered oddly.
                logger.info("federation sender: %s accepted %s with a bad response: %s", d.name, txn_id, e)
                break
            except FederationError as e:
                await self._retry_later(d, txn_id, e)
                continue
            _log_pdu_errors(d.name, response)
            if self.observer is not None:
                self.observer.delivered(d.name, int((self.clock.monotonic() - started) * 1000))
            break
        d.sending = False
        d.failures = 0
        await self.store.remove(batch.seqs)
        for key, edu in ephemeral:
            if d.ephemeral.get(key) is edu:  # not replaced by a newer one meanwhile
                del d.ephemeral[key]

    async def _retry_later(self, d: _Destination, txn_id: str, error: Exception) -> None:
        delay = self._backoff(d)
        if self.observer is not None:
            self.observer.failed(d.name, str(error), delay)
        logger.info(
            "federation sender: transaction %s to %s failed (%s); retry %d in %.1fs",
            txn_id, d.name, error, d.failures, delay,
        )
        await self._wait(d, delay)

    async def _wait(self, d: _Destination, delay: float) -> None:
        """Sleep out a backoff, or less if `peer_seen` says the peer is back."""
        d.retry_now.clear()
        try:
            await asyncio.wait_for(d.retry_now.wait(), delay)
        except TimeoutError:
            pass

    async def drop_destination(self, name: str) -> None:
        """Stop sending to `name` at once and forget its queue (a revoked partner):
        the transaction in flight is cancelled, queued PDUs, EDUs and ephemeral
        EDUs are dropped. The caller has already made the policy refuse `name`,
        so nothing is queued for it again."""
        d = self._destinations.pop(name, None)
        if d is not None and d.task is not None:
            d.task.cancel()
            await asyncio.gather(d.task, return_exceptions=True)
        await self.store.remove_destination(name)

    def _backoff(self, d: _Destination) -> float:
        """The next wait: base doubling per consecutive failure up to the cap, less
        up to a quarter at random so destinations that failed together spread out."""
        d.failures += 1
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** min(d.failures - 1, 40))
        return delay * (0.75 + 0.25 * self._rng.random())


def _log_pdu_errors(destination: str, response: Any) -> None:
    """The peer's per-PDU results: errors are its verdict on our events, not a
    reason to resend them, so they are only logged."""
    results = response.get("pdus") if isinstance(response, dict) else None
    if not isinstance(results, dict):
        return
    errors: Iterable[tuple[str, Any]] = (
        (eid, r.get("error")) for eid, r in results.items() if isinstance(r, dict) and r.get("error")
    )
    for event_id, error in errors:
        logger.info("federation sender: %s rejected %s: %s", destination, event_id, error)


def _encodable(pdu: dict[str, Any]) -> bool:
    """Whether a PDU can travel: within the event nesting bound and encodable."""
    try:
        check_depth(pdu, MAX_EVENT_DEPTH)
        orjson.dumps(pdu)
    except (JSONBoundsError, orjson.JSONEncodeError):
        return False
    return True
