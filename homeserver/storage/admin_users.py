"""What the admin API reads and writes about accounts beyond what the client API needs:
paginated listing, reactivation, user types and per-user rate limit overrides."""

from __future__ import annotations

from typing import Any

from homeserver.records.users import USER_ORDER_BY, UserFilter, UserListing
from homeserver.storage.database import Database, Txn

# The admin API's order_by values (USER_ORDER_BY) -> SQL; "shadow_banned" is accepted but
# Accord has no shadow bans, so it sorts like the tie-breaker (user ID).
ORDER_COLUMNS: dict[str, str] = {
    "name": "u.user_id",
    "displayname": "p.displayname",
    "is_guest": "u.is_guest",
    "admin": "u.admin",
    "user_type": "u.user_type",
    "deactivated": "u.deactivated",
    "avatar_url": "p.avatar_url",
    "shadow_banned": "u.user_id",
    "creation_ts": "u.created_ts",
    "last_seen_ts": "last_seen_ts",
    "locked": "u.locked",
}
assert tuple(ORDER_COLUMNS) == USER_ORDER_BY


def like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with its own wildcards taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class AdminUserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_users(
        self, flt: UserFilter, *, order_by: str, backwards: bool, offset: int, limit: int
    ) -> tuple[list[UserListing], int]:
        """One page of local accounts and the number matching in all."""
        clauses: list[str] = []
        args: list[Any] = []
        if flt.name is not None:
            # Synapse matches the localpart or the display name.
            clauses.append(
                "(lower(substr(u.user_id, 2)) LIKE ? ESCAPE '\\' OR lower(p.displayname) LIKE ? ESCAPE '\\')"
            )
            args.extend((like_pattern(flt.name), like_pattern(flt.name)))
        elif flt.user_id is not None:
            clauses.append("lower(u.user_id) LIKE ? ESCAPE '\\'")
            args.append(like_pattern(flt.user_id))
        if not flt.guests:
            clauses.append("u.is_guest = 0")
        if not flt.deactivated:
            clauses.append("u.deactivated = 0")
        if not flt.locked:
            clauses.append("u.locked = 0")
        if flt.admins is not None:
            clauses.append("u.admin = ?")
            args.append(int(flt.admins))
        for t in flt.not_user_types:
            if t == "":  # "" excludes users without a type
                clauses.append("u.user_type IS NOT NULL")
            else:
                clauses.append("(u.user_type IS NULL OR u.user_type <> ?)")
                args.append(t)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        base = " FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id"
        total = await self.db.fetchone(f"SELECT count(*){base}{where}", args)
        column = ORDER_COLUMNS[order_by]
        direction = "DESC" if backwards else "ASC"
        # NULLs first going forwards on both engines (they disagree by default).
        order = (
            f"CASE WHEN {column} IS NULL THEN 0 ELSE 1 END {direction}, {column} {direction},"
            f" u.user_id {direction}"
        )
        rows = await self.db.fetchall(
            "SELECT u.user_id, u.is_guest, u.admin, u.user_type, u.deactivated, u.locked,"
            " p.displayname, p.avatar_url, u.created_ts,"
            " (SELECT max(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen_ts"
            f"{base}{where} ORDER BY {order} LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        users = [
            UserListing(
                r[0], bool(r[1]), bool(r[2]), r[3], bool(r[4]), bool(r[5]), r[6], r[7], int(r[8]),
                None if r[9] is None else int(r[9]),
            )
            for r in rows
        ]
        return users, int(total[0]) if total else 0

    async def last_seen_ts(self, user_id: str) -> int | None:
        row = await self.db.fetchone(
            "SELECT max(last_seen_ts) FROM devices WHERE user_id = ?", (user_id,)
        )
        return None if row is None or row[0] is None else int(row[0])

    async def set_user_type(self, user_id: str, user_type: str | None) -> None:
        await self.db.execute("UPDATE users SET user_type = ? WHERE user_id = ?", (user_type, user_id))

    async def set_locked(self, user_id: str, locked: bool) -> None:
        await self.db.execute("UPDATE users SET locked = ? WHERE user_id = ?", (int(locked), user_id))

    async def reactivate(self, user_id: str, password_hash: str) -> None:
        await self.db.execute(
            "UPDATE users SET deactivated = 0, password_hash = ? WHERE user_id = ?",
            (password_hash, user_id),
        )

    # --- rate limit overrides ---

    async def get_override(self, user_id: str) -> tuple[int, int] | None:
        row = await self.db.fetchone(
            "SELECT messages_per_second, burst_count FROM ratelimit_overrides WHERE user_id = ?",
            (user_id,),
        )
        return (int(row[0]), int(row[1])) if row else None

    async def all_overrides(self) -> dict[str, tuple[int, int]]:
        rows = await self.db.fetchall(
            "SELECT user_id, messages_per_second, burst_count FROM ratelimit_overrides"
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    async def set_override(self, user_id: str, override: tuple[int, int] | None) -> None:
        """Store a non-zero override, or None to drop it; exemption (0/0) lives in
        users.ratelimit_exempt and is cleared or set here in the same transaction."""

        async def fn(txn: Txn) -> None:
            await txn.execute("DELETE FROM ratelimit_overrides WHERE user_id = ?", (user_id,))
            if override is not None and override != (0, 0):
                await txn.execute(
                    "INSERT INTO ratelimit_overrides (user_id, messages_per_second, burst_count)"
                    " VALUES (?, ?, ?)",
                    (user_id, override[0], override[1]),
                )
            await txn.execute(
                "UPDATE users SET ratelimit_exempt = ? WHERE user_id = ?",
                (int(override == (0, 0)), user_id),
            )

        await self.db.write(fn)

    # --- erasure ---

    async def is_erased(self, user_id: str) -> bool:
        return await self.db.fetchone("SELECT 1 FROM erased_users WHERE user_id = ?", (user_id,)) is not None

    async def set_erased(self, user_id: str, erased: bool, now_ms: int) -> None:
        if erased:
            await self.db.execute(
                "INSERT INTO erased_users (user_id, ts) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING",
                (user_id, now_ms),
            )
        else:
            await self.db.execute("DELETE FROM erased_users WHERE user_id = ?", (user_id,))
