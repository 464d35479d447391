"""Rooms: the room table, current state, memberships, forward extremities,
transaction IDs for idempotent sends, aliases and the published directory."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import orjson

from homeserver.records.rooms import RoomRecord, UserMembership
from homeserver.storage.database import Database, Txn, in_chunks, marks

_ROOM_COLUMNS = "room_nid, room_id, room_version, creator, federate, created_ts, published"


def _room(row: tuple) -> RoomRecord:
    return RoomRecord(int(row[0]), row[1], row[2], row[3], bool(row[4]), int(row[5]), bool(row[6]))


class RoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._rooms: dict[str, RoomRecord] = {}
        self._rooms_by_nid: dict[int, RoomRecord] = {}

    # --- rooms ---

    @staticmethod
    async def insert_room(
        txn: Txn, room_id: str, room_version: str, creator: str, federate: bool, now_ms: int
    ) -> int:
        row = await txn.fetchone(
            "INSERT INTO rooms (room_id, room_version, creator, federate, created_ts)"
            " VALUES (?, ?, ?, ?, ?) RETURNING room_nid",
            (room_id, room_version, creator, int(federate), now_ms),
        )
        assert row is not None
        return int(row[0])

    def _cache(self, room: RoomRecord) -> RoomRecord:
        self._rooms[room.room_id] = room
        self._rooms_by_nid[room.room_nid] = room
        return room

    async def get_room(self, room_id: str) -> RoomRecord | None:
        room = self._rooms.get(room_id)
        if room is not None:
            return room
        row = await self.db.fetchone(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE room_id = ?", (room_id,))
        return self._cache(_room(row)) if row else None

    async def get_room_by_nid(self, room_nid: int) -> RoomRecord | None:
        room = self._rooms_by_nid.get(room_nid)
        if room is not None:
            return room
        row = await self.db.fetchone(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE room_nid = ?", (room_nid,))
        return self._cache(_room(row)) if row else None

    async def rooms_by_nids(self, room_nids: Iterable[int]) -> dict[int, RoomRecord]:
        """Many rooms at once (those not cached in one statement per 500), by nid; unknown
        nids left out."""
        out: dict[int, RoomRecord] = {}
        missing = []
        for nid in room_nids:
            room = self._rooms_by_nid.get(nid)
            if room is not None:
                out[nid] = room
            else:
                missing.append(nid)
        for chunk in in_chunks(missing):
            rows = await self.db.fetchall(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE room_nid IN ({marks(chunk)})", chunk)
            for row in rows:
                room = self._cache(_room(row))
                out[room.room_nid] = room
        return out

    async def set_published(self, room_id: str, published: bool) -> None:
        await self.db.execute("UPDATE rooms SET published = ? WHERE room_id = ?", (int(published), room_id))
        self._rooms.pop(room_id, None)
        self._rooms_by_nid = {k: v for k, v in self._rooms_by_nid.items() if v.room_id != room_id}

    async def published_rooms(self) -> list[RoomRecord]:
        rows = await self.db.fetchall(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE published = 1")
        return [_room(r) for r in rows]

    # --- current state, extremities, memberships ---

    async def current_state(self, room_nid: int) -> dict[int, int]:
        rows = await self.db.fetchall(
            "SELECT state_key_nid, event_nid FROM current_state WHERE room_nid = ?", (room_nid,)
        )
        return {int(k): int(e) for k, e in rows}

    @staticmethod
    async def set_current_state(txn: Txn, room_nid: int, changes: dict[int, int | None]) -> None:
        for key_nid, event_nid in changes.items():
            if event_nid is None:
                await txn.execute(
                    "DELETE FROM current_state WHERE room_nid = ? AND state_key_nid = ?", (room_nid, key_nid)
                )
            else:
                await txn.execute(
                    "INSERT INTO current_state (room_nid, state_key_nid, event_nid) VALUES (?, ?, ?)"
                    " ON CONFLICT (room_nid, state_key_nid) DO UPDATE SET event_nid = excluded.event_nid",
                    (room_nid, key_nid, event_nid),
                )

    async def forward_extremities(self, room_nid: int) -> list[int]:
        rows = await self.db.fetchall(
            "SELECT event_nid FROM forward_extremities WHERE room_nid = ?", (room_nid,)
        )
        return [int(r[0]) for r in rows]

    async def heads_of_rooms(self, room_nids: Collection[int]) -> dict[int, tuple[list[int], int | None]]:
        """`forward_extremities` and `head_snapshot` of many rooms, in two statements per
        chunk of rooms (an initial sync's rooms, read before their computations)."""
        out: dict[int, tuple[list[int], int | None]] = {nid: ([], None) for nid in room_nids}
        for chunk in in_chunks(out):
            for r in await self.db.fetchall(
                f"SELECT room_nid, event_nid FROM forward_extremities WHERE room_nid IN ({marks(chunk)})", chunk
            ):
                out[int(r[0])][0].append(int(r[1]))
            for r in await self.db.fetchall(
                f"SELECT room_nid, snapshot_nid FROM room_heads WHERE room_nid IN ({marks(chunk)})", chunk
            ):
                out[int(r[0])] = (out[int(r[0])][0], int(r[1]))
        return out

    @staticmethod
    async def forward_extremities_in(txn: Txn, room_nid: int) -> list[int]:
        """`forward_extremities` inside a caller's transaction (the event writer's pipeline)."""
        rows = await txn.fetchall("SELECT event_nid FROM forward_extremities WHERE room_nid = ?", (room_nid,))
        return [int(r[0]) for r in rows]

    @staticmethod
    async def replace_forward_extremities(txn: Txn, room_nid: int, nids: list[int]) -> None:
        await txn.execute("DELETE FROM forward_extremities WHERE room_nid = ?", (room_nid,))
        for nid in nids:
            await txn.execute(
                "INSERT INTO forward_extremities (room_nid, event_nid) VALUES (?, ?)", (room_nid, nid)
            )

    # --- room heads: the resolved state of a room with several forward extremities ---

    async def head_snapshot(self, room_nid: int) -> int | None:
        row = await self.db.fetchone("SELECT snapshot_nid FROM room_heads WHERE room_nid = ?", (room_nid,))
        return int(row[0]) if row is not None else None

    @staticmethod
    async def set_head_snapshot(txn: Txn, room_nid: int, snapshot: int) -> None:
        await txn.execute(
            "INSERT INTO room_heads (room_nid, snapshot_nid) VALUES (?, ?) ON CONFLICT (room_nid)"
            " DO UPDATE SET snapshot_nid = excluded.snapshot_nid",
            (room_nid, snapshot),
        )

    @staticmethod
    async def clear_head_snapshot(txn: Txn, room_nid: int) -> None:
        """The room's state is again that of one event (its only extremity)."""
        await txn.execute("DELETE FROM room_heads WHERE room_nid = ?", (room_nid,))

    @staticmethod
    async def insert_room_if_absent(
        txn: Txn, room_id: str, room_version: str, creator: str, federate: bool, now_ms: int
    ) -> None:
        if await txn.fetchone("SELECT 1 FROM rooms WHERE room_id = ?", (room_id,)) is None:
            await RoomStore.insert_room(txn, room_id, room_version, creator, federate, now_ms)

    @staticmethod
    async def move_forward_extremity(txn: Txn, room_nid: int, old: int, new: int) -> None:
        """The room's one forward extremity `old` (as the caller checked in `txn`) becomes
        `new`, an event just written: one statement where `set_forward_extremities`
        takes two."""
        await txn.execute(
            "UPDATE forward_extremities SET event_nid = ? WHERE room_nid = ? AND event_nid = ?", (new, room_nid, old)
        )

    @staticmethod
    async def set_forward_extremities(txn: Txn, room_nid: int, remove: list[int], add: int) -> None:
        for nid in remove:
            await txn.execute(
                "DELETE FROM forward_extremities WHERE room_nid = ? AND event_nid = ?", (room_nid, nid)
            )
        await txn.execute(
            "INSERT INTO forward_extremities (room_nid, event_nid) VALUES (?, ?)"
            " ON CONFLICT (room_nid, event_nid) DO NOTHING",
            (room_nid, add),
        )

    @staticmethod
    async def set_membership(
        txn: Txn, room_nid: int, user_id: str, membership: str, event_nid: int, stream_ordering: int
    ) -> None:
        """Record a user's current membership. A forgotten room stays forgotten
        until the user joins, is invited or knocks (the spec's "Leaving rooms"):
        being banned after forgetting must not bring it back.

        A local user's joins are also kept as spans of stream positions
        (`local_member_spans`, migration v028): whom a room-wide push action at a
        position applies to. A join opens one, leaving closes it; a join that stays a
        join (a new display name) changes neither."""
        prev = await txn.fetchone(
            "SELECT membership FROM memberships WHERE room_nid = ? AND user_id = ?", (room_nid, user_id)
        )
        was_joined = prev is not None and prev[0] == "join"
        if membership == "join" and not was_joined:
            await txn.execute(
                "INSERT INTO local_member_spans (user_id, room_nid, joined_at, left_at)"
                " SELECT user_id, ?, ?, NULL FROM users WHERE user_id = ? ON CONFLICT DO NOTHING",
                (room_nid, stream_ordering, user_id),
            )
        elif membership != "join" and was_joined:
            await txn.execute(
                "UPDATE local_member_spans SET left_at = ? WHERE user_id = ? AND room_nid = ? AND left_at IS NULL",
                (stream_ordering, user_id, room_nid),
            )
        await txn.execute(
            "INSERT INTO memberships (room_nid, user_id, membership, event_nid, stream_ordering)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_nid, user_id) DO UPDATE SET"
            " membership = excluded.membership, event_nid = excluded.event_nid,"
            " stream_ordering = excluded.stream_ordering, forgotten = CASE WHEN"
            " excluded.membership IN ('join', 'invite', 'knock') THEN 0 ELSE memberships.forgotten END",
            (room_nid, user_id, membership, event_nid, stream_ordering),
        )

    async def rooms_for_user(self, user_id: str, memberships: tuple[str, ...] = ("join",)) -> list[tuple[str, str]]:
        """(room_id, membership) for the user's rooms in the given memberships."""
        rows = await self.db.fetchall(
            "SELECT r.room_id, m.membership FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid"
            f" WHERE m.user_id = ? AND m.membership IN ({marks(memberships)})"
            " AND m.forgotten = 0",
            (user_id, *memberships),
        )
        return [(r[0], r[1]) for r in rows]

    async def membership_of(self, room_nid: int, user_id: str) -> tuple[str, int, bool] | None:
        """(membership, event_nid, forgotten) of a user in a room."""
        row = await self.db.fetchone(
            "SELECT membership, event_nid, forgotten FROM memberships WHERE room_nid = ? AND user_id = ?",
            (room_nid, user_id),
        )
        return (row[0], int(row[1]), bool(row[2])) if row else None

    async def members(self, room_nid: int, membership: str | None = None) -> list[tuple[str, str, int]]:
        """(user_id, membership, event_nid) for a room's current members."""
        if membership is None:
            rows = await self.db.fetchall(
                "SELECT user_id, membership, event_nid FROM memberships WHERE room_nid = ?", (room_nid,)
            )
        else:
            rows = await self.db.fetchall(
                "SELECT user_id, membership, event_nid FROM memberships WHERE room_nid = ? AND membership = ?",
                (room_nid, membership),
            )
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def members_of_rooms(self, room_nids: Collection[int]) -> dict[int, list[tuple[str, str, int]]]:
        """`members` of many rooms, in one statement per 500 rooms (an initial sync's
        room summaries)."""
        out: dict[int, list[tuple[str, str, int]]] = {nid: [] for nid in room_nids}
        for chunk in in_chunks(out):
            rows = await self.db.fetchall(
                "SELECT room_nid, user_id, membership, event_nid FROM memberships"
                f" WHERE room_nid IN ({marks(chunk)})",
                chunk,
            )
            for r in rows:
                out[int(r[0])].append((r[1], r[2], int(r[3])))
        return out

    @staticmethod
    async def set_invite_state(txn: Txn, event_nid: int, stripped: list[dict[str, Any]]) -> None:
        """Keep the stripped state that came with an out-of-room membership event."""
        await txn.execute(
            "INSERT INTO invite_state (event_nid, stripped) VALUES (?, ?)"
            " ON CONFLICT (event_nid) DO UPDATE SET stripped = excluded.stripped",
            (event_nid, orjson.dumps(stripped).decode()),
        )

    async def invite_state(self, event_nid: int) -> list[dict[str, Any]] | None:
        row = await self.db.fetchone("SELECT stripped FROM invite_state WHERE event_nid = ?", (event_nid,))
        return orjson.loads(row[0]) if row else None

    async def forget(self, room_nid: int, user_id: str) -> None:
        await self.db.execute(
            "UPDATE memberships SET forgotten = 1 WHERE room_nid = ? AND user_id = ?", (room_nid, user_id)
        )

    # --- idempotent sends ---

    async def get_txn_event(self, user_id: str, device_id: str, scope: str, txn_id: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT event_id FROM event_txns"
            " WHERE user_id = ? AND device_id = ? AND scope = ? AND txn_id = ?",
            (user_id, device_id, scope, txn_id),
        )
        return row[0] if row else None

    @staticmethod
    async def insert_txn(
        txn: Txn, user_id: str, device_id: str, scope: str, txn_id: str, event_id: str, now_ms: int
    ) -> None:
        await txn.execute(
            "INSERT INTO event_txns (user_id, device_id, scope, txn_id, event_id, created_ts)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, device_id, scope, txn_id, event_id, now_ms),
        )

    # --- aliases ---

    async def get_alias(self, alias: str) -> tuple[str, str] | None:
        """(room_id, creator) of an alias."""
        row = await self.db.fetchone("SELECT room_id, creator FROM room_aliases WHERE alias = ?", (alias,))
        return (row[0], row[1]) if row else None

    async def create_alias(self, alias: str, room_id: str, creator: str, now_ms: int) -> bool:
        n = await self.db.execute(
            "INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (alias) DO NOTHING",
            (alias, room_id, creator, now_ms),
        )
        return n > 0

    async def delete_alias(self, alias: str) -> None:
        await self.db.execute("DELETE FROM room_aliases WHERE alias = ?", (alias,))

    async def aliases_for_room(self, room_id: str) -> list[str]:
        rows = await self.db.fetchall("SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY alias", (room_id,))
        return [r[0] for r in rows]

    async def move_aliases(self, old_room_id: str, new_room_id: str) -> None:
        """Point every alias of a room at its replacement (room upgrades); each alias
        keeps its creator, who may still delete it."""
        await self.db.execute("UPDATE room_aliases SET room_id = ? WHERE room_id = ?", (new_room_id, old_room_id))


class MembershipQueries:
    """Reads that /sync makes on every request, kept apart from RoomStore's writes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def joined_rooms_of(self, user_ids: Iterable[str]) -> dict[str, list[tuple[int, int]]]:
        """Each user's joined rooms (room nid, stream position of the join), for many
        users in one query per chunk (push badges)."""
        out: dict[str, list[tuple[int, int]]] = {}
        for chunk in in_chunks(user_ids):
            rows = await self.db.fetchall(
                "SELECT user_id, room_nid, stream_ordering FROM memberships"
                f" WHERE user_id IN ({marks(chunk)}) AND membership = 'join' AND forgotten = 0",
                chunk,
            )
            for r in rows:
                out.setdefault(r[0], []).append((int(r[1]), int(r[2])))
        return out

    async def memberships_for_user(self, user_id: str) -> list[UserMembership]:
        rows = await self.db.fetchall(
            "SELECT m.room_nid, r.room_id, r.room_version, m.membership, m.event_nid, m.stream_ordering"
            " FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid"
            " WHERE m.user_id = ? AND m.forgotten = 0",
            (user_id,),
        )
        return [
            UserMembership(int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows
        ]
