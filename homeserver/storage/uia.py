"""User-interactive authentication sessions.

Kept in the database rather than memory so a session survives a restart and
works when several processes share one PostgreSQL.
"""

from __future__ import annotations

import orjson

from homeserver.storage.database import Database, Txn


class UiaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, session_id: str, now_ms: int, uri: str, method: str, params: dict) -> None:
        await self.db.execute(
            "INSERT INTO uia_sessions (session_id, created_ts, uri, method, completed, params)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, now_ms, uri, method, "{}", orjson.dumps(params).decode()),
        )

    async def get(self, session_id: str) -> tuple[int, str, str, dict, dict] | None:
        """(created_ts, uri, method, completed stages, params)."""
        row = await self.db.fetchone(
            "SELECT created_ts, uri, method, completed, params FROM uia_sessions"
            " WHERE session_id = ?",
            (session_id,),
        )
        if row is None:
            return None
        return int(row[0]), row[1], row[2], orjson.loads(row[3]), orjson.loads(row[4])

    async def set_completed(self, session_id: str, completed: dict) -> None:
        await self.db.execute(
            "UPDATE uia_sessions SET completed = ? WHERE session_id = ?",
            (orjson.dumps(completed).decode(), session_id),
        )

    async def set_params(self, session_id: str, params: dict) -> None:
        await self.db.execute(
            "UPDATE uia_sessions SET params = ? WHERE session_id = ?",
            (orjson.dumps(params).decode(), session_id),
        )

    @staticmethod
    async def mark_done_in(txn: Txn, session_id: str, extra_params: dict, completed_updates: dict) -> None:
        """Inside a caller's transaction: add to the session's params and completed
        stages (a registration records the account it made, for retries)."""
        row = await txn.fetchone(
            "SELECT params, completed FROM uia_sessions WHERE session_id = ?", (session_id,)
        )
        if row is None:
            return
        params = {**orjson.loads(row[0]), **extra_params}
        completed = {**orjson.loads(row[1]), **completed_updates}
        await txn.execute(
            "UPDATE uia_sessions SET params = ?, completed = ? WHERE session_id = ?",
            (orjson.dumps(params).decode(), orjson.dumps(completed).decode(), session_id),
        )

    async def delete(self, session_id: str) -> None:
        await self.db.execute("DELETE FROM uia_sessions WHERE session_id = ?", (session_id,))

    @staticmethod
    async def delete_in(txn: Txn, session_id: str) -> None:
        """Delete inside a caller's transaction, so finishing the session and the
        operation it authorised commit (or fail) together."""
        await txn.execute("DELETE FROM uia_sessions WHERE session_id = ?", (session_id,))

    @staticmethod
    async def take_expired(txn: Txn, created_before_ms: int) -> list[dict]:
        """Delete sessions created before the cutoff; returns their completed stages so
        the caller can give back what they held (reserved registration tokens)."""
        rows = await txn.fetchall(
            "SELECT session_id, completed FROM uia_sessions WHERE created_ts < ?",
            (created_before_ms,),
        )
        for session_id, _ in rows:
            await txn.execute("DELETE FROM uia_sessions WHERE session_id = ?", (session_id,))
        return [orjson.loads(completed) for _, completed in rows]

    async def expire(self, before_ms: int) -> int:
        return await self.db.execute("DELETE FROM uia_sessions WHERE created_ts < ?", (before_ms,))
