"""Room aliases: server-local names for rooms (the spec's /directory/room API and
m.room.canonical_alias checks).

An alias is changed only by people who run the room (power to send
m.room.canonical_alias) or the server (admins), because a name speaks for the
room to everyone on the server; the same right governs the published directory
(`homeserver.rooms.public_rooms`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from federation.events import (
    domain_of,
    get_required_power_level,
    get_room_version,
    get_user_power_level,
)
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.identifiers import LocalServer, is_valid_server_name
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.rooms.service import RoomService
    from homeserver.rooms.visibility import VisibilityService
    from homeserver.storage.rooms import RoomStore
    from homeserver.storage.users import UserStore

logger = logging.getLogger(__name__)

MAX_ALIAS_BYTES = 255
CANONICAL_ALIAS = ("m.room.canonical_alias", "")


def parse_alias(alias: str) -> tuple[str, str]:
    """(localpart, server name) of a room alias, or M_INVALID_PARAM for anything the
    appendix grammar forbids: '#', a localpart without ':' or NUL, a valid server name,
    at most 255 bytes in all."""
    if not isinstance(alias, str) or not alias.startswith("#"):
        raise invalid_param("Room alias invalid: must start with '#'")
    if len(alias.encode("utf-8", "surrogatepass")) > MAX_ALIAS_BYTES:
        raise invalid_param("Room alias invalid: longer than 255 bytes")
    localpart, sep, server = alias[1:].partition(":")
    if not sep or not localpart:
        raise invalid_param("Room alias invalid: expected #localpart:server")
    if "\x00" in localpart or any(0xD800 <= ord(c) <= 0xDFFF for c in localpart):
        raise invalid_param("Room alias invalid: forbidden character in localpart")
    if not is_valid_server_name(server):
        raise invalid_param("Room alias invalid: bad server name")
    return localpart, server


class DirectoryRights:
    """Who may speak for a room's names and its directory listing."""

    def __init__(self, users: UserStore, room_store: RoomStore, room_service: RoomService) -> None:
        self._users = users
        self._room_store = room_store
        self._room_service = room_service

    async def is_admin(self, user_id: str) -> bool:
        user = await self._users.get_user(user_id)
        return bool(user and user.admin)

    async def is_joined(self, room: RoomRecord, user_id: str) -> bool:
        m = await self._room_store.membership_of(room.room_nid, user_id)
        return m is not None and m[0] == "join"

    async def may_edit(self, room: RoomRecord, user_id: str) -> bool:
        """Whether a joined member may speak for the room's names and listing: the power
        to send m.room.canonical_alias, the state event that advertises those names."""
        if not await self.is_joined(room, user_id):
            return False
        state = await self._room_service.current_state_events(
            room, [("m.room.power_levels", ""), ("m.room.create", "")]
        )
        plain = {k: ev.event for k, ev in state.items()}
        rv = get_room_version(room.room_version)
        needed = get_required_power_level(plain, "m.room.canonical_alias", "")
        return get_user_power_level(user_id, plain, rv) >= needed


