"""Room summaries (`GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`, Matrix
v1.15): what a client may show of a room before joining it.

The summary is the space hierarchy's (homeserver/rooms/hierarchy.py): ours when
this server is in the room, else the federation hierarchy answer of a `via` server
or of a server a join would ask (the inviter's, the room ID's).
Who may see it: a user joined to, invited to or knocking on the room; anyone
when the room is public, knockable or world-readable (then also without an
access token, as the spec allows); a user joined to a room a restricted room's
join rules name. Anyone else is told the room does not exist (404 M_NOT_FOUND),
so a private room's existence is not revealed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from homeserver.errors import invalid_param, not_found
from homeserver.rooms.hierarchy import OPEN_JOIN_RULES, RESTRICTED_JOIN_RULES

if TYPE_CHECKING:
    from homeserver.rooms.aliases import AliasService
    from homeserver.rooms.hierarchy import Summary
    from homeserver.rooms.service import RoomService

MAX_VIA = 20


class SummarySource(Protocol):
    async def room_summary(self, room_id: str, via: tuple[str, ...]) -> Summary | None: ...


class ServersToAsk(Protocol):
    async def servers_to_ask(self, room_id: str, user_id: str, via: list[str]) -> list[str]: ...


class RoomSummaries:
    def __init__(
        self, *, room_service: RoomService, aliases: AliasService, source: SummarySource, servers: ServersToAsk
    ) -> None:
        self.room_service = room_service
        self.aliases = aliases
        self.source = source
        self.servers = servers

    async def _membership(self, room_id: str, user_id: str) -> str | None:
        room = await self.room_service.find_room(room_id)
        return await self.room_service.membership_of(room, user_id) if room is not None else None

    async def summary(self, user_id: str | None, room_id_or_alias: str, via: list[str]) -> dict[str, Any]:
        """The room's summary for `user_id` (None: an unauthenticated request)."""
        if room_id_or_alias.startswith("#"):
            resolved = await self.aliases.resolve_alias(room_id_or_alias)
            room_id = resolved["room_id"]
            via = [*via, *resolved.get("servers", [])]
        elif room_id_or_alias.startswith("!"):
            room_id = room_id_or_alias
        else:
            raise invalid_param(f"{room_id_or_alias!r} is neither a room ID nor a room alias")
        if user_id is not None:
            # Besides the client's: the server that invited the user, those last seen in
            # the room, the room ID's (what a join would ask).
            via = await self.servers.servers_to_ask(room_id, user_id, via)
        elif ":" in room_id:
            via = [*via, room_id.partition(":")[2]]
        summary = await self.source.room_summary(room_id, tuple(dict.fromkeys(via))[:MAX_VIA])
        if summary is None:
            raise not_found("Room not found")
        membership = await self._membership(room_id, user_id) if user_id is not None else None
        if not await self._may_preview(summary, user_id, membership):
            raise not_found("Room not found")
        entry = dict(summary.entry)
        if user_id is not None:
            entry["membership"] = membership or "leave"
        return entry

    async def _may_preview(self, summary: Summary, user_id: str | None, membership: str | None) -> bool:
        if summary.join_rule in OPEN_JOIN_RULES or summary.entry.get("world_readable") is True:
            return True
        if user_id is None:
            return False
        if membership in ("join", "invite", "knock"):
            return True
        if summary.join_rule in RESTRICTED_JOIN_RULES:
            for allowed in summary.allowed_room_ids:
                if await self._membership(allowed, user_id) == "join":
                    return True
        return False
