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

Only local recipients are served for now: messages for users of other servers
are dropped with a log line (federation's m.direct_to_device EDU is to come).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from homeserver.errors import MatrixError
from homeserver.rooms.stream import StreamTracker

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.records.devices import DeviceRecord
    from homeserver.records.to_device import ToDeviceMessage
    from homeserver.storage.to_device import ToDeviceStore

logger = logging.getLogger(__name__)

MAX_PENDING_PER_DEVICE = 10_000

# Told the users who got messages, after the commit (the sync stream wakes them).
Listener = Callable[[Collection[str]], None]


class Devices(Protocol):
    async def list_devices(self, user_id: str) -> list[DeviceRecord]: ...


class ToDeviceService:
    def __init__(
        self,
        *,
        store: ToDeviceStore,
        devices: Devices,
        is_mine: Callable[[str], bool],
        clock: Clock,
        max_pending: int = MAX_PENDING_PER_DEVICE,
    ) -> None:
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

    async def send(
        self, sender: str, sender_device: str, txn_id: str, event_type: str, messages: dict[str, Any]
    ) -> None:
        """Deliver `messages` ({user_id: {device_id or "*": content}}) once per
        (sender, sender device, transaction ID)."""
        rows: list[tuple[str, str, str]] = []
        remote = 0
        for user_id, by_device in messages.items():
            if not isinstance(by_device, dict):
                raise MatrixError(400, "M_BAD_JSON", "messages must map user IDs to objects of devices")
            if not self.is_mine(user_id):
                remote += len(by_device)
                continue
            targets: dict[str, str] = {}
            for device_id, content in by_device.items():
                if not isinstance(content, dict):
                    raise MatrixError(400, "M_BAD_JSON", "each message's content must be an object")
                data = orjson.dumps(content).decode()
                if device_id == "*":
                    for device in await self.devices.list_devices(user_id):
                        targets[device.device_id] = data
                else:
                    targets[device_id] = data
            known = {d.device_id for d in await self.devices.list_devices(user_id)} if targets else set()
            rows.extend((user_id, d, c) for d, c in targets.items() if d in known)
        if remote:
            logger.info(
                "to-device %s from %s: %d message(s) for other servers' users dropped (not federated yet)",
                event_type, sender, remote,
            )
        tracker = await self._tracker()
        positions = [tracker.allocate() for _ in rows]
        try:
            stored = await self.store.deliver(
                sender=sender, sender_device=sender_device, txn_id=txn_id, now_ms=self.clock.time_ms(),
                event_type=event_type, messages=rows, positions=positions, max_pending=self.max_pending,
            )
        finally:
            for pos in positions:
                tracker.finish(pos)
        if stored and rows:
            recipients = {u for u, _, _ in rows}
            for (user_id, _, _), pos in zip(rows, positions, strict=True):
                self._latest[user_id] = max(self._latest.get(user_id, 0), pos)
            for listener in self.listeners:
                listener(recipients)

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
