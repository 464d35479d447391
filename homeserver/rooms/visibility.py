"""History visibility: which events a user may see, decided by the room state
at each event (the spec's "Server behaviour" for m.room.history_visibility).

Every read path (messages, context, single events, state, members, sync)
filters through `VisibilityService.filter`, so no path can leak history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.storage.events import StoredEvent
from homeserver.storage.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.server import HomeServer

_KNOWN = ("world_readable", "shared", "invited", "joined")


class VisibilityService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def _visibility_and_membership(
        self, snapshot: int | None, user_id: str
    ) -> tuple[str, str | None]:
        rooms = self.hs.room_service
        ids = await rooms.state_ids_at_snapshot(snapshot)
        evs = await rooms.state_events(
            ids, [("m.room.history_visibility", ""), ("m.room.member", user_id)]
        )
        hv = evs.get(("m.room.history_visibility", ""))
        visibility = hv.event["content"].get("history_visibility") if hv else None
        if visibility not in _KNOWN:
            visibility = "shared"
        member = evs.get(("m.room.member", user_id))
        membership = member.event["content"].get("membership") if member else None
        return str(visibility), membership

    @staticmethod
    def _allowed(visibility: str, membership: str | None, currently_joined: bool) -> bool:
        if visibility == "world_readable" or membership == "join":
            return True
        if visibility == "shared" and currently_joined:
            return True
        return visibility == "invited" and membership == "invite"

    async def filter(self, user_id: str, room: RoomRecord, events: list[StoredEvent]) -> list[StoredEvent]:
        current = await self.hs.room_store.membership_of(room.room_nid, user_id)
        currently_joined = current is not None and current[0] == "join"
        cache: dict[int | None, tuple[str, str | None]] = {}

        async def at(snapshot: int | None) -> tuple[str, str | None]:
            if snapshot not in cache:
                cache[snapshot] = await self._visibility_and_membership(snapshot, user_id)
            return cache[snapshot]

        out = []
        for ev in events:
            visibility, membership = await at(ev.state_before)
            allowed = self._allowed(visibility, membership, currently_joined)
            special = ev.type == "m.room.history_visibility" or (
                ev.type == "m.room.member" and ev.state_key == user_id
            )
            if not allowed and special:
                # Visible if the state before *or* after the event would allow it.
                visibility, membership = await at(ev.state_after)
                allowed = self._allowed(visibility, membership, currently_joined)
            if allowed:
                out.append(ev)
        return out

    async def can_see_current_state(self, user_id: str, room: RoomRecord) -> bool:
        """Whether the user may read the room's current state (joined, or world readable)."""
        current = await self.hs.room_store.membership_of(room.room_nid, user_id)
        if current is not None and current[0] == "join":
            return True
        head_state = await self.hs.room_service.current_state_event(room, ("m.room.history_visibility", ""))
        return bool(head_state and head_state.event["content"].get("history_visibility") == "world_readable")
