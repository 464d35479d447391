"""The presence stream: the `presence` section, the m.presence events of the user
and of the users sharing a room with them whose presence changed since the token,
plus, on an incremental sync, the presence of the members of rooms joined since
the token (unchanged, but never sent to this user). A change wakes the users who
see it (those sharing a room with its user)."""

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

    def position_now(self) -> int | None:
        return self.presence.position_now()

    def moved(self, req: SyncRequest) -> bool:
        # A newly joined room's members are news even if nobody's presence moved. A
        # token ahead of the stream was handed out before a restart (positions of
        # remote users' changes are not stored): `presence_since` answers it like an
        # initial sync, rather than the stream saying nothing until it passes the
        # token and then skipping what came before.
        since = req.since_pos(self.key)
        return req.advanced(self.key) or req.full_state or since > req.now.presence or bool(req.newly_joined)

    async def top_level(self, req: SyncRequest) -> dict[str, Any]:
        # full_state answers like an initial sync, here as for room state.
        events = await self.presence.presence_since(req.user_id, 0 if req.full_state else req.since_pos(self.key))
        joined = req.newly_joined  # (only ever filled on an incremental, not full_state, sync)
        if joined:
            sent = {e["sender"] for e in events}
            events += [e for e in await self.presence.presence_in_rooms(req.user_id, joined) if e["sender"] not in sent]
        events = [e for e in events if req.filter.presence.matches(e)]
        return {"presence": {"events": events}} if events else {}

