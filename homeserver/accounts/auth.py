"""Access tokens: issuing, checking every request, refreshing and revoking.

The token hash -> owner lookup runs on every authenticated request, so it sits
behind a bounded in-memory cache; revocation removes entries from it at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import string
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.identifiers import MAX_DEVICE_ID_LENGTH, is_valid_device_id
from homeserver.storage.database import Txn
from homeserver.storage.devices import DeviceStore

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.config import AuthConfig
    from homeserver.storage.database import Database
    from homeserver.storage.users import UserStore

DEFAULT_REFRESHABLE_LIFETIME_MS = 5 * 60 * 1000
logger = logging.getLogger(__name__)

_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Requester:
    user_id: str
    device_id: str
    is_guest: bool
    token_hash: str


@dataclass
class _CachedToken:
    user_id: str
    device_id: str
    expires_ts: int | None
    is_guest: bool
    needs_use_mark: bool
    # what was last recorded of the device's use through this token (`_seen`)
    seen_ts: int = 0
    seen_from: tuple[str | None, str | None] = (None, None)
    # the answer for every request with this token (built once: it never changes while
    # the entry is cached; a change of guest flag drops the entry, `forget_user`)
    requester: Requester | None = None


# A device's last use (GET /devices, whois, the admin API) is recorded at most this
# often per token unless its address or client changes, and written in batches.
SEEN_EVERY_MS = 60_000
SEEN_FLUSH_S = 5.0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(prefix: str) -> str:
    """An unguessable bearer token (256 bits of randomness)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def new_device_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(10))


