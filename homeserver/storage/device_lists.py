"""The device-list stream (`device_list_changes`), and the membership questions
it is read with: who shares a room, or an encrypted room, with a user."""

from __future__ import annotations

from homeserver.storage.database import Database, Txn

_ENCRYPTED = (
    "EXISTS (SELECT 1 FROM current_state cs JOIN state_keys sk ON sk.state_key_nid = cs.state_key_nid"
    " WHERE cs.room_nid = {room} AND sk.event_type = 'm.room.encryption' AND sk.state_key = '')"
)


class DeviceListStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def max_position(self) -> int:
        row = await self.db.fetchone("SELECT COALESCE(MAX(stream_id), 0) FROM device_list_changes")
        return int(row[0]) if row else 0

    async def add(self, changes: list[tuple[int, str, str | None]]) -> None:
        """Append (position, user_id, room_id or None) rows."""

        async def fn(txn: Txn) -> None:
            await txn.executemany(
                "INSERT INTO device_list_changes (stream_id, user_id, room_id) VALUES (?, ?, ?)", changes
            )

        await self.db.write(fn)

    async def changes(self, after: int, upto: int, limit: int) -> list[tuple[str, str | None]]:
        """(user_id, room_id or None) of the rows in (after, upto], oldest first, at most `limit`."""
        rows = await self.db.fetchall(
            "SELECT user_id, room_id FROM device_list_changes WHERE stream_id > ? AND stream_id <= ?"
            " ORDER BY stream_id LIMIT ?",
            (after, upto, limit),
        )
        return [(r[0], r[1]) for r in rows]

    async def room_mates(self, user_id: str, *, encrypted_only: bool) -> set[str]:
        """Users joined to a room the user is joined to (encrypted rooms only, or any)."""
        sql = (
            "SELECT DISTINCT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_nid = m1.room_nid"
            " WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join'"
        )
        if encrypted_only:
            sql += " AND " + _ENCRYPTED.format(room="m1.room_nid")
        return {r[0] for r in await self.db.fetchall(sql, (user_id,))}

    async def encrypted_room_members(self, room_id: str) -> set[str] | None:
        """The users joined to the room, if it is encrypted (None if it is not)."""
        row = await self.db.fetchone(
            "SELECT r.room_nid, " + _ENCRYPTED.format(room="r.room_nid") + " FROM rooms r WHERE r.room_id = ?",
            (room_id,),
        )
        if row is None or not row[1]:
            return None
        rows = await self.db.fetchall(
            "SELECT user_id FROM memberships WHERE room_nid = ? AND membership = 'join'", (int(row[0]),)
        )
        return {r[0] for r in rows}
