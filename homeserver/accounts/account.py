"""Account management: password changes, devices and deactivation."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from homeserver.errors import MatrixError
from homeserver.storage.database import Txn
from homeserver.storage.devices import DeviceStore
from homeserver.storage.e2ee_keys import E2eeKeyStore
from homeserver.storage.key_backup import KeyBackupStore
from homeserver.storage.threepids import ThreepidStore
from homeserver.storage.users import UserStore

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from homeserver.accounts.auth import AuthService
    from homeserver.accounts.passwords import PasswordHasher
    from homeserver.accounts.registration import RegistrationService
    from homeserver.records.devices import DeviceRecord
    from homeserver.rooms.membership import MembershipService
    from homeserver.storage.database import Database
    from homeserver.storage.rooms import RoomStore


class AccountService:
    def __init__(
        self, *, db: Database, users: UserStore, devices: DeviceStore, rooms: RoomStore,
        auth: AuthService, passwords: PasswordHasher, registration: RegistrationService,
        membership: MembershipService,
    ) -> None:
        self.db = db
        self.users = users
        self.devices = devices
        self.rooms = rooms
        self.auth = auth
        self.passwords = passwords
        self.registration = registration  # its password rules
        self.membership = membership

    async def exists(self, user_id: str) -> bool:
        """Whether the account exists here (deactivated or not)."""
        return await self.users.get_user(user_id) is not None

    # --- devices ---

    async def list_devices(self, user_id: str) -> list[DeviceRecord]:
        return await self.devices.list_devices(user_id)

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        return await self.devices.get_device(user_id, device_id)

    async def rename_device(self, user_id: str, device_id: str, name: str) -> bool:
        """False when the user has no such device."""
        return await self.devices.set_display_name(user_id, device_id, name)

    async def change_password(
        self, user_id: str, new_password: str, logout_devices: bool, *, keep_device: str | None = None
    ) -> None:
        """Set a new password; with `logout_devices`, every session but `keep_device`
        (the requester's; None for a reset by e-mail) ends, and their pushers with them."""
        self.registration.check_password(new_password)
        pw_hash = await self.passwords.hash(new_password)
        await self.users.set_password_hash(user_id, pw_hash)
        if logout_devices:
            devices = await self.devices.list_devices(user_id)
            others = [d.device_id for d in devices if d.device_id != keep_device]
            await self.auth.delete_devices(user_id, others)

    async def deactivate(self, user_id: str) -> None:
        """Deactivation is permanent: credentials, devices and profile go at once, and the
        user leaves (or declines) every room, so no room keeps a ghost member."""
        for room_id, _ in await self.rooms.rooms_for_user(user_id, ("join", "invite", "knock")):
            room = await self.rooms.get_room(room_id)
            if room is None:
                continue
            try:
                await self.membership.update(room, user_id, user_id, "leave")
            except MatrixError as e:
                logger.warning("deactivation of %s could not leave %s: %s", user_id, room_id, e.message)

        async def fn(txn: Txn) -> list[str]:
            dropped = await DeviceStore.delete_devices(txn, user_id, None)
            await KeyBackupStore.delete_all(txn, user_id)  # the room key backups too
            await E2eeKeyStore.delete_cross_signing_keys(txn, user_id)  # and its cross-signing identity
            await ThreepidStore.delete_all(txn, user_id)  # its e-mail addresses are free again
            await UserStore.mark_deactivated(txn, user_id)
            return dropped

        dropped = await self.db.write(fn)
        self.auth.forget_tokens(dropped)
        await self.auth.devices_deleted(user_id)  # their keys went with them
