"""Stored push actions: what each event's push rules said for each local user it
notifies, written in the event's own transaction (homeserver/push/actions.py).

Unread counts, highlight counts and GET /notifications read these rows; nothing
evaluates push rules at read time. One row per (user, room, stream position):
only events that notify have a row, so a count is an index range count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson

from homeserver.storage.database import Database, Row, Txn, in_chunks, marks


@dataclass(frozen=True)
class PushActionRow:
    """One notification of one user, as stored."""

    user_id: str
    room_nid: int
    stream_ordering: int
    event_nid: int
    thread_id: str
    highlight: bool
    actions: list[Any]
    ts: int


@dataclass(frozen=True)
class RoomContext:
    """What the rules of a room's members read, as of the writing transaction."""

    members: list[tuple[str, str, int]]  # (user_id, membership, membership event nid), join and invite
    power_levels_nid: int | None
    create_nid: int | None


_SELECT = (
    "SELECT user_id, room_nid, stream_ordering, event_nid, thread_id, highlight, actions, ts"
    " FROM event_push_actions"
)


def _from_row(r: Row) -> PushActionRow:
    return PushActionRow(r[0], int(r[1]), int(r[2]), int(r[3]), r[4], bool(r[5]), orjson.loads(r[6]), int(r[7]))


class PushActionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- inside the event writer's transaction ---

    @staticmethod
    async def room_context(txn: Txn, room_nid: int) -> RoomContext:
        members = await txn.fetchall(
            "SELECT user_id, membership, event_nid FROM memberships"
            " WHERE room_nid = ? AND membership IN ('join', 'invite')",
            (room_nid,),
        )
        rows = await txn.fetchall(
            "SELECT k.event_type, c.event_nid FROM current_state c"
            " JOIN state_keys k ON k.state_key_nid = c.state_key_nid WHERE c.room_nid = ?"
            " AND k.event_type IN ('m.room.power_levels', 'm.room.create') AND k.state_key = ''",
            (room_nid,),
        )
        nids = {r[0]: int(r[1]) for r in rows}
        return RoomContext(
            [(r[0], r[1], int(r[2])) for r in members], nids.get("m.room.power_levels"), nids.get("m.room.create")
        )

    @staticmethod
    async def event_json(txn: Txn, nids: Sequence[int]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for chunk in in_chunks(nids):
            for r in await txn.fetchall(f"SELECT event_nid, json FROM events WHERE event_nid IN ({marks(chunk)})", chunk):
                out[int(r[0])] = orjson.loads(r[1])
        return out

    @staticmethod
    async def event_json_by_id(txn: Txn, event_id: str) -> dict[str, Any] | None:
        row = await txn.fetchone("SELECT json FROM events WHERE event_id = ?", (event_id,))
        return orjson.loads(row[0]) if row else None

    @staticmethod
    async def add_groups(
        txn: Txn, room_nid: int, stream_ordering: int, event_nid: int, thread_id: str, ts: int,
        groups: Iterable[tuple[Sequence[str], bool, list[Any]]],
    ) -> None:
        """One event's notifications in one statement (the send path of a big room):
        each group is (users, highlight, actions), the actions encoded once per group.
        Inserted in user order: both indexes that lead with the user are then walked
        once from end to end instead of at random (several times faster in a room of
        thousands, where every message adds a row per member)."""
        args = []
        for users, highlight, actions in groups:
            encoded, flag = orjson.dumps(actions).decode(), int(highlight)
            args += [(u, room_nid, stream_ordering, event_nid, thread_id, flag, encoded, ts) for u in users]
        args.sort(key=itemgetter(0))  # the members come sorted: little left to do
        if args:
            await txn.executemany(
                "INSERT INTO event_push_actions (user_id, room_nid, stream_ordering, event_nid, thread_id,"
                " highlight, actions, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                args,
            )

    @staticmethod
    async def remove_event(txn: Txn, event_id: str) -> list[str]:
        """Drop a redacted event's notifications; the users who had one."""
        row = await txn.fetchone("SELECT event_nid FROM events WHERE event_id = ?", (event_id,))
        if row is None:
            return []
        users = await txn.fetchall("SELECT user_id FROM event_push_actions WHERE event_nid = ?", (row[0],))
        if users:
            await txn.execute("DELETE FROM event_push_actions WHERE event_nid = ?", (row[0],))
        return [u[0] for u in users]

    # --- reads ---

    async def counts_for(self, user_id: str, room_nid: int, after: int, upto: int | None = None) -> tuple[int, int]:
        """(notifications, highlights) of the user in the room at stream positions in
        (after, upto] (upto None: everything written)."""
        sql = (
            "SELECT COUNT(*), COALESCE(SUM(highlight), 0) FROM event_push_actions"
            " WHERE user_id = ? AND room_nid = ? AND stream_ordering > ?"
        )
        args: list[Any] = [user_id, room_nid, after]
        if upto is not None:
            sql += " AND stream_ordering <= ?"
            args.append(upto)
        row = await self.db.fetchone(sql, args)
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def rows_for_events(self, event_nids: Sequence[int]) -> list[tuple[int, str, bool]]:
        """(stream position, user, highlight) of every notification of these events:
        one read for all the readers of a room woken by them (sync/unread.py)."""
        out: list[tuple[int, str, bool]] = []
        for chunk in in_chunks(event_nids):
            rows = await self.db.fetchall(
                "SELECT stream_ordering, user_id, highlight FROM event_push_actions"
                f" WHERE event_nid IN ({marks(chunk)})",
                chunk,
            )
            out.extend((int(r[0]), r[1], bool(r[2])) for r in rows)
        return out

    async def counts_in_rooms(self, user_id: str, after: dict[int, int], upto: int) -> dict[int, tuple[int, int]]:
        """`counts_for` in many rooms, each from its own position (room nid -> after), in
        one statement per chunk: each room's range is its own term of the primary key."""
        out: dict[int, tuple[int, int]] = dict.fromkeys(after, (0, 0))
        for chunk in in_chunks(after, 250):  # two parameters a room
            rows = await self.db.fetchall(
                "SELECT room_nid, COUNT(*), COALESCE(SUM(highlight), 0) FROM event_push_actions"
                " WHERE user_id = ? AND stream_ordering <= ? AND ("
                + " OR ".join(["(room_nid = ? AND stream_ordering > ?)"] * len(chunk))
                + ") GROUP BY room_nid",
                [user_id, upto, *(a for nid in chunk for a in (nid, after[nid]))],
            )
            for nid, n, h in rows:
                out[int(nid)] = (int(n), int(h))
        return out

    async def thread_counts(
        self, user_id: str, room_nid: int, after: int, upto: int, thread_starts: dict[str, int]
    ) -> dict[str, tuple[int, int]]:
        """thread ("main" or a root's event ID) -> (notifications, highlights) in
        (after, upto], each thread starting instead after its entry in `thread_starts`
        where that is further."""
        rows = await self.db.fetchall(
            "SELECT thread_id, COUNT(*), COALESCE(SUM(highlight), 0) FROM event_push_actions"
            " WHERE user_id = ? AND room_nid = ? AND stream_ordering > ? AND stream_ordering <= ?"
            " GROUP BY thread_id",
            (user_id, room_nid, after, upto),
        )
        out = {r[0]: (int(r[1]), int(r[2])) for r in rows}
        for thread, start in thread_starts.items():
            if thread in out and start > after:
                out[thread] = await self._thread_count(user_id, room_nid, thread, start, upto)
        return out

    async def _thread_count(self, user_id: str, room_nid: int, thread: str, after: int, upto: int) -> tuple[int, int]:
        row = await self.db.fetchone(
            "SELECT COUNT(*), COALESCE(SUM(highlight), 0) FROM event_push_actions"
            " WHERE user_id = ? AND room_nid = ? AND thread_id = ? AND stream_ordering > ? AND stream_ordering <= ?",
            (user_id, room_nid, thread, after, upto),
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def page(self, user_id: str, before: int | None, limit: int, only_highlight: bool) -> list[PushActionRow]:
        """The user's notifications, newest first, at positions below `before`."""
        sql = _SELECT + " WHERE user_id = ?"
        args: list[Any] = [user_id]
        if before is not None:
            sql += " AND stream_ordering < ?"
            args.append(before)
        if only_highlight:
            sql += " AND highlight = 1"
        rows = await self.db.fetchall(sql + " ORDER BY stream_ordering DESC LIMIT ?", [*args, limit])
        return [_from_row(r) for r in rows]

    async def since(self, user_id: str, after: int, limit: int) -> list[PushActionRow]:
        """The user's notifications after a stream position, oldest first (e-mail pushers)."""
        rows = await self.db.fetchall(
            _SELECT + " WHERE user_id = ? AND stream_ordering > ? ORDER BY stream_ordering LIMIT ?",
            (user_id, after, limit),
        )
        return [_from_row(r) for r in rows]

    async def counts_after(
        self, room_nid: int, starts: dict[str, int], upto: int
    ) -> dict[str, tuple[int, int]]:
        """(notifications, highlights) in one room for many users, each counted in
        (its own start, upto]: one query per chunk of users, instead of one per user
        (the badges of everyone a message to a big room notified)."""
        out: dict[str, tuple[int, int]] = {}
        for chunk in in_chunks(starts.items()):
            starts_sql = ",".join(["(?, CAST(? AS BIGINT))"] * len(chunk))
            rows = await self.db.fetchall(
                f"WITH starts (user_id, after) AS (VALUES {starts_sql})"
                " SELECT a.user_id, COUNT(*), COALESCE(SUM(a.highlight), 0)"
                " FROM starts s JOIN event_push_actions a ON a.user_id = s.user_id"
                " WHERE a.room_nid = ? AND a.stream_ordering > s.after AND a.stream_ordering <= ?"
                " GROUP BY a.user_id",
                [*(v for pair in chunk for v in pair), room_nid, upto],
            )
            out.update({r[0]: (int(r[1]), int(r[2])) for r in rows})
        return out

    async def get_many(self, wanted: Iterable[tuple[str, int]]) -> dict[tuple[str, int], PushActionRow]:
        """The stored rows of these (user, event nid) pairs: what a round of queued pushes
        delivers, read at once."""
        pairs = set(wanted)
        users = sorted({u for u, _ in pairs})
        events = sorted({e for _, e in pairs})
        out: dict[tuple[str, int], PushActionRow] = {}
        for event_chunk in in_chunks(events):
            for user_chunk in in_chunks(users):
                rows = await self.db.fetchall(
                    _SELECT + f" WHERE event_nid IN ({marks(event_chunk)}) AND user_id IN ({marks(user_chunk)})",
                    [*event_chunk, *user_chunk],
                )
                for r in rows:
                    row = _from_row(r)
                    if (row.user_id, row.event_nid) in pairs:
                        out[(row.user_id, row.event_nid)] = row
        return out

    async def get(self, user_id: str, event_nid: int) -> PushActionRow | None:
        """The user's notification for one event (what a queued push delivers)."""
        row = await self.db.fetchone(_SELECT + " WHERE user_id = ? AND event_nid = ?", (user_id, event_nid))
        return _from_row(row) if row is not None else None
