"""Account data: per-user JSON objects by type, global or for one room.

Every write records the account data stream position it was made at, so
/sync can ask for exactly what changed after a position.
"""

from __future__ import annotations

from typing import Any

import orjson

from homeserver.records.account_data import AccountDataEntry
from homeserver.storage.database import Database, Txn

GLOBAL = ""  # the room_id of global account data


class AccountDataStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
        return await self.db.read(lambda txn: self.get_in(txn, user_id, room_id, data_type))

    @staticmethod
    async def get_in(txn: Txn, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
        """`get` inside a caller's transaction (the event writer's push actions)."""
        row = await txn.fetchone(
            "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND data_type = ?",
            (user_id, room_id, data_type),
        )
        return orjson.loads(row[0]) if row else None

    @staticmethod
    async def users_with_global_in(txn: Txn, data_type: str) -> set[str]:
        """Users who have global account data of the type (inside a caller's transaction)."""
        rows = await txn.fetchall(
            "SELECT user_id FROM account_data WHERE room_id = ? AND data_type = ?", (GLOBAL, data_type)
        )
        return {r[0] for r in rows}

    async def global_of_type(self, data_type: str) -> list[tuple[str, dict[str, Any]]]:
        """(user, content) of every user's global account data of one type."""
        rows = await self.db.fetchall(
            "SELECT user_id, content FROM account_data WHERE room_id = ? AND data_type = ? ORDER BY user_id",
            (GLOBAL, data_type),
        )
        return [(r[0], orjson.loads(r[1])) for r in rows]

    async def put(self, user_id: str, room_id: str, data_type: str, content: dict[str, Any], stream_id: int) -> None:
        data = orjson.dumps(content).decode()

        async def fn(txn: Txn) -> None:
            await txn.execute(
                "INSERT INTO account_data (user_id, room_id, data_type, content, stream_id)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET"
                " content = excluded.content, stream_id = excluded.stream_id",
                (user_id, room_id, data_type, data, stream_id),
            )

        await self.db.write(fn)

    async def max_stream_id(self) -> int:
        row = await self.db.fetchone("SELECT COALESCE(MAX(stream_id), 0) FROM account_data")
        return int(row[0]) if row else 0

    async def changed(self, user_id: str, after: int, upto: int | None = None) -> list[AccountDataEntry]:
        """A user's account data changed in (after, upto], oldest change first."""
        sql = (
            "SELECT room_id, data_type, content, stream_id FROM account_data"
            " WHERE user_id = ? AND stream_id > ?"
        )
        args: list[Any] = [user_id, after]
        if upto is not None:
            sql += " AND stream_id <= ?"
            args.append(upto)
        rows = await self.db.fetchall(sql + " ORDER BY stream_id", args)
        return [AccountDataEntry(r[0], r[1], orjson.loads(r[2]), int(r[3])) for r in rows]

    async def changed_in_room(self, user_id: str, room_id: str, after: int) -> list[AccountDataEntry]:
        """A user's entries for one room (GLOBAL: the global ones) changed after `after`."""
        rows = await self.db.fetchall(
            "SELECT room_id, data_type, content, stream_id FROM account_data"
            " WHERE user_id = ? AND room_id = ? AND stream_id > ? ORDER BY stream_id",
            (user_id, room_id, after),
        )
        return [AccountDataEntry(r[0], r[1], orjson.loads(r[2]), int(r[3])) for r in rows]
