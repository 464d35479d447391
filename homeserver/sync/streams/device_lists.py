"""The device-list stream: the `device_lists` section of an incremental sync,
`changed` (users whose devices the syncer must refetch) and `left` (users with
whom the syncer no longer shares an encrypted room); see
homeserver/e2ee/device_lists.py. Sent on incremental syncs only: an initial sync
tells the client nothing it must refetch (it fetches what it needs)."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from homeserver.sync.streams.base import StreamProvider, SyncRequest

if TYPE_CHECKING:
    from homeserver.e2ee.device_lists import DeviceLists
    from homeserver.sync.notifier import Notifier


class DeviceListsStream(StreamProvider):
    key = "device_lists"

    def __init__(self, device_lists: DeviceLists, notifier: Notifier) -> None:
        self.device_lists = device_lists
        self.notifier = notifier
        device_lists.wake_listeners.append(self._changed)

    def _changed(self, user_ids: Collection[str]) -> None:
        self.notifier.notify_users(user_ids)

    async def current_position(self) -> int:
        return await self.device_lists.current_position()

    def position_now(self) -> int | None:
        return self.device_lists.position_now()

    def moved(self, req: SyncRequest) -> bool:
        return req.since is not None and req.advanced(self.key)

    async def top_level(self, req: SyncRequest) -> dict[str, Any]:
        changed, left = await self.device_lists.changes_for(req.user_id, req.since_pos(self.key), req.now.device_lists)
        if not changed and not left:
            return {}
        return {"device_lists": {"changed": changed, "left": left}}
