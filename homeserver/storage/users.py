"""Users and their profiles."""

from __future__ import annotations

from typing import Any

import orjson

from homeserver.records.users import UserRecord
from homeserver.storage.database import Database, Txn

_COLUMNS = (
    "user_id, password_hash, created_ts, admin, is_guest, user_type, deactivated, locked, "
    "ratelimit_exempt"
)


def _record(row: tuple) -> UserRecord:
    return UserRecord(
        row[0], row[1], int(row[2]), bool(row[3]), bool(row[4]), row[5], bool(row[6]),
        bool(row[7]), bool(row[8]),
    )


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def insert_user(
        txn: Txn,
        user_id: str,
        password_hash: str | None,
        now_ms: int,
        *,
        admin: bool = False,
        is_guest: bool = False,
        user_type: str | None = None,
        displayname: str | None = None,
    ) -> bool:
        """Insert inside a caller's transaction; False when the ID is taken."""
        # ON CONFLICT rather than catching the error: PostgreSQL aborts the whole
        # transaction on a constraint violation, SQLite does not.
        inserted = await txn.execute(
            "INSERT INTO users (user_id, password_hash, created_ts, admin, is_guest, user_type)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
            (user_id, password_hash, now_ms, int(admin), int(is_guest), user_type),
        )
        if inserted == 0:
            return False
        await txn.execute(
            "INSERT INTO profiles (user_id, displayname) VALUES (?, ?)", (user_id, displayname)
        )
        return True

    @staticmethod
    async def upgrade_guest(txn: Txn, user_id: str, password_hash: str | None) -> bool:
        """A guest becomes a full account (same user ID); False when it is not a guest."""
        changed = await txn.execute(
            "UPDATE users SET is_guest = 0, password_hash = ? WHERE user_id = ? AND is_guest = 1",
            (password_hash, user_id),
        )
        return changed > 0

    async def create_user(
        self, user_id: str, password_hash: str | None, now_ms: int, *, user_type: str | None,
        displayname: str | None,
    ) -> bool:
        """Insert in a transaction of its own; False when the ID is taken."""
        return await self.db.write(
            lambda txn: UserStore.insert_user(
                txn, user_id, password_hash, now_ms, user_type=user_type, displayname=displayname
            )
        )

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM users WHERE user_id = ?", (user_id,))
        return _record(row) if row else None

    async def get_user_case_insensitive(self, user_id: str) -> list[UserRecord]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM users WHERE lower(user_id) = lower(?)", (user_id,)
        )
        return [_record(r) for r in rows]

    async def is_taken(self, user_id: str) -> bool:
        row = await self.db.fetchone(
            "SELECT 1 FROM users WHERE lower(user_id) = lower(?)", (user_id,)
        )
        return row is not None

    async def count_guests(self) -> int:
        row = await self.db.fetchone("SELECT count(*) FROM users WHERE is_guest = 1")
        return int(row[0]) if row else 0

    async def set_password_hash(self, user_id: str, password_hash: str | None) -> None:
        await self.db.execute(
            "UPDATE users SET password_hash = ? WHERE user_id = ?", (password_hash, user_id)
        )

    async def set_admin(self, user_id: str, admin: bool) -> None:
        await self.db.execute("UPDATE users SET admin = ? WHERE user_id = ?", (int(admin), user_id))

    async def list_ratelimit_exempt(self) -> list[str]:
        rows = await self.db.fetchall("SELECT user_id FROM users WHERE ratelimit_exempt = 1")
        return [r[0] for r in rows]

    async def set_ratelimit_exempt(self, user_id: str, exempt: bool) -> None:
        await self.db.execute(
            "UPDATE users SET ratelimit_exempt = ? WHERE user_id = ?", (int(exempt), user_id)
        )

    @staticmethod
    async def mark_deactivated(txn: Txn, user_id: str) -> None:
        await txn.execute(
            "UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = ?", (user_id,)
        )
        await txn.execute(
            "UPDATE profiles SET displayname = NULL, avatar_url = NULL, fields = '{}' WHERE user_id = ?",
            (user_id,),
        )

    # --- profiles ---

    async def get_profile(self, user_id: str) -> tuple[str | None, str | None] | None:
        row = await self.db.fetchone(
            "SELECT displayname, avatar_url FROM profiles WHERE user_id = ?", (user_id,)
        )
        return (row[0], row[1]) if row else None

    async def get_full_profile(self, user_id: str) -> dict[str, Any] | None:
        """Every profile field (displayname, avatar_url and the v1.16 custom keys)."""
        row = await self.db.fetchone(
            "SELECT displayname, avatar_url, fields FROM profiles WHERE user_id = ?", (user_id,)
        )
        if row is None:
            return None
        profile: dict[str, Any] = orjson.loads(row[2]) if row[2] else {}
        if row[0] is not None:
            profile["displayname"] = row[0]
        if row[1] is not None:
            profile["avatar_url"] = row[1]
        return profile

    async def set_profile_field(self, user_id: str, key: str, value: Any, delete: bool = False) -> None:
        if key in ("displayname", "avatar_url"):
            await self.db.execute(
                f"UPDATE profiles SET {key} = ? WHERE user_id = ?",
                (None if delete else value, user_id),
            )
            return

        async def fn(txn: Txn) -> None:
            row = await txn.fetchone("SELECT fields FROM profiles WHERE user_id = ?", (user_id,))
            fields = orjson.loads(row[0]) if row and row[0] else {}
            if delete:
                fields.pop(key, None)
            else:
                fields[key] = value
            await txn.execute(
                "UPDATE profiles SET fields = ? WHERE user_id = ?",
                (orjson.dumps(fields).decode(), user_id),
            )

        await self.db.write(fn)
