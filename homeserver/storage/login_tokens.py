"""Login tokens by hash: made by a signed-in user, used once to sign in elsewhere."""

from __future__ import annotations

from homeserver.storage.database import Database, Txn


class LoginTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, token_hash: str, user_id: str, expires_ts: int, now_ms: int) -> None:
        """Store a new token, dropping the expired ones on the way."""

        async def fn(txn: Txn) -> None:
            await txn.execute("DELETE FROM login_tokens WHERE expires_ts <= ?", (now_ms,))
            await txn.execute(
                "INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)",
                (token_hash, user_id, expires_ts),
            )

        await self.db.write(fn)

    async def take(self, token_hash: str, now_ms: int) -> str | None:
        """The user of an unexpired token, deleting it: a token signs in once."""

        async def fn(txn: Txn) -> str | None:
            row = await txn.fetchone(
                "SELECT user_id, expires_ts FROM login_tokens WHERE token_hash = ?", (token_hash,)
            )
            if row is None:
                return None
            deleted = await txn.execute("DELETE FROM login_tokens WHERE token_hash = ?", (token_hash,))
            if deleted == 0 or int(row[1]) <= now_ms:
                return None
            return str(row[0])

        return await self.db.write(fn)
