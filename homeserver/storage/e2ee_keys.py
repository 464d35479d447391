"""End-to-end encryption keys: device keys, one-time and fallback keys,
cross-signing keys and the signatures uploaded on keys.

Key objects are stored as the client's JSON (orjson), never interpreted here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from homeserver.records.e2ee import CrossSigningSignature, FallbackKey, OneTimeKey
from homeserver.storage.database import Database, Txn


def _dump(obj: Any) -> str:
    return orjson.dumps(obj).decode()


class E2eeKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- device keys ---

    async def get_device_keys(self, user_id: str, device_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """The user's device keys by device ID (all devices, or those listed)."""
        rows = await self.db.fetchall(
            "SELECT device_id, key_json FROM e2e_device_keys WHERE user_id = ?", (user_id,)
        )
        wanted = set(device_ids) if device_ids is not None else None
        return {r[0]: orjson.loads(r[1]) for r in rows if wanted is None or r[0] in wanted}

    async def set_device_keys(self, user_id: str, device_id: str, keys: dict[str, Any]) -> None:
        data = _dump(keys)

        async def fn(txn: Txn) -> None:
            await txn.execute(
                "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
                (user_id, device_id, data),
            )

        await self.db.write(fn)

    # --- one-time keys ---

    async def add_one_time_keys(
        self, user_id: str, device_id: str, keys: list[OneTimeKey]
    ) -> str | None:
        """Store the keys not stored yet; returns the ID of a key already stored
        with a different value (and stores nothing), or None."""

        async def fn(txn: Txn) -> str | None:
            new: list[tuple[str, str, str, str, str]] = []
            for k in keys:
                algorithm = k.key_id.split(":", 1)[0]
                data = _dump(k.key)
                row = await txn.fetchone(
                    "SELECT key_json FROM e2e_one_time_keys"
                    " WHERE user_id = ? AND device_id = ? AND algorithm = ? AND key_id = ?",
                    (user_id, device_id, algorithm, k.key_id),
                )
                if row is not None:
                    if orjson.loads(row[0]) != k.key:
                        return k.key_id
                    continue
                new.append((user_id, device_id, algorithm, k.key_id, data))
            if new:
                await txn.executemany(
                    "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)"
                    " VALUES (?, ?, ?, ?, ?)",
                    new,
                )
            return None

        return await self.db.write(fn)

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
            " GROUP BY algorithm",
            (user_id, device_id),
        )
        return {r[0]: int(r[1]) for r in rows}

    async def claim_one_time_key(self, user_id: str, device_id: str, algorithm: str) -> OneTimeKey | None:
        """Remove and return one of the device's keys of the algorithm; each key is
        handed out once, even to concurrent claims."""
        for _ in range(20):
            row = await self.db.fetchone(
                "SELECT key_id, key_json FROM e2e_one_time_keys"
                " WHERE user_id = ? AND device_id = ? AND algorithm = ? ORDER BY key_id LIMIT 1",
                (user_id, device_id, algorithm),
            )
            if row is None:
                return None
            key_id, data = str(row[0]), str(row[1])

            async def fn(txn: Txn, key_id: str = key_id) -> int:
                return await txn.execute(
                    "DELETE FROM e2e_one_time_keys"
                    " WHERE user_id = ? AND device_id = ? AND algorithm = ? AND key_id = ?",
                    (user_id, device_id, algorithm, key_id),
                )

            if await self.db.write(fn) == 1:
                return OneTimeKey(key_id, orjson.loads(data))
            # Another claim took that key first: take the next.
        return None

    # --- fallback keys ---

    async def set_fallback_key(self, user_id: str, device_id: str, algorithm: str, key: OneTimeKey) -> None:
        """Replace the device's fallback key of the algorithm; re-uploading the
        key in force keeps its `used` state."""
        data = _dump(key.key)

        async def fn(txn: Txn) -> None:
            row = await txn.fetchone(
                "SELECT key_id, key_json FROM e2e_fallback_keys"
                " WHERE user_id = ? AND device_id = ? AND algorithm = ?",
                (user_id, device_id, algorithm),
            )
            if row is not None and row[0] == key.key_id and orjson.loads(row[1]) == key.key:
                return
            await txn.execute(
                "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
                " VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET"
                " key_id = excluded.key_id, key_json = excluded.key_json, used = 0",
                (user_id, device_id, algorithm, key.key_id, data),
            )

        await self.db.write(fn)

    async def unused_fallback_algorithms(self, user_id: str, device_id: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND used = 0"
            " ORDER BY algorithm",
            (user_id, device_id),
        )
        return [str(r[0]) for r in rows]

    async def claim_fallback_key(self, user_id: str, device_id: str, algorithm: str) -> FallbackKey | None:
        """The device's fallback key of the algorithm, marked used."""

        async def fn(txn: Txn) -> FallbackKey | None:
            row = await txn.fetchone(
                "SELECT key_id, key_json, used FROM e2e_fallback_keys"
                " WHERE user_id = ? AND device_id = ? AND algorithm = ?",
                (user_id, device_id, algorithm),
            )
            if row is None:
                return None
            if not row[2]:
                await txn.execute(
                    "UPDATE e2e_fallback_keys SET used = 1"
                    " WHERE user_id = ? AND device_id = ? AND algorithm = ?",
                    (user_id, device_id, algorithm),
                )
            return FallbackKey(str(row[0]), orjson.loads(row[1]), bool(row[2]))

        return await self.db.write(fn)

    # --- cross-signing ---

    async def get_cross_signing_keys(self, user_id: str) -> dict[str, dict[str, Any]]:
        """The user's cross-signing keys by type ("master", "self_signing", "user_signing")."""
        rows = await self.db.fetchall(
            "SELECT key_type, key_json FROM e2e_cross_signing_keys WHERE user_id = ?", (user_id,)
        )
        return {str(r[0]): orjson.loads(r[1]) for r in rows}

    async def set_cross_signing_keys(self, user_id: str, keys: dict[str, dict[str, Any]]) -> None:
        async def fn(txn: Txn) -> None:
            for key_type, key in keys.items():
                await txn.execute(
                    "INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?)"
                    " ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
                    (user_id, key_type, _dump(key)),
                )

        await self.db.write(fn)

    async def add_signatures(self, signatures: Iterable[CrossSigningSignature]) -> None:
        rows = [
            (s.target_user_id, s.target_key_id, s.signer_user_id, s.signer_key_id, s.signature)
            for s in signatures
        ]
        if not rows:
            return

        async def fn(txn: Txn) -> None:
            for row in rows:
                await txn.execute(
                    "INSERT INTO e2e_key_signatures"
                    " (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT"
                    " (target_user_id, target_key_id, signer_user_id, signer_key_id)"
                    " DO UPDATE SET signature = excluded.signature",
                    row,
                )

        await self.db.write(fn)

    async def signatures_on(self, target_user_id: str) -> list[CrossSigningSignature]:
        """Every stored signature on the user's keys (devices and cross-signing keys)."""
        rows = await self.db.fetchall(
            "SELECT target_key_id, signer_user_id, signer_key_id, signature FROM e2e_key_signatures"
            " WHERE target_user_id = ?",
            (target_user_id,),
        )
        return [CrossSigningSignature(target_user_id, str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    # --- removal ---

    @staticmethod
    async def delete_cross_signing_keys(txn: Txn, user_id: str) -> None:
        """Drop the user's cross-signing keys and the signatures they made, in the
        deactivation's transaction: a deactivated account vouches for nobody."""
        await txn.execute("DELETE FROM e2e_cross_signing_keys WHERE user_id = ?", (user_id,))
        await txn.execute("DELETE FROM e2e_key_signatures WHERE signer_user_id = ?", (user_id,))

    @staticmethod
    async def delete_device_keys(txn: Txn, user_id: str, device_ids: list[str] | None) -> None:
        """Drop devices' keys of every kind (None: all the user's devices), in the
        transaction that deletes the devices."""
        tables = ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys")
        if device_ids is None:
            for table in tables:
                await txn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
            await txn.execute("DELETE FROM e2e_key_signatures WHERE target_user_id = ?", (user_id,))
            return
        for device_id in device_ids:
            for table in tables:
                await txn.execute(
                    f"DELETE FROM {table} WHERE user_id = ? AND device_id = ?", (user_id, device_id)
                )
            await txn.execute(
                "DELETE FROM e2e_key_signatures WHERE target_user_id = ? AND target_key_id = ?",
                (user_id, device_id),
            )
