"""Membership changes: join, invite, leave, kick, ban, unban, knock.

Each is an m.room.member event authorised by the room's rules; this module adds
what the client-server API layers on top (profile in the content, aliases,
restricted-join authorisation by a local user).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from federation.events import get_room_version, get_user_power_level
from homeserver.errors import MatrixError, not_found
from homeserver.storage.events import StoredEvent
from homeserver.storage.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.server import HomeServer


class MembershipService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def member_content(self, user_id: str, membership: str) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": membership}
        if membership in ("join", "invite", "knock"):
            profile = await self.hs.users.get_full_profile(user_id)
            if profile:
                for key in ("displayname", "avatar_url"):
                    if isinstance(profile.get(key), str):
                        content[key] = profile[key]
        return content

    async def resolve_room(self, room_id_or_alias: str) -> RoomRecord:
        if room_id_or_alias.startswith("#"):
            found = await self.hs.room_store.get_alias(room_id_or_alias)
            if found is None:
                raise not_found("Room alias not found")
            room_id_or_alias = found[0]
        elif not room_id_or_alias.startswith("!"):
            raise MatrixError(400, "M_INVALID_PARAM", "Expected a room ID or room alias")
        room = await self.hs.room_store.get_room(room_id_or_alias)
        if room is None:
            raise not_found("Room not found")
        return room

    async def update(
        self,
        room: RoomRecord,
        sender: str,
        target: str,
        membership: str,
        *,
        reason: str | None = None,
        is_direct: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> StoredEvent:
        content = await self.member_content(target, membership)
        if membership == "invite" and is_direct:
            content["is_direct"] = True
        if reason is not None:
            content["reason"] = reason
        if extra:
            content.update(extra)
        if membership == "join":
            await self._authorise_restricted_join(room, target, content)
        return await self.hs.room_service.create_event(
            room, sender, "m.room.member", content, state_key=target
        )

    async def _authorise_restricted_join(self, room: RoomRecord, user_id: str, content: dict[str, Any]) -> None:
        """For restricted rooms, name a local user who may invite (the spec's
        join_authorised_via_users_server) when the joiner qualifies through an allow rule."""
        service = self.hs.room_service
        state = await service.current_state_events(
            room, [("m.room.join_rules", ""), ("m.room.member", user_id), ("m.room.power_levels", ""), ("m.room.create", "")]
        )
        rules = state.get(("m.room.join_rules", ""))
        join_rule = rules.event["content"].get("join_rule") if rules else None
        if join_rule not in ("restricted", "knock_restricted"):
            return
        current = state.get(("m.room.member", user_id))
        if current is not None and current.event["content"].get("membership") in ("join", "invite"):
            return
        allow = rules.event["content"].get("allow", []) if rules else []
        qualifies = False
        for entry in allow if isinstance(allow, list) else []:
            if isinstance(entry, dict) and entry.get("type") == "m.room_membership":
                other = await self.hs.room_store.get_room(str(entry.get("room_id")))
                if other is None:
                    continue
                m = await self.hs.room_store.membership_of(other.room_nid, user_id)
                if m is not None and m[0] == "join":
                    qualifies = True
                    break
        if not qualifies:
            return  # the auth rules will refuse the join with the right message
        rv = get_room_version(room.room_version)
        auth_state = {k: ev.event for k, ev in state.items()}
        levels = state.get(("m.room.power_levels", ""))
        invite_level = 0
        if levels is not None:
            invite_level = levels.event["content"].get("invite", 0)
        for member, _membership, _ in await self.hs.room_store.members(room.room_nid, "join"):
            if not member.endswith(":" + self.hs.config.server_name):
                continue
            if get_user_power_level(member, auth_state, rv) >= invite_level:
                content["join_authorised_via_users_server"] = member
                return
        raise MatrixError(403, "M_FORBIDDEN", "No local user can authorise this join")
