"""The presence stream: the `presence` section, the m.presence events of the user
and of the users sharing a room with them whose presence changed since the token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.sync.streams.base import StreamProvider, SyncRequest

if TYPE_CHECKING:
    from homeserver.presence import PresenceService


class PresenceStream(StreamProvider):
    key = "presence"

    def __init__(self, presence: PresenceService) -> None:
        self.presence = presence

    async def current_position(self) -> int:
        return await self.presence.current_position()

    async def top_level(self, req: SyncRequest) -> dict[str, Any]:
        events = await self.presence.presence_since(req.user_id, req.since_pos(self.key))
        events = [e for e in events if req.filter.presence.matches(e)]
        return {"presence": {"events": events}} if events else {}
