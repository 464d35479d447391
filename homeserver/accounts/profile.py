"""Profiles of local users: reading them, changing a field, and who may look them up.

A change to a field that joined members carry in their m.room.member events
(display name, avatar) is re-sent to every room the user is in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from homeserver.storage.rooms import RoomStore
    from homeserver.storage.users import UserStore

# Fields joined members carry in their m.room.member events: changing one re-sends those.
IN_MEMBER_EVENTS = ("displayname", "avatar_url")


class ProfilePropagation(Protocol):
    async def propagate_profile(self, user_id: str) -> None:
        """Re-send the user's member events in their rooms with the profile they have now."""


class ProfileService:
    def __init__(
        self, users: UserStore, rooms: RoomStore, propagation: ProfilePropagation
    ) -> None:
        self.users = users
        self.rooms = rooms
        self.propagation = propagation

    async def get(self, user_id: str) -> dict[str, Any] | None:
        """The whole profile of a local user; None if there is no such user, or they
        are deactivated."""
        user = await self.users.get_user(user_id)
        if user is None or user.deactivated:
            return None
        return await self.users.get_full_profile(user_id)

    async def shares_room(self, user_id: str, target: str) -> bool:
        """Whether `target` is joined to or invited in a room `user_id` is in."""
        mine = {room_id for room_id, _ in await self.rooms.rooms_for_user(user_id)}
        theirs = await self.rooms.rooms_for_user(target, ("join", "invite"))
        return any(room_id in mine for room_id, _ in theirs)

    async def set_field(self, user_id: str, key: str, value: Any, *, propagate: bool = True) -> None:
        """Set one field (the caller has checked the value); `propagate` re-sends the
        user's member events when the field is one they carry."""
        await self.users.set_profile_field(user_id, key, value)
        if propagate and key in IN_MEMBER_EVENTS:
            await self.propagation.propagate_profile(user_id)

    async def delete_field(self, user_id: str, key: str, *, propagate: bool = True) -> None:
        await self.users.set_profile_field(user_id, key, None, delete=True)
        if propagate and key in IN_MEMBER_EVENTS:
            await self.propagation.propagate_profile(user_id)
