"""To-device messages (`PUT /sendToDevice/{eventType}/{txnId}`).

A message goes to one device of a user, or to all of them (`"*"`), and waits in
that device's inbox, with a position on the to-device stream, until /sync hands
it out; it stays until the device's next /sync with a token past it (its
acknowledgement), so a client that lost a response and repeats its old token
gets it again. A sender device's transaction ID is remembered, so a
retransmitted request delivers nothing twice.

Bounds: the request body is capped like every body; each recipient device keeps
at most `max_pending` messages, and a device that never syncs loses its oldest
ones first (a client that comes back after that long has to re-establish its
sessions anyway, and refusing new messages would let one abandoned device stop
everyone from reaching the user's live ones). Sending is rate limited per
sender (`rate_limits.actions.to_device`, in the route).

Other servers' users get their messages in `m.direct_to_device` EDUs, one per
recipient user, written to the federation outbox (the sender's per-destination
queue) in the very transaction that records the sender's transaction ID: a
message acknowledged to its client survives a crash, a retransmitted request
queues nothing twice, and the sender delivers each EDU once (its `message_id`
lets the receiver drop a repeat). Nothing is queued for a server the federation
policy refuses. Received EDUs (`receive_remote`) are taken only for users of the
sending server, delivered to local devices' inboxes once per (sender,
message_id), and bounded (`MAX_EDU_DEVICES` devices an EDU).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from homeserver.errors import MatrixError
from homeserver.federation.edus import sent_by
from homeserver.identifiers import parse_user_id
from homeserver.rooms.stream import StreamTracker

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.records.devices import DeviceRecord
    from homeserver.records.to_device import ToDeviceMessage
    from homeserver.storage.to_device import ToDeviceStore

logger = logging.getLogger(__name__)

MAX_PENDING_PER_DEVICE = 10_000
# Devices one received m.direct_to_device may address ("*" counts each device).
MAX_EDU_DEVICES = 1000
MAX_NAME_LENGTH = 255
# How long a transaction ID (a client's txnId, a remote sender's message_id) is
# remembered: a client retransmits within seconds or minutes, but a peer's
# federation sender may retry a transaction for days through an outage, so the
# window is a week; older rows are deleted at most once an hour, by the write
# that notices the hour has passed.
TXN_RETENTION_MS = 7 * 24 * 3600 * 1000
TXN_PRUNE_INTERVAL_MS = 3600 * 1000
EDU_TYPE = "m.direct_to_device"

# Told the users who got messages, after the commit (the sync stream wakes them).
Listener = Callable[[Collection[str]], None]


class Devices(Protocol):
    async def list_devices(self, user_id: str) -> list[DeviceRecord]: ...


class Outbox(Protocol):
    """The federation sender (homeserver/federation/sender.py): wakes the
    destinations whose outbox rows were just committed."""

    enabled: bool

    def wake(self, destinations: Iterable[str]) -> None: ...


class ToDeviceService:
    def __init__(
        self,
        *,
        store: ToDeviceStore,
        devices: Devices,
        is_mine: Callable[[str], bool],
        clock: Clock,
        outbox: Outbox | None = None,
        allow_destination: Callable[[str, str], bool] = lambda _d, _w: True,
        max_pending: int = MAX_PENDING_PER_DEVICE,
    ) -> None:
        self.outbox = outbox  # None or disabled: other servers' users get nothing
        self.allow_destination = allow_destination  # the federation policy
        self.store = store
        self.devices = devices
        self.is_mine = is_mine
        self.clock = clock
        self.max_pending = max_pending
        self.listeners: list[Listener] = []
        self._stream: StreamTracker | None = None
        self._stream_lock = asyncio.Lock()
        # The position of each user's latest message since the stream was loaded, so
        # a sync of a user nothing was sent to reads no inbox (`may_have`).
        self._latest: dict[str, int] = {}
        self._loaded_at = 0
        self._next_prune_ms = 0

    async def _tracker(self) -> StreamTracker:
        # Loaded on first use: the database is only open once the server has started.
        if self._stream is None:
            async with self._stream_lock:
                if self._stream is None:
                    self._stream = StreamTracker(await self.store.max_position())
                    self._loaded_at = self._stream.current
        return self._stream

    async def current_position(self) -> int:
        return (await self._tracker()).current

    def position_now(self) -> int | None:
        """`current_position`, once loaded (None before: the caller awaits that)."""
        return self._stream.current if self._stream is not None else None

    async def send(
        self, sender: str, sender_device: str, txn_id: str, event_type: str, messages: dict[str, Any]
    ) -> None:
        """Deliver `messages` ({user_id: {device_id or "*": content}}) once per
        (sender, sender device, transaction ID)."""
        rows: list[tuple[str, str, str]] = []
        remote: dict[str, dict[str, Any]] = {}
        for user_id, by_device in messages.items():
            if not isinstance(by_device, dict):
                raise MatrixError(400, "M_BAD_JSON", "messages must map user IDs to objects of devices")
            if not all(isinstance(c, dict) for c in by_device.values()):
                raise MatrixError(400, "M_BAD_JSON", "each message's content must be an object")
            if not self.is_mine(user_id):
                if parse_user_id(user_id) is not None and by_device:
                    remote[user_id] = by_device
                continue
            rows.extend(await self._targets(user_id, by_device))
        edus = self._remote_edus(sender, sender_device, txn_id, event_type, remote)
        await self._store(sender, sender_device, txn_id, event_type, rows, edus)

    async def _targets(self, user_id: str, by_device: dict[str, Any]) -> list[tuple[str, str, str]]:
        """(user, device, content JSON) for the user's devices a message names ("*": all)."""
        targets: dict[str, str] = {}
        devices = [d.device_id for d in await self.devices.list_devices(user_id)] if by_device else []
        for device_id, content in by_device.items():
            data = orjson.dumps(content).decode()
            for target in devices if device_id == "*" else [device_id]:
                targets[target] = data
        known = set(devices)
        return [(user_id, d, c) for d, c in targets.items() if d in known]

    def _remote_edus(
        self, sender: str, sender_device: str, txn_id: str, event_type: str, remote: dict[str, dict[str, Any]]
    ) -> list[tuple[str, str]]:
        """(destination, EDU JSON): one m.direct_to_device per recipient user, for
        servers the policy lets us reach; a message_id derived from the request,
        so the receiver can tell a repeat."""
        if not remote:
            return []
        if self.outbox is None or not self.outbox.enabled:
            logger.info("to-device %s from %s: federation is off; %d remote user(s) get nothing",
                        event_type, sender, len(remote))
            return []
        edus: list[tuple[str, str]] = []
        for user_id, by_device in remote.items():
            destination = user_id.partition(":")[2]
            if not self.allow_destination(destination, EDU_TYPE):
                continue
            digest = hashlib.sha256(
                orjson.dumps([sender, sender_device, txn_id, user_id])
            ).hexdigest()[:32]
            content = {
                "sender": sender, "type": event_type, "message_id": digest,
                "messages": {user_id: by_device},
            }
            edus.append((destination, orjson.dumps({"edu_type": EDU_TYPE, "content": content}).decode()))
        return edus

    async def _store(
        self, sender: str, sender_device: str, txn_id: str, event_type: str,
        rows: list[tuple[str, str, str]], edus: list[tuple[str, str]],
    ) -> None:
        tracker = await self._tracker()
        positions = [tracker.allocate() for _ in rows]
        now = self.clock.time_ms()
        prune_before = None
        if now >= self._next_prune_ms:
            self._next_prune_ms = now + TXN_PRUNE_INTERVAL_MS
            prune_before = now - TXN_RETENTION_MS
        try:
            stored = await self.store.deliver(
                sender=sender, sender_device=sender_device, txn_id=txn_id, now_ms=now,
                event_type=event_type, messages=rows, positions=positions, max_pending=self.max_pending,
                edus=edus, prune_txns_before=prune_before,
            )
        finally:
            for pos in positions:
                tracker.finish(pos)
        if stored and edus and self.outbox is not None:
            self.outbox.wake({d for d, _ in edus})
        if stored and rows:
            recipients = {u for u, _, _ in rows}
            for (user_id, _, _), pos in zip(rows, positions, strict=True):
                self._latest[user_id] = max(self._latest.get(user_id, 0), pos)
            for listener in self.listeners:
                listener(recipients)

    async def receive_remote(self, origin: str, content: dict[str, Any]) -> None:
        """An m.direct_to_device EDU from `origin`: delivered to our users' devices
        once per (sender, message_id); forged (the sender is not a user of
        `origin`), malformed or oversized ones are dropped whole."""
        sender = content.get("sender")
        event_type = content.get("type")
        message_id = content.get("message_id")
        messages = content.get("messages")
        if (
            not sent_by(sender, origin) or parse_user_id(str(sender)) is None
            or not isinstance(event_type, str) or not 0 < len(event_type) <= MAX_NAME_LENGTH
            or not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_NAME_LENGTH
            or "\x00" in message_id or not isinstance(messages, dict)
        ):
            logger.info("dropping a malformed or forged m.direct_to_device from %s", origin)
            return
        assert isinstance(sender, str)
        if sum(len(v) if isinstance(v, dict) else 1 for v in messages.values()) > MAX_EDU_DEVICES:
            logger.info("dropping an m.direct_to_device from %s for more than %d devices", origin, MAX_EDU_DEVICES)
            return
        rows: list[tuple[str, str, str]] = []
        for user_id, by_device in messages.items():
            if not isinstance(by_device, dict) or not all(isinstance(c, dict) for c in by_device.values()):
                logger.info("dropping a malformed m.direct_to_device from %s", origin)
                return
            if not isinstance(user_id, str) or not self.is_mine(user_id):
                continue  # only our users' messages are ours to deliver
            rows.extend(await self._targets(user_id, by_device))
            if len(rows) > MAX_EDU_DEVICES:
                logger.info("dropping an m.direct_to_device from %s for more than %d devices", origin, MAX_EDU_DEVICES)
                return
        # The sender's remote transactions are keyed by message_id, under a device ID
        # no local device can have, so they never meet a local sender's.
        await self._store(sender, "", "fed:" + message_id, event_type, rows, [])

    def may_have(self, user_id: str, since: int) -> bool:
        """Whether a device of the user may have messages after `since` (False only
        when certain: nothing was sent to the user after it since startup)."""
        return self._stream is None or since < self._loaded_at or self._latest.get(user_id, 0) > since

    async def devices_deleted(self, user_id: str) -> None:
        """The user's deleted devices' inboxes go (told after the deletion commits)."""
        await self.store.drop_deleted_devices(user_id)

    async def messages_for(self, user_id: str, device_id: str, since: int, upto: int) -> list[dict[str, Any]]:
        """The device's messages in (since, upto], as /sync's to_device events; a
        token at `since` acknowledges (deletes) those up to it."""
        return (await self.batch_for(user_id, device_id, since, upto))[0]

    async def batch_for(
        self, user_id: str, device_id: str, since: int, upto: int, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """At most `limit` of the device's messages in (since, upto] (all without one),
        and the position read up to: the last one's when the limit cut the batch."""
        if since > 0:
            await self.store.acknowledge(user_id, device_id, since)
        found: list[ToDeviceMessage] = await self.store.pending(user_id, device_id, since, upto, limit)
        reached = found[-1].stream_id if limit is not None and len(found) >= limit else upto
        return [{"sender": m.sender, "type": m.type, "content": m.content} for m in found], reached
