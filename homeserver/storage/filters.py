"""Users' stored filters (the spec's POST/GET /user/{userId}/filter): the JSON as
uploaded, keyed by user and a per-server numeric ID, with the hash of the canonical
definition so the same filter uploaded again gets the ID it already has."""

from __future__ import annotations

from homeserver.storage.database import Database, Txn


class FilterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, user_id: str, filter_hash: str, filter_json: str) -> int:
        """The ID of this user's filter with this hash, storing it first if new."""

        async def fn(txn: Txn) -> int:
            await txn.execute(
                "INSERT INTO user_filters (user_id, filter_hash, filter_json) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, filter_hash) DO NOTHING",
                (user_id, filter_hash, filter_json),
            )
            row = await txn.fetchone(
                "SELECT filter_id FROM user_filters WHERE user_id = ? AND filter_hash = ?",
                (user_id, filter_hash),
            )
            assert row is not None
            return int(row[0])

        return await self.db.write(fn)

    async def get(self, user_id: str, filter_id: int) -> str | None:
        """The stored JSON of one of this user's filters, or None."""
        row = await self.db.fetchone(
            "SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?",
            (user_id, filter_id),
        )
        return str(row[0]) if row is not None else None
