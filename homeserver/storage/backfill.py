"""Backfill bookkeeping: per room, the backward extremities that every server in
the room lately said it has nothing older than (and when), so a client paging
back through a room's start does not ask the servers again and again."""

from __future__ import annotations

from homeserver.storage.database import Database


class BackfillStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def no_older_history(self, room_nid: int) -> tuple[str, int] | None:
        """(digest of the extremities, when) last recorded for the room, if any."""
        row = await self.db.fetchone(
            "SELECT extremities, found_ts FROM backfill_exhausted WHERE room_nid = ?", (room_nid,)
        )
        return (str(row[0]), int(row[1])) if row is not None else None

    async def record_no_older_history(self, room_nid: int, digest: str, now: int) -> None:
        await self.db.execute(
            "INSERT INTO backfill_exhausted (room_nid, extremities, found_ts) VALUES (?, ?, ?)"
            " ON CONFLICT (room_nid) DO UPDATE SET extremities = excluded.extremities,"
            " found_ts = excluded.found_ts",
            (room_nid, digest, now),
        )
