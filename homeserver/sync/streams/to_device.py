"""The to-device stream: the `to_device` section, the messages waiting for the
syncing device. A token past a message acknowledges it (it is deleted); a
message wakes its recipient's requests."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from homeserver.sync.streams.base import StreamProvider, SyncRequest

if TYPE_CHECKING:
    from homeserver.e2ee.to_device import ToDeviceService
    from homeserver.sync.notifier import Notifier


class ToDeviceStream(StreamProvider):
    key = "to_device"

    def __init__(self, to_device: ToDeviceService, notifier: Notifier) -> None:
        self.to_device = to_device
        self.notifier = notifier
        to_device.listeners.append(self._delivered)

    def _delivered(self, user_ids: Collection[str]) -> None:
        self.notifier.notify_users(user_ids)

    async def current_position(self) -> int:
        return await self.to_device.current_position()

    def position_now(self) -> int | None:
        return self.to_device.position_now()

    def moved(self, req: SyncRequest) -> bool:
        # The stream moves with every user's messages; a user sent nothing reads nothing.
        return req.since is None or (req.advanced(self.key) and self.to_device.may_have(req.user_id, req.since_pos(self.key)))

    async def top_level(self, req: SyncRequest) -> dict[str, Any]:
        events = await self.to_device.messages_for(
            req.user_id, req.requester.device_id, req.since_pos(self.key), req.now.to_device
        )
        return {"to_device": {"events": events}} if events else {}

    async def batch(self, req: SyncRequest, limit: int) -> tuple[list[dict[str, Any]], int]:
        """At most `limit` messages after the request's position and the position read
        up to (sliding sync's to-device extension pages with its own `since`)."""
        return await self.to_device.batch_for(
            req.user_id, req.requester.device_id, req.since_pos(self.key), req.now.to_device, limit
        )