class AliasService:
    def __init__(
        self,
        *,
        local: LocalServer,
        rights: DirectoryRights,
        room_store: RoomStore,
        room_service: RoomService,
        visibility: VisibilityService,
        clock: Clock,
    ) -> None:
        self._local = local
        self._server_name = local.server_name
        self.rights = rights
        self._room_store = room_store
        self._room_service = room_service
        self._visibility = visibility
        self._clock = clock

    def check_new_alias_localpart(self, localpart: str) -> str:
        """The full alias for a room_alias_name, refusing what the grammar forbids."""
        if not localpart or any(c in localpart for c in ":# \t\n\r\x00"):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid room alias name")
        alias = f"#{localpart}:{self._server_name}"
        if len(alias.encode()) > MAX_ALIAS_BYTES:
            raise MatrixError(400, "M_INVALID_PARAM", "Room alias is too long")
        return alias

    async def check_canonical_alias(self, room: RoomRecord, content: dict[str, Any]) -> None:
        """The spec's m.room.canonical_alias rules: every local alias named must exist
        and point at this room (M_BAD_ALIAS otherwise)."""
        aliases: list[Any] = []
        if "alias" in content and content["alias"] is not None:
            aliases.append(content["alias"])
        alt = content.get("alt_aliases", [])
        if not isinstance(alt, list):
            raise MatrixError(400, "M_INVALID_PARAM", "'alt_aliases' must be a list")
        aliases.extend(alt)
        for alias in aliases:
            if not isinstance(alias, str) or not alias.startswith("#") or ":" not in alias:
                raise MatrixError(400, "M_INVALID_PARAM", f"Invalid alias {alias!r}")
            if not self._local.is_mine(alias):
                continue  # remote aliases cannot be checked without federation
            found = await self._room_store.get_alias(alias)
            if found is None or found[0] != room.room_id:
                raise MatrixError(400, "M_BAD_ALIAS", f"Alias {alias} does not point to this room")

    async def create_alias(self, user_id: str, alias: str, room_id: str) -> None:
        """Map a new local alias to a room the user is joined to (admins: any room)."""
        localpart, server = parse_alias(alias)
        if server != self._server_name:
            raise invalid_param("Room aliases can only be created on this server")
        self.check_new_alias_localpart(localpart)
        room = await self._room_store.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        if not await self.rights.is_joined(room, user_id) and not await self.rights.is_admin(user_id):
            raise forbidden("You must be joined to the room to give it an alias")
        if not await self._room_store.create_alias(alias, room_id, user_id, self._clock.time_ms()):
            raise MatrixError(409, "M_UNKNOWN", f"Room alias {alias} already exists.")

    async def resolve_alias(self, alias: str) -> dict[str, Any]:
        """The room an alias names and servers that can help a client join it."""
        _, server = parse_alias(alias)
        if server != self._server_name:
            # Resolving another server's alias needs a federation query, which this
            # server cannot make yet; to the client that alias is unknown here.
            raise not_found(f"Room alias {alias} not found (remote aliases cannot be resolved yet).")
        found = await self._room_store.get_alias(alias)
        if found is None:
            raise not_found(f"Room alias {alias} not found.")
        room_id = found[0]
        servers = [self._server_name]
        room = await self._room_store.get_room(room_id)
        if room is not None:
            others = {
                domain_of(member)
                for member, _, _ in await self._room_store.members(room.room_nid, "join")
            }
            servers.extend(sorted(others - {self._server_name}))
        return {"room_id": room_id, "servers": servers}

    async def delete_alias(self, user_id: str, alias: str) -> None:
        """Remove an alias: its creator, the room's moderators or a server admin may.
        The room's m.room.canonical_alias then stops naming it, when the user may send that."""
        _, server = parse_alias(alias)
        found = await self._room_store.get_alias(alias) if server == self._server_name else None
        if found is None:
            raise not_found(f"Room alias {alias} not found.")
        room_id, creator = found
        room = await self._room_store.get_room(room_id)
        allowed = (
            creator == user_id
            or (room is not None and await self.rights.may_edit(room, user_id))
            or await self.rights.is_admin(user_id)
        )
        if not allowed:
            raise forbidden("You may not delete this alias")
        await self._room_store.delete_alias(alias)
        if room is not None:
            await self._drop_from_canonical_alias(room, user_id, alias)

    async def _drop_from_canonical_alias(self, room: RoomRecord, user_id: str, alias: str) -> None:
        """Stop m.room.canonical_alias advertising a deleted alias. The spec recommends the
        deletion succeed even when the user may not update the event, so a refusal is
        logged, not raised."""
        current = await self._room_service.current_state_event(room, CANONICAL_ALIAS)
        if current is None:
            return
        content = dict(current.event["content"])
        alt = content.get("alt_aliases")
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            changed = True
        if not changed:
            return
        try:
            await self._room_service.create_event(room, user_id, "m.room.canonical_alias", content, state_key="")
        except MatrixError as e:
            logger.info("alias %s deleted but canonical alias of %s not updated: %s", alias, room.room_id, e.message)

    async def local_aliases(self, user_id: str, room_id: str) -> list[str]:
        """The room's local aliases, for members (or anyone when world readable) and admins."""
        room = await self._room_store.get_room(room_id)
        if room is None:
            if await self.rights.is_admin(user_id):
                raise not_found("Room not found")
            raise forbidden("You are not a member of the room.")
        if not await self._visibility.can_see_current_state(user_id, room) and not await self.rights.is_admin(user_id):
            raise forbidden("You are not a member of the room.")
        return await self._room_store.aliases_for_room(room_id)
