"""What the admin API reads and writes about rooms: counts for listings, the blocklist,
and the purge that removes every row a room left in the database."""

from __future__ import annotations

from homeserver.records.admin_rooms import PurgeResult, RoomCounts
from homeserver.storage.database import Database, Txn
from homeserver.storage.rooms import _ROOM_COLUMNS, RoomRecord, _room

# Tables whose rows name a room but must outlive its purge: a block exists precisely
# to keep the room out afterwards, and the audit trail is never rewritten.
KEEP_ON_PURGE = frozenset({"blocked_rooms", "audit_log", "schema_version"})
# Deleted last, in this order: the other tables are found through them.
_ROOT_TABLES = ("state_snapshots", "events", "rooms")


class AdminRoomStore:
    def __init__(self, db: Database, server_name: str) -> None:
        self.db = db
        self.suffix = ":" + server_name
        self._blocked: set[str] | None = None  # loaded on first use; joins consult it

    async def all_rooms(self) -> list[RoomRecord]:
        rows = await self.db.fetchall(f"SELECT {_ROOM_COLUMNS} FROM rooms")
        return [_room(r) for r in rows]

    async def counts(self, room_nid: int | None = None) -> dict[int, RoomCounts]:
        """Joined, local joined, local devices in the room and state size, per room
        (every room, or one): three grouped reads whatever the number of rooms."""
        where, args = ("", ()) if room_nid is None else (" AND m.room_nid = ?", (room_nid,))
        local = f"substr(m.user_id, length(m.user_id) - {len(self.suffix) - 1}) = ?"
        rows = await self.db.fetchall(
            f"SELECT m.room_nid, count(*), sum(CASE WHEN {local} THEN 1 ELSE 0 END)"
            f" FROM memberships m WHERE m.membership = 'join'{where} GROUP BY m.room_nid",
            (self.suffix, *args),
        )
        members = {int(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}
        rows = await self.db.fetchall(
            "SELECT m.room_nid, count(*) FROM memberships m JOIN devices d ON d.user_id = m.user_id"
            f" WHERE m.membership = 'join'{where} GROUP BY m.room_nid",
            args,
        )
        devices = {int(r[0]): int(r[1]) for r in rows}
        cs_where, cs_args = ("", ()) if room_nid is None else (" WHERE room_nid = ?", (room_nid,))
        rows = await self.db.fetchall(
            f"SELECT room_nid, count(*) FROM current_state{cs_where} GROUP BY room_nid", cs_args
        )
        state = {int(r[0]): int(r[1]) for r in rows}
        out: dict[int, RoomCounts] = {}
        for nid in set(members) | set(devices) | set(state):
            joined, joined_local = members.get(nid, (0, 0))
            out[nid] = RoomCounts(joined, joined_local, devices.get(nid, 0), state.get(nid, 0))
        return out

    async def all_local_forgotten(self, room_nid: int) -> bool:
        """Whether every local user who was ever in the room has forgotten it."""
        local = f"substr(user_id, length(user_id) - {len(self.suffix) - 1}) = ?"
        row = await self.db.fetchone(
            f"SELECT count(*), sum(forgotten) FROM memberships WHERE room_nid = ? AND {local}",
            (room_nid, self.suffix),
        )
        return bool(row and int(row[0]) > 0 and int(row[1] or 0) == int(row[0]))

    # --- the blocklist ---

    async def _load_blocked(self) -> set[str]:
        if self._blocked is None:
            rows = await self.db.fetchall("SELECT room_id FROM blocked_rooms")
            self._blocked = {r[0] for r in rows}
        return self._blocked

    async def is_blocked(self, room_id: str) -> bool:
        return room_id in await self._load_blocked()

    async def blocked_by(self, room_id: str) -> str | None:
        row = await self.db.fetchone("SELECT user_id FROM blocked_rooms WHERE room_id = ?", (room_id,))
        return row[0] if row else None

    async def set_blocked(self, room_id: str, blocked: bool, by: str, now_ms: int) -> None:
        if blocked:
            await self.db.execute(
                "INSERT INTO blocked_rooms (room_id, user_id, ts) VALUES (?, ?, ?)"
                " ON CONFLICT (room_id) DO NOTHING",
                (room_id, by, now_ms),
            )
        else:
            await self.db.execute("DELETE FROM blocked_rooms WHERE room_id = ?", (room_id,))
        blocked_set = await self._load_blocked()
        if blocked:
            blocked_set.add(room_id)
        else:
            blocked_set.discard(room_id)

    # --- purge ---

    async def _columns(self) -> dict[str, set[str]]:
        """Every table and its columns, read from the engine's catalogue so tables added
        by later migrations are covered without this module knowing them."""
        if self.db.engine == "postgres":
            rows = await self.db.fetchall(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema()"
            )
            tables: dict[str, set[str]] = {}
            for t, c in rows:
                tables.setdefault(t, set()).add(c)
            return tables
        names = await self.db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        out = {}
        for (name,) in names:
            cols = await self.db.fetchall(f"PRAGMA table_info({name})")
            out[name] = {c[1] for c in cols}
        return out

    async def purge(self, room: RoomRecord) -> PurgeResult:
        """Delete every row that belongs to the room, in one transaction.

        A table belongs to rooms through the first of these columns it has: room_nid,
        room_id, snapshot_nid (a state snapshot of the room), event_nid or event_id (an
        event of the room). Tables in KEEP_ON_PURGE are left alone."""
        tables = await self._columns()
        nid = room.room_nid
        in_snapshots = "SELECT snapshot_nid FROM state_snapshots WHERE room_nid = ?"
        in_events_nid = "SELECT event_nid FROM events WHERE room_nid = ?"
        in_events_id = "SELECT event_id FROM events WHERE room_nid = ?"

        async def fn(txn: Txn) -> PurgeResult:
            result = PurgeResult()
            result.event_ids = [r[0] for r in await txn.fetchall(in_events_id, (nid,))]
            result.snapshot_nids = [int(r[0]) for r in await txn.fetchall(in_snapshots, (nid,))]
            result.members = [
                r[0] for r in await txn.fetchall("SELECT user_id FROM memberships WHERE room_nid = ?", (nid,))
            ]
            for table in sorted(tables):
                if table in KEEP_ON_PURGE or table in _ROOT_TABLES:
                    continue
                cols = tables[table]
                arg: int | str
                if "room_nid" in cols:
                    sql, arg = f"DELETE FROM {table} WHERE room_nid = ?", nid
                elif "room_id" in cols:
                    sql, arg = f"DELETE FROM {table} WHERE room_id = ?", room.room_id
                elif "snapshot_nid" in cols:
                    sql, arg = f"DELETE FROM {table} WHERE snapshot_nid IN ({in_snapshots})", nid
                elif "event_nid" in cols:
                    sql, arg = f"DELETE FROM {table} WHERE event_nid IN ({in_events_nid})", nid
                elif "event_id" in cols:
                    sql, arg = f"DELETE FROM {table} WHERE event_id IN ({in_events_id})", nid
                else:
                    continue
                result.tables[table] = await txn.execute(sql, (arg,))
            for table in _ROOT_TABLES:
                result.tables[table] = await txn.execute(f"DELETE FROM {table} WHERE room_nid = ?", (nid,))
            return result

        return await self.db.write(fn)
