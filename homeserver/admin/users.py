"""Account administration: what admins see of accounts, and what they may change,
including bot accounts (exempt from rate limits, given long-lived tokens by an admin)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

from homeserver.accounts.auth import hash_token, new_device_id, new_token
from homeserver.errors import MatrixError
from homeserver.records.devices import DeviceRecord
from homeserver.records.users import UserFilter, UserListing, UserRecord
from homeserver.storage.admin_users import AdminUserStore

if TYPE_CHECKING:
    from homeserver.accounts.account import AccountService
    from homeserver.accounts.auth import AuthService
    from homeserver.accounts.passwords import PasswordHasher
    from homeserver.clock import Clock
    from homeserver.ratelimit import RateLimiter
    from homeserver.storage.devices import DeviceStore
    from homeserver.storage.users import UserStore

BOT = "bot"
USER_TYPES = (BOT, "support")


class UserAdmin:
    def __init__(
        self, *, store: AdminUserStore, users: UserStore, devices: DeviceStore, auth: AuthService,
        accounts: AccountService, passwords: PasswordHasher, ratelimiter: RateLimiter,
        exempt_users: Collection[str], clock: Clock,
    ) -> None:
        self.store = store
        self.users = users
        self.devices = devices
        self.auth = auth
        self.accounts = accounts
        self.passwords = passwords
        self.ratelimiter = ratelimiter
        self.exempt_users = exempt_users  # rate_limits.exempt_users: exempt whatever their type
        self.clock = clock
        # Called with the user ID when a user is erased (their uploaded media).
        self.on_erase: list[Callable[[str], Awaitable[object]]] = []

    async def start(self) -> None:
        """Give the rate limiter the admins' per-user overrides (exemptions are loaded
        with the users' flags by the server itself)."""
        for user_id, (per_second, burst) in (await self.store.all_overrides()).items():
            self.ratelimiter.set_override(user_id, per_second, burst)

    # --- reading ---

    async def user_json(self, user: UserRecord) -> dict[str, Any]:
        """An account as the admin API's "query user account" shows it."""
        profile = await self.users.get_profile(user.user_id) or (None, None)
        return {
            "name": user.user_id,
            "displayname": profile[0],
            "threepids": [],
            "avatar_url": profile[1],
            "is_guest": user.is_guest,
            "admin": user.admin,
            "deactivated": user.deactivated,
            "erased": await self.store.is_erased(user.user_id),
            "shadow_banned": False,
            "creation_ts": user.created_ts,
            "last_seen_ts": await self.store.last_seen_ts(user.user_id),
            "appservice_id": None,
            "consent_server_notice_sent": None,
            "consent_version": None,
            "consent_ts": None,
            "external_ids": [],
            "user_type": user.user_type,
            "locked": user.locked,
            "suspended": False,
        }

    @staticmethod
    def listing_json(u: UserListing, erased: bool) -> dict[str, Any]:
        return {
            "name": u.user_id,
            "is_guest": u.is_guest,
            "admin": u.admin,
            "user_type": u.user_type,
            "deactivated": u.deactivated,
            "erased": erased,
            "shadow_banned": False,
            "displayname": u.displayname,
            "avatar_url": u.avatar_url,
            "creation_ts": u.created_ts,
            "last_seen_ts": u.last_seen_ts,
            "locked": u.locked,
        }

    async def find(self, user_id: str) -> UserRecord | None:
        return await self.users.get_user(user_id)

    async def is_admin(self, user_id: str) -> bool:
        user = await self.users.get_user(user_id)
        return user is not None and user.admin

    async def list_users(
        self, flt: UserFilter, *, order_by: str, backwards: bool, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of accounts as the admin API lists them, and how many match in all."""
        users, total = await self.store.list_users(
            flt, order_by=order_by, backwards=backwards, offset=offset, limit=limit
        )
        return [self.listing_json(u, await self.store.is_erased(u.user_id)) for u in users], total

    async def set_admin(self, user_id: str, admin: bool) -> None:
        await self.users.set_admin(user_id, admin)

    async def set_locked(self, user_id: str, locked: bool) -> None:
        """A locked account is logged out everywhere at once."""
        await self.store.set_locked(user_id, locked)
        if locked:
            await self.auth.delete_devices(user_id, None)

    async def get(self, user_id: str) -> UserRecord:
        user = await self.users.get_user(user_id)
        if user is None:
            raise MatrixError(404, "M_NOT_FOUND", "User not found")
        return user

    async def whois(self, user_id: str) -> dict[str, Any]:
        devices: dict[str, Any] = {}
        for d in await self.devices.list_devices(user_id):
            connections = []
            if d.last_seen_ts is not None:
                connections.append(
                    {"ip": d.last_seen_ip, "last_seen": d.last_seen_ts, "user_agent": d.last_seen_user_agent}
                )
            devices[d.device_id] = {"sessions": [{"connections": connections}]}
        return {"user_id": user_id, "devices": devices}

    # --- devices (Synapse's device admin API) ---

    @staticmethod
    def device_json(d: DeviceRecord) -> dict[str, Any]:
        return {
            "device_id": d.device_id, "display_name": d.display_name, "last_seen_ip": d.last_seen_ip,
            "last_seen_ts": d.last_seen_ts, "last_seen_user_agent": d.last_seen_user_agent,
            "user_id": d.user_id,
        }

    async def list_devices(self, user_id: str) -> list[dict[str, Any]]:
        await self.get(user_id)  # 404 for an unknown user, as Synapse answers
        return [self.device_json(d) for d in await self.devices.list_devices(user_id)]

    async def get_device(self, user_id: str, device_id: str) -> dict[str, Any]:
        await self.get(user_id)
        device = await self.devices.get_device(user_id, device_id)
        if device is None:
            raise MatrixError(404, "M_NOT_FOUND", "No device found")
        return self.device_json(device)

    async def rename_device(self, user_id: str, device_id: str, name: str | None) -> None:
        await self.get(user_id)
        if not await self.devices.set_display_name(user_id, device_id, name):
            raise MatrixError(404, "M_NOT_FOUND", "No device found")

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Log the devices out (tokens, keys and inboxes go with them); a device that
        is already gone is no error, so a retried delete succeeds."""
        await self.get(user_id)
        if device_ids:
            await self.auth.delete_devices(user_id, device_ids)

    # --- changing ---

    async def set_password(self, user_id: str, password: str, logout_devices: bool) -> None:
        """Set a password as an admin: every device is logged out unless told otherwise,
        since a reset usually means the old credentials may be in the wrong hands."""
        pw_hash = await self.passwords.hash(password)
        await self.users.set_password_hash(user_id, pw_hash)
        if logout_devices:
            await self.auth.delete_devices(user_id, None)

    async def set_user_type(self, user_id: str, user_type: str | None) -> None:
        """Bots are never rate limited: making an account a bot (or no longer one)
        exempts it (or ends the exemption) at once."""
        before = await self.get(user_id)
        await self.store.set_user_type(user_id, user_type)
        if (before.user_type == BOT) != (user_type == BOT):
            await self.set_ratelimit_override(user_id, (0, 0) if user_type == BOT else None)

    async def reactivate(self, user_id: str, password: str) -> None:
        pw_hash = await self.passwords.hash(password)
        await self.store.reactivate(user_id, pw_hash)
        await self.store.set_erased(user_id, False, self.clock.time_ms())

    async def deactivate(self, user_id: str, erase: bool) -> None:
        await self.accounts.deactivate(user_id)
        if erase:
            await self.store.set_erased(user_id, True, self.clock.time_ms())
            for hook in self.on_erase:
                await hook(user_id)

    async def login_as(self, user_id: str, valid_until_ms: int | None) -> str:
        """A token for the user that expires only when asked to, whatever the server's
        refresh-token lifetimes: this is how bots and operators' scripts get credentials
        that last. No device is listed for it (the user cannot tell), as in Synapse."""
        token = new_token("acc")
        now = self.clock.time_ms()
        await self.devices.add_access_token(
            hash_token(token), user_id, new_device_id(), now, valid_until_ms
        )
        return token

    # --- rate limit overrides ---

    async def get_ratelimit_override(self, user_id: str) -> tuple[int, int] | None:
        user = await self.get(user_id)
        if user.ratelimit_exempt:
            return (0, 0)
        return await self.store.get_override(user_id)

    async def set_ratelimit_override(self, user_id: str, override: tuple[int, int] | None) -> None:
        """Durably and at once: (0, 0) exempts the user, None drops any override."""
        await self.store.set_override(user_id, override)
        limiter = self.ratelimiter
        limiter.clear_override(user_id)
        if override is not None and override != (0, 0):
            limiter.set_override(user_id, *override)
        limiter.set_exempt(
            user_id, override == (0, 0) or user_id in self.exempt_users
        )
