"""User-interactive authentication sessions.

Kept in the database rather than memory so a session survives a restart and
works when several processes share one PostgreSQL.
"""

from __future__ import annotations

import orjson

from homeserver.storage.database import Database


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

    async def delete(self, session_id: str) -> None:
        await self.db.execute("DELETE FROM uia_sessions WHERE session_id = ?", (session_id,))

    async def expire(self, before_ms: int) -> int:
        return await self.db.execute("DELETE FROM uia_sessions WHERE created_ts < ?", (before_ms,))
