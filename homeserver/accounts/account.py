"""Account management: password changes and deactivation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeserver.storage.database import Txn
from homeserver.storage.devices import DeviceStore
from homeserver.storage.users import UserStore

if TYPE_CHECKING:
    from homeserver.accounts.auth import Requester
    from homeserver.server import HomeServer


class AccountService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def change_password(self, requester: Requester, new_password: str, logout_devices: bool) -> None:
        self.hs.registration.check_password(new_password)
        pw_hash = await self.hs.passwords.hash(new_password)
        await self.hs.users.set_password_hash(requester.user_id, pw_hash)
        if logout_devices:
            devices = await self.hs.devices.list_devices(requester.user_id)
            others = [d.device_id for d in devices if d.device_id != requester.device_id]
            await self.hs.auth.delete_devices(requester.user_id, others)

    async def deactivate(self, user_id: str) -> None:
        """Deactivation is permanent: credentials, devices and profile go at once."""

        async def fn(txn: Txn) -> list[str]:
            dropped = await DeviceStore.delete_devices(txn, user_id, None)
            await UserStore.mark_deactivated(txn, user_id)
            return dropped

        dropped = await self.hs.db.write(fn)
        self.hs.auth.forget_tokens(dropped)
