"""Devices, access tokens and refresh tokens.

Tokens are stored only as SHA-256 hashes: they are long random strings, so a fast
hash is enough to make a leaked database useless for impersonation.
"""

from __future__ import annotations

from homeserver.records.devices import AccessTokenRecord, DeviceRecord, RefreshTokenRecord
from homeserver.storage.database import Database, Txn
from homeserver.storage.e2ee_keys import E2eeKeyStore
from homeserver.storage.pushers import PusherStore


class DeviceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def upsert_device(
        txn: Txn, user_id: str, device_id: str, display_name: str | None, now_ms: int, ip: str | None,
        user_agent: str | None,
    ) -> None:
        """Create the device, or keep an existing one (logging in again with a device ID)."""
        await txn.execute(
            "INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip,"
            " last_seen_user_agent) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id, device_id) DO UPDATE SET last_seen_ts = excluded.last_seen_ts,"
            " last_seen_ip = excluded.last_seen_ip,"
            " last_seen_user_agent = excluded.last_seen_user_agent",
            (user_id, device_id, display_name, now_ms, ip, user_agent),
        )

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        row = await self.db.fetchone(
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip,"
            " last_seen_user_agent FROM devices WHERE user_id = ? AND device_id = ?",
            (user_id, device_id),
        )
        return DeviceRecord(*row) if row else None

    async def list_devices(self, user_id: str) -> list[DeviceRecord]:
        rows = await self.db.fetchall(
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip,"
            " last_seen_user_agent FROM devices WHERE user_id = ? ORDER BY device_id",
            (user_id,),
        )
        return [DeviceRecord(*r) for r in rows]

    async def set_display_name(self, user_id: str, device_id: str, name: str | None) -> bool:
        n = await self.db.execute(
            "UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
            (name, user_id, device_id),
        )
        return n > 0

    async def touch_many(self, rows: list[tuple[str, str, int, str | None, str | None]]) -> None:
        """Record devices' last use: (user, device, when, address, user agent) each; a
        device deleted meanwhile is simply not there to update."""
        args = [(ts, ip, ua, user_id, device_id) for user_id, device_id, ts, ip, ua in rows]

        async def fn(txn: Txn) -> None:
            await txn.executemany(
                "UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?, last_seen_user_agent = ?"
                " WHERE user_id = ? AND device_id = ?",
                args,
            )

        await self.db.write(fn)

    @staticmethod
    async def delete_devices(txn: Txn, user_id: str, device_ids: list[str] | None) -> list[str]:
        """Delete devices with their tokens, end-to-end encryption keys and pushers; None deletes
        all. Returns the token hashes dropped."""
        await E2eeKeyStore.delete_device_keys(txn, user_id, device_ids)
        await PusherStore.delete_for_devices(txn, user_id, device_ids)  # a session's pushers go with it
        if device_ids is None:
            rows = await txn.fetchall(
                "SELECT token_hash FROM access_tokens WHERE user_id = ?", (user_id,)
            )
            await txn.execute("DELETE FROM access_tokens WHERE user_id = ?", (user_id,))
            await txn.execute("DELETE FROM refresh_tokens WHERE user_id = ?", (user_id,))
            await txn.execute("DELETE FROM devices WHERE user_id = ?", (user_id,))
            return [r[0] for r in rows]
        dropped: list[str] = []
        for device_id in device_ids:
            rows = await txn.fetchall(
                "SELECT token_hash FROM access_tokens WHERE user_id = ? AND device_id = ?",
                (user_id, device_id),
            )
            dropped.extend(r[0] for r in rows)
            for table in ("access_tokens", "refresh_tokens", "devices"):
                await txn.execute(
                    f"DELETE FROM {table} WHERE user_id = ? AND device_id = ?", (user_id, device_id)
                )
        return dropped

    # --- tokens ---

    @staticmethod
    async def insert_access_token(
        txn: Txn, token_hash: str, user_id: str, device_id: str, now_ms: int,
        expires_ts: int | None, refresh_token_hash: str | None,
    ) -> None:
        await txn.execute(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts,"
            " refresh_token_hash) VALUES (?, ?, ?, ?, ?, ?)",
            (token_hash, user_id, device_id, now_ms, expires_ts, refresh_token_hash),
        )

    @staticmethod
    async def insert_refresh_token(
        txn: Txn, token_hash: str, user_id: str, device_id: str, now_ms: int, expires_ts: int | None
    ) -> None:
        await txn.execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts, expires_ts)"
            " VALUES (?, ?, ?, ?, ?)",
            (token_hash, user_id, device_id, now_ms, expires_ts),
        )

    async def add_access_token(
        self, token_hash: str, user_id: str, device_id: str, now_ms: int, expires_ts: int | None
    ) -> None:
        """An access token of its own (no refresh token), in a transaction of its own."""
        await self.db.write(
            lambda txn: DeviceStore.insert_access_token(
                txn, token_hash, user_id, device_id, now_ms, expires_ts, None
            )
        )

    async def get_access_token(self, token_hash: str) -> AccessTokenRecord | None:
        row = await self.db.fetchone(
            "SELECT user_id, device_id, expires_ts, refresh_token_hash, used FROM access_tokens"
            " WHERE token_hash = ?",
            (token_hash,),
        )
        if row is None:
            return None
        return AccessTokenRecord(row[0], row[1], row[2], row[3], bool(row[4]))

    @staticmethod
    async def get_refresh_token(txn: Txn, token_hash: str) -> RefreshTokenRecord | None:
        row = await txn.fetchone(
            "SELECT user_id, device_id, expires_ts, next_token_hash FROM refresh_tokens"
            " WHERE token_hash = ?",
            (token_hash,),
        )
        return RefreshTokenRecord(*row) if row else None

    async def mark_access_token_used(self, token_hash: str) -> list[str]:
        """First use of a refreshed access token retires the refresh token that preceded it,
        with the access tokens that one issued.

        Returns the hashes of the access tokens retired, so callers can drop them from caches.
        """

        async def fn(txn: Txn) -> list[str]:
            n = await txn.execute(
                "UPDATE access_tokens SET used = 1 WHERE token_hash = ? AND used = 0", (token_hash,)
            )
            if n == 0:
                return []
            row = await txn.fetchone(
                "SELECT refresh_token_hash FROM access_tokens WHERE token_hash = ?", (token_hash,)
            )
            if not row or not row[0]:
                return []
            # Tokens issued by an older refresh token are superseded now that this one is in use.
            retired: list[str] = []
            for h in await DeviceStore.refresh_tokens_superseded_by(txn, row[0]):
                retired.extend(await DeviceStore.delete_refresh_token(txn, h))
            return retired

        return await self.db.write(fn)

    @staticmethod
    async def refresh_tokens_superseded_by(txn: Txn, token_hash: str) -> list[str]:
        """The refresh tokens that were exchanged for this one."""
        rows = await txn.fetchall(
            "SELECT token_hash FROM refresh_tokens WHERE next_token_hash = ?", (token_hash,)
        )
        return [r[0] for r in rows]

    @staticmethod
    async def set_next_refresh_token(txn: Txn, token_hash: str, next_token_hash: str) -> None:
        """Record the refresh token this one was exchanged for."""
        await txn.execute(
            "UPDATE refresh_tokens SET next_token_hash = ? WHERE token_hash = ?",
            (next_token_hash, token_hash),
        )

    @staticmethod
    async def delete_refresh_token(txn: Txn, token_hash: str) -> list[str]:
        """Delete a refresh token and the access tokens it issued; returns their hashes."""
        rows = await txn.fetchall(
            "SELECT token_hash FROM access_tokens WHERE refresh_token_hash = ?", (token_hash,)
        )
        await txn.execute("DELETE FROM refresh_tokens WHERE token_hash = ?", (token_hash,))
        await txn.execute("DELETE FROM access_tokens WHERE refresh_token_hash = ?", (token_hash,))
        return [r[0] for r in rows]

    @staticmethod
    async def revoke_device_tokens(txn: Txn, user_id: str, device_id: str) -> list[str]:
        """Delete a device's access and refresh tokens but keep the device (a new login
        that names it takes it over). Returns the access token hashes deleted."""
        rows = await txn.fetchall(
            "SELECT token_hash FROM access_tokens WHERE user_id = ? AND device_id = ?",
            (user_id, device_id),
        )
        for table in ("access_tokens", "refresh_tokens"):
            await txn.execute(
                f"DELETE FROM {table} WHERE user_id = ? AND device_id = ?", (user_id, device_id)
            )
        return [r[0] for r in rows]

    @staticmethod
    async def delete_access_token(txn: Txn, token_hash: str) -> None:
        await txn.execute("DELETE FROM access_tokens WHERE token_hash = ?", (token_hash,))
