"""Server notices: a room in which the server itself tells its admins things.

The sender is a system account, ``@server:<our name>`` (no password, so nobody
can log in as it). Its notice room is internal (``m.federate: false``): what
the server tells its admins about partners must never leave the server. Every
current admin is invited before each notice, so an admin promoted later still
sees the next one. Notices are ``m.notice`` messages, which clients show as
coming from a bot and bots never answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from homeserver.errors import MatrixError
from homeserver.storage.partnerships import PartnershipStore

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.records.rooms import RoomRecord
    from homeserver.rooms.creation import RoomCreator
    from homeserver.rooms.membership import MembershipService
    from homeserver.rooms.service import RoomService
    from homeserver.storage.rooms import RoomStore
    from homeserver.storage.users import UserStore

logger = logging.getLogger(__name__)

SYSTEM_LOCALPART = "server"
SYSTEM_USER_TYPE = "support"  # Synapse's type for its server notices account
ROOM_SETTING = "notice_room_id"


class ServerNotices:
    def __init__(
        self, *, store: PartnershipStore, server_name: str, clock: Clock, users: UserStore,
        rooms: RoomStore, room_service: RoomService, membership: MembershipService,
        room_creator: RoomCreator,
    ) -> None:
        self.store = store
        self.clock = clock
        self.users = users
        self.rooms = rooms
        self.room_service = room_service
        self.membership = membership
        self.room_creator = room_creator
        self.system_user = f"@{SYSTEM_LOCALPART}:{server_name}"
        self._lock = asyncio.Lock()

    async def notify_admins(self, body: str) -> bool:
        """Post `body` to the admins' notice room; False when it could not be (no
        admin, or the system user ID is held by a real account). Never raises for
        a notice problem: the caller's change has happened and must not be undone
        because a message about it failed."""
        try:
            async with self._lock:
                admins = await self.store.local_admins()
                if not admins:
                    logger.warning("server notice not sent (no admin to tell): %s", body[:200])
                    return False
                if not await self._ensure_system_user():
                    return False
                room = await self._room()
                for admin in admins:
                    await self._invite(room, admin)
                await self.room_service.create_event(
                    room, self.system_user, "m.room.message", {"msgtype": "m.notice", "body": body}
                )
                return True
        except MatrixError as e:
            logger.error("server notice not sent: %s", e)
            return False

    async def room_id(self) -> str | None:
        return await self.store.get_setting(ROOM_SETTING)

    async def _ensure_system_user(self) -> bool:
        user = await self.users.get_user(self.system_user)
        if user is None:
            await self.users.create_user(
                self.system_user, None, self.clock.time_ms(), user_type=SYSTEM_USER_TYPE,
                displayname="Server notices",
            )
            user = await self.users.get_user(self.system_user)
        if user is None or user.password_hash is not None or user.user_type != SYSTEM_USER_TYPE:
            logger.error(
                "%s is a regular account, not the system user: server notices are disabled",
                self.system_user,
            )
            return False
        return True

    async def _room(self) -> RoomRecord:
        room_id = await self.store.get_setting(ROOM_SETTING)
        if room_id is not None:
            room = await self.rooms.get_room(room_id)
            if room is not None:
                return room
        room_id = await self.room_creator.create(self.system_user, {
            "preset": "private_chat",
            "name": "Server notices",
            "topic": "Messages from this server to its administrators (partnership requests and answers).",
            "creation_content": {"m.federate": False},
        })
        await self.store.set_setting(ROOM_SETTING, room_id)
        return await self.room_service.get_room(room_id)

    async def _invite(self, room: RoomRecord, user_id: str) -> None:
        member = await self.room_service.current_state_event(room, ("m.room.member", user_id))
        if member is not None and member.event.get("content", {}).get("membership") in ("join", "invite"):
            return
        try:
            await self.membership.invite(room, self.system_user, user_id)
        except MatrixError as e:  # e.g. the admin blocks invites: tell the others anyway
            logger.warning("could not invite %s to the server notice room: %s", user_id, e)
