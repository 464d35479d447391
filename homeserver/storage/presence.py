"""Each local user's last presence, so it survives a restart."""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.storage.database import Database, Txn

# (user_id, state, status_msg, last_active_ts, stream_id)
PresenceRow = tuple[str, str, str | None, int, int]


class PresenceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load_all(self) -> list[PresenceRow]:
        """Every stored presence, oldest stream position first."""
        rows = await self.db.fetchall(
            "SELECT user_id, state, status_msg, last_active_ts, stream_id FROM presence"
            " ORDER BY stream_id"
        )
        return [(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows]

    async def upsert_many(self, rows: Sequence[PresenceRow]) -> None:
        """Write these users' presence, in one transaction."""

        async def fn(txn: Txn) -> None:
            for row in rows:
                await txn.execute(
                    "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_id)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
                    " state = excluded.state, status_msg = excluded.status_msg,"
                    " last_active_ts = excluded.last_active_ts, stream_id = excluded.stream_id",
                    row,
                )

        await self.db.write(fn)
