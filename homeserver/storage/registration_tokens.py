"""Registration tokens (the spec's m.login.registration_token and the admin API)."""

from __future__ import annotations

from homeserver.storage.database import Database, Txn


class RegistrationTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> bool:
        async def fn(txn: Txn) -> bool:
            if await txn.fetchone("SELECT 1 FROM registration_tokens WHERE token = ?", (token,)):
                return False
            await txn.execute(
                "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (?, ?, ?)",
                (token, uses_allowed, expiry_time),
            )
            return True

        return await self.db.write(fn)

    async def get(self, token: str) -> tuple[int | None, int, int, int | None] | None:
        """(uses_allowed, pending, completed, expiry_time)."""
        row = await self.db.fetchone(
            "SELECT uses_allowed, pending, completed, expiry_time FROM registration_tokens"
            " WHERE token = ?",
            (token,),
        )
        return (row[0], int(row[1]), int(row[2]), row[3]) if row else None

    async def is_valid(self, token: str, now_ms: int) -> bool:
        info = await self.get(token)
        if info is None:
            return False
        uses_allowed, pending, completed, expiry = info
        if expiry is not None and expiry < now_ms:
            return False
        return uses_allowed is None or pending + completed < uses_allowed

    async def reserve(self, token: str, now_ms: int) -> bool:
        """Count a UIA stage that used the token, atomically against its use limit."""

        async def fn(txn: Txn) -> bool:
            n = await txn.execute(
                "UPDATE registration_tokens SET pending = pending + 1 WHERE token = ?"
                " AND (expiry_time IS NULL OR expiry_time >= ?)"
                " AND (uses_allowed IS NULL OR pending + completed < uses_allowed)",
                (token, now_ms),
            )
            return n > 0

        return await self.db.write(fn)

    @staticmethod
    async def complete(txn: Txn, token: str) -> None:
        await txn.execute(
            "UPDATE registration_tokens SET pending = pending - 1, completed = completed + 1"
            " WHERE token = ? AND pending > 0",
            (token,),
        )

    async def release(self, token: str) -> None:
        await self.db.write(lambda txn: RegistrationTokenStore.release_in(txn, token))

    @staticmethod
    async def release_in(txn: Txn, token: str) -> None:
        """Give back a use reserved by a registration that will never finish."""
        await txn.execute(
            "UPDATE registration_tokens SET pending = pending - 1 WHERE token = ? AND pending > 0",
            (token,),
        )

    # --- the admin API ---

    async def list_all(self) -> list[tuple[str, int | None, int, int, int | None]]:
        """(token, uses_allowed, pending, completed, expiry_time) of every token."""
        rows = await self.db.fetchall(
            "SELECT token, uses_allowed, pending, completed, expiry_time FROM registration_tokens"
            " ORDER BY token"
        )
        return [(r[0], r[1], int(r[2]), int(r[3]), r[4]) for r in rows]

    async def update(self, token: str, changes: dict[str, int | None]) -> bool:
        """Set uses_allowed and/or expiry_time; False when there is no such token."""
        assert set(changes) <= {"uses_allowed", "expiry_time"}
        if not changes:
            return await self.get(token) is not None
        assignments = ", ".join(f"{k} = ?" for k in changes)
        n = await self.db.execute(
            f"UPDATE registration_tokens SET {assignments} WHERE token = ?", (*changes.values(), token)
        )
        return n > 0

    async def delete(self, token: str) -> bool:
        return await self.db.execute("DELETE FROM registration_tokens WHERE token = ?", (token,)) > 0