def check_device_id(value: Any, name: str = "device_id") -> str | None:
    """A client-chosen device ID from a request body (None when absent or empty: the
    server picks one). Checked before anything is stored, as it becomes a key in
    the database, in logs and in other servers' device lists."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MatrixError(400, "M_BAD_JSON", f"Field '{name}' must be a string")
    if not is_valid_device_id(value):
        raise MatrixError(
            400, "M_INVALID_PARAM",
            f"Field '{name}' must be 1 to {MAX_DEVICE_ID_LENGTH} characters without control characters",
        )
    return value


def token_from_request(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Invalid Authorization header")
        return value.strip()
    return request.query.get("access_token")


class AuthService:
    def __init__(
        self, db: Database, devices: DeviceStore, users: UserStore, clock: Clock, config: AuthConfig
    ) -> None:
        self.db = db
        self.devices = devices
        self.users = users
        self.clock = clock
        self.config = config
        self._cache: OrderedDict[str, _CachedToken] = OrderedDict()
        # (user, device) -> (when, address, user agent) of its last use, not yet written
        self._seen_dirty: dict[tuple[str, str], tuple[int, str | None, str | None]] = {}
        self._seen_timer: asyncio.TimerHandle | None = None
        self._seen_tasks: set[asyncio.Task[None]] = set()
        # Told, after the commit, of the user whose devices were deleted (their keys went
        # with them, in DeviceStore.delete_devices): the device list changed.
        self.on_devices_deleted: list[Callable[[str], Awaitable[None]]] = []

    # --- issuing ---

    async def issue_session(
        self,
        txn: Txn,
        user_id: str,
        device_id: str | None,
        display_name: str | None,
        *,
        want_refresh: bool,
        ip: str | None,
        user_agent: str | None,
    ) -> tuple[dict[str, Any], list[str]]:
        """Create (or reuse) a device and give it tokens, inside the caller's transaction.

        Reusing a device ID revokes the tokens the device had (the spec's relationship
        between tokens and devices), so returns the revoked token hashes too: the caller
        must `forget_tokens` them once the transaction has committed.
        """
        now = self.clock.time_ms()
        revoked: list[str] = []
        device_id = check_device_id(device_id)  # callers check first; this is the last line
        if device_id is None:  # absent or empty: the server picks one
            device_id = new_device_id()
        else:
            revoked = await DeviceStore.revoke_device_tokens(txn, user_id, device_id)
        await DeviceStore.upsert_device(txn, user_id, device_id, display_name, now, ip, user_agent)
        result = await self._issue_tokens(txn, user_id, device_id, now, want_refresh)
        result["device_id"] = device_id
        result["user_id"] = user_id
        return result, revoked

    async def _issue_tokens(
        self, txn: Txn, user_id: str, device_id: str, now: int, want_refresh: bool
    ) -> dict[str, Any]:
        access = new_token("acc")
        result: dict[str, Any] = {"access_token": access}
        refresh_hash = None
        expires = None
        if want_refresh:
            refresh = new_token("ref")
            refresh_hash = hash_token(refresh)
            lifetime = self.config.access_token_lifetime_ms or DEFAULT_REFRESHABLE_LIFETIME_MS
            expires = now + lifetime
            rt_life = self.config.refresh_token_lifetime_ms
            await DeviceStore.insert_refresh_token(
                txn, refresh_hash, user_id, device_id, now, now + rt_life if rt_life else None
            )
            result["refresh_token"] = refresh
            result["expires_in_ms"] = lifetime
        await DeviceStore.insert_access_token(
            txn, hash_token(access), user_id, device_id, now, expires, refresh_hash
        )
        return result

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        old_hash = hash_token(refresh_token)
        now = self.clock.time_ms()
        dropped: list[str] = []

        async def drop_issued_by(txn: Txn, refresh_hash: str) -> None:
            dropped.extend(await DeviceStore.delete_refresh_token(txn, refresh_hash))

        async def fn(txn: Txn) -> dict[str, Any]:
            dropped.clear()  # the engine may run this function again after a failed commit
            rec = await DeviceStore.get_refresh_token(txn, old_hash)
            if rec is None:
                raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown refresh token", soft_logout=False)
            if rec.expires_ts is not None and rec.expires_ts < now:
                raise MatrixError(401, "M_UNKNOWN_TOKEN", "Refresh token expired", soft_logout=False)
            # Tokens that this refresh token superseded are now certainly unused by the client.
            for h in await DeviceStore.refresh_tokens_superseded_by(txn, old_hash):
                await drop_issued_by(txn, h)
            # A retried refresh replaces the pair the previous attempt issued.
            if rec.next_token_hash:
                await drop_issued_by(txn, rec.next_token_hash)
            result = await self._issue_tokens(txn, rec.user_id, rec.device_id, now, True)
            await DeviceStore.set_next_refresh_token(
                txn, old_hash, hash_token(result["refresh_token"])
            )
            return result

        result = await self.db.write(fn)
        self.forget_tokens(dropped)
        return result

    # --- checking ---

    async def get_requester(
        self, request: web.Request, *, allow_guest: bool = False, ip: str | None = None
    ) -> Requester:
        """The token's user and device (401/403 as the spec says); `ip` is the client's
        address as the listener sees it, recorded as the device's last use with the
        request's User-Agent."""
        token = token_from_request(request)
        if not token:
            raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
        token_hash = hash_token(token)
        entry = self._cache.get(token_hash)
        if entry is None:
            rec = await self.devices.get_access_token(token_hash)
            if rec is None:
                raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown access token", soft_logout=False)
            user = await self.users.get_user(rec.user_id)
            if user is None or user.deactivated:
                raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown access token", soft_logout=False)
            entry = _CachedToken(
                rec.user_id, rec.device_id, rec.expires_ts, user.is_guest,
                needs_use_mark=rec.refresh_token_hash is not None and not rec.used,
            )
            self._cache[token_hash] = entry
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(token_hash)
        if entry.expires_ts is not None and entry.expires_ts <= self.clock.time_ms():
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token has expired", soft_logout=True)
        if entry.needs_use_mark:
            # First use of a refreshed token retires the tokens it superseded; they
            # may sit in the cache, so drop them there too.
            self.forget_tokens(await self.devices.mark_access_token_used(token_hash))
            entry.needs_use_mark = False
        if entry.is_guest and not allow_guest:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed")
        self._seen(entry, ip, request.headers.get("User-Agent"))
        if entry.requester is None:
            entry.requester = Requester(entry.user_id, entry.device_id, entry.is_guest, token_hash)
        return entry.requester

    def _seen(self, entry: _CachedToken, ip: str | None, user_agent: str | None) -> None:
        """Note the device's use (address, client, time) for the next batched write."""
        now = self.clock.time_ms()
        seen_from = (ip, user_agent[:512] if user_agent else None)
        if now - entry.seen_ts < SEEN_EVERY_MS and seen_from == entry.seen_from:
            return
        entry.seen_ts, entry.seen_from = now, seen_from
        self._seen_dirty[(entry.user_id, entry.device_id)] = (now, *seen_from)
        if self._seen_timer is None:
            self._seen_timer = asyncio.get_running_loop().call_later(SEEN_FLUSH_S, self._on_seen_timer)

    def _on_seen_timer(self) -> None:
        self._seen_timer = None
        task = asyncio.ensure_future(self.flush_seen())
        self._seen_tasks.add(task)
        task.add_done_callback(self._seen_tasks.discard)

    async def flush_seen(self) -> None:
        """Write the devices' last uses noted since the last write (one statement); the
        server's stop calls it too. A failed write is retried with the next batch."""
        if self._seen_timer is not None:
            self._seen_timer.cancel()
            self._seen_timer = None
        rows, self._seen_dirty = self._seen_dirty, {}
        if not rows:
            return
        try:
            await self.devices.touch_many([(u, d, *seen) for (u, d), seen in rows.items()])
        except Exception:
            logger.warning("could not record devices' last use; will retry", exc_info=True)
            self._seen_dirty = {**rows, **self._seen_dirty}

    # --- revoking ---

    async def guest_of_token(self, token: str) -> str:
        """The guest whose access token this is (a guest upgrading to a full account
        names itself so); 401 for an unknown token, 403 for a full account's."""
        rec = await self.devices.get_access_token(hash_token(token))
        user = await self.users.get_user(rec.user_id) if rec is not None else None
        if rec is None or user is None or user.deactivated:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown guest access token", soft_logout=False)
        if not user.is_guest:
            raise MatrixError(403, "M_FORBIDDEN", "guest_access_token is not a guest's")
        return rec.user_id

    def forget_user(self, user_id: str) -> None:
        """Drop the user's cached tokens (their guest flag changed)."""
        for token_hash in [h for h, e in self._cache.items() if e.user_id == user_id]:
            del self._cache[token_hash]

    def forget_tokens(self, token_hashes: list[str]) -> None:
        for h in token_hashes:
            self._cache.pop(h, None)

    async def logout(self, requester: Requester) -> None:
        """Logging out deletes the device too, as the spec requires."""
        dropped = await self.db.write(
            lambda txn: DeviceStore.delete_devices(txn, requester.user_id, [requester.device_id])
        )
        self.forget_tokens(dropped + [requester.token_hash])
        await self.devices_deleted(requester.user_id)

    async def delete_devices(self, user_id: str, device_ids: list[str] | None) -> None:
        dropped = await self.db.write(
            lambda txn: DeviceStore.delete_devices(txn, user_id, device_ids)
        )
        self.forget_tokens(dropped)
        await self.devices_deleted(user_id)

    async def devices_deleted(self, user_id: str) -> None:
        for listener in self.on_devices_deleted:
            await listener(user_id)
