"""The presence stream: the `presence` section, the m.presence events of the user
and of the users sharing a room with them whose presence changed since the token. A change wakes the users who see it
(those sharing a room with its user)."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from homeserver.sync.streams.base import StreamProvider, SyncRequest

if TYPE_CHECKING:
    from homeserver.presence import PresenceService
    from homeserver.sync.notifier import Notifier


class PresenceStream(StreamProvider):
    key = "presence"

    def __init__(self, presence: PresenceService, notifier: Notifier) -> None:
        self.presence = presence
        self.notifier = notifier
        presence.on_change.append(self._changed)

    async def _changed(self, user_ids: Collection[str]) -> None:
        concerned: set[str] = set()
        for user_id in user_ids:
            concerned |= await self.presence.audience(user_id)
        self.notifier.notify_users(concerned)

    async def current_position(self) -> int:
        return await self.presence.current_position()

    async def top_level(self, req: SyncRequest) -> dict[str, Any]:
        events = await self.presence.presence_since(req.user_id, req.since_pos(self.key))
        events = [e for e in events if req.filter.presence.matches(e)]
        return {"presence": {"events": events}} if events else {}
