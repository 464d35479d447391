"""Stored push actions: what each event's push rules said for the local users it
notifies, written in the event's own transaction (homeserver/push/actions.py).

Unread counts, highlight counts and GET /notifications read these rows; nothing
evaluates push rules at read time. Two kinds of row (migration v028):

- one room-wide row per event (`event_push_room`) for everyone whose answer is the
  rules' common evaluation: it applies to each local user joined at its position
  (`local_member_spans`: joined_at < position, not yet left), except its sender and
  users with a row of their own for the event;
- per-user rows (`event_push_actions`, one per user, room and position) for users
  evaluated one by one: notify = 1 is a notification of its own (its own actions),
  notify = 0 only hides the room-wide row from that user.

So a message to a room of 10,000 on the default rules writes one row, and a count
is still index ranges: the user's own rows, and for each of the user's spans in
the room the room's room-wide rows in range, each checked against one key lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
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
class EventNotifications:
    """Some events' notifications as stored (`rows_for_events`)."""

    users: list[tuple[int, str, bool, bool]]  # (position, user, highlight, notify): own rows and exceptions
    room_wide: list[tuple[int, str, bool]]  # (position, sender, highlight)


@dataclass(frozen=True)
class RoomContext:
    """What the rules of a room's members read, as of the writing transaction."""

    members: list[tuple[str, str, int]]  # (user_id, membership, membership event nid), join and invite
    power_levels_nid: int | None
    create_nid: int | None


_COLUMNS = "SELECT user_id, room_nid, stream_ordering, event_nid, thread_id, highlight, actions, ts"
_SELECT = _COLUMNS + " FROM event_push_actions"
# Whether room-wide row r applies to the user of span s: joined before its position
# and not left by then, not its sender, and no row of the user's own for the event.
_APPLIES = (
    "s.joined_at < r.stream_ordering AND (s.left_at IS NULL OR r.stream_ordering < s.left_at)"
    " AND r.sender <> s.user_id AND NOT EXISTS (SELECT 1 FROM event_push_actions x"
    " WHERE x.user_id = s.user_id AND x.room_nid = r.room_nid AND x.stream_ordering = r.stream_ordering)"
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
    async def membership_in(txn: Txn, room_nid: int, user_id: str) -> tuple[str, int] | None:
        """(membership, event nid) of one user in the room, as the transaction has it."""
        row = await txn.fetchone(
            "SELECT membership, event_nid FROM memberships WHERE room_nid = ? AND user_id = ?", (room_nid, user_id)
        )
        return (row[0], int(row[1])) if row else None

    @staticmethod
    async def joined_count_in(txn: Txn, room_nid: int) -> int:
        row = await txn.fetchone("SELECT COUNT(*) FROM memberships WHERE room_nid = ? AND membership = 'join'", (room_nid,))
        return int(row[0]) if row else 0

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
    async def add_event(
        txn: Txn, room_nid: int, stream_ordering: int, event_nid: int, thread_id: str, ts: int, *,
        sender: str, room_wide: tuple[bool, list[Any]] | None,
        groups: Iterable[tuple[Sequence[str], bool, list[Any]]], suppressed: Sequence[str] = (),
    ) -> EventNotifications:
        """One event's notifications in at most three statements (the send path of a
        big room): the room-wide row, when the common answer (highlight, actions)
        notifies; the per-user rows, each group (users, highlight, actions) with its
        actions encoded once; and the notify = 0 rows of `suppressed`, the members
        evaluated one by one whom the room-wide row must not reach. Per-user rows go
        in user order: both indexes that lead with the user are then walked once.
        Returns the rows as `rows_for_events` reads them (the event's position is new,
        so no row of it can be there already)."""
        wide: list[tuple[int, str, bool]] = []
        if room_wide is not None:
            highlight, actions = room_wide
            await txn.execute(
                "INSERT INTO event_push_room (room_nid, stream_ordering, event_nid, sender, thread_id, highlight,"
                " actions, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (room_nid, stream_ordering, event_nid, sender, thread_id, int(highlight),
                 orjson.dumps(actions).decode(), ts),
            )
            wide.append((stream_ordering, sender, bool(highlight)))
        args = []
        for users, highlight, actions in groups:
            encoded, flag = orjson.dumps(actions).decode(), int(highlight)
            args += [(u, room_nid, stream_ordering, event_nid, thread_id, flag, encoded, ts, 1) for u in users]
        args += [(u, room_nid, stream_ordering, event_nid, thread_id, 0, "[]", ts, 0) for u in suppressed]
        args.sort(key=itemgetter(0))
        if args:
            await txn.executemany(
                "INSERT INTO event_push_actions (user_id, room_nid, stream_ordering, event_nid, thread_id,"
                " highlight, actions, ts, notify) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                args,
            )
        return EventNotifications([(stream_ordering, a[0], bool(a[5]), bool(a[8])) for a in args], wide)

    @staticmethod
    async def remove_event(txn: Txn, event_id: str) -> list[str]:
        """Drop a redacted event's notifications, room-wide and per user; the users who
        had one (every local member the room-wide row applied to, too)."""
        row = await txn.fetchone("SELECT event_nid FROM events WHERE event_id = ?", (event_id,))
        if row is None:
            return []
        nid = row[0]
        own = await txn.fetchall("SELECT user_id, notify FROM event_push_actions WHERE event_nid = ?", (nid,))
        users = {u for u, notify in own if notify}
        wide = await txn.fetchone("SELECT room_nid, stream_ordering, sender FROM event_push_room WHERE event_nid = ?", (nid,))
        if wide is not None:
            excepted = {u for u, _ in own}
            members = await txn.fetchall(
                "SELECT user_id FROM local_member_spans WHERE room_nid = ? AND joined_at < ?"
                " AND (left_at IS NULL OR left_at > ?)",
                (wide[0], wide[1], wide[1]),
            )
            users.update(u for (u,) in members if u != wide[2] and u not in excepted)
            await txn.execute("DELETE FROM event_push_room WHERE event_nid = ?", (nid,))
        if own:
            await txn.execute("DELETE FROM event_push_actions WHERE event_nid = ?", (nid,))
        return sorted(users)

    # --- reads ---

    async def counts_for(self, user_id: str, room_nid: int, after: int, upto: int | None = None) -> tuple[int, int]:
        """(notifications, highlights) of the user in the room at stream positions in
        (after, upto] (upto None: everything written)."""
        found = await self._by_thread(user_id, room_nid, after, upto)
        return sum(n for n, _ in found.values()), sum(h for _, h in found.values())

    async def _by_thread(
        self, user_id: str, room_nid: int, after: int, upto: int | None, thread: str | None = None
    ) -> dict[str, tuple[int, int]]:
        """thread -> (notifications, highlights) of the user in the room in (after,
        upto], of one thread only when `thread` is given: the user's own rows and the
        room-wide rows of their spans in the room, in one statement."""
        own = wide = ""
        own_args: list[Any] = []
        wide_args: list[Any] = []
        if upto is not None:
            own += " AND stream_ordering <= ?"
            wide += " AND r.stream_ordering <= ?"
            own_args.append(upto)
            wide_args.append(upto)
        if thread is not None:
            own += " AND thread_id = ?"
            wide += " AND r.thread_id = ?"
            own_args.append(thread)
            wide_args.append(thread)
        rows = await self.db.fetchall(
            "SELECT thread_id, COUNT(*), COALESCE(SUM(highlight), 0) FROM ("
            " SELECT thread_id, highlight FROM event_push_actions"
            f" WHERE user_id = ? AND room_nid = ? AND stream_ordering > ? AND notify = 1{own}"
            " UNION ALL SELECT r.thread_id, r.highlight FROM local_member_spans s"
            f" JOIN event_push_room r ON r.room_nid = s.room_nid AND r.stream_ordering > ?{wide} AND {_APPLIES}"
            " WHERE s.user_id = ? AND s.room_nid = ? AND (s.left_at IS NULL OR s.left_at > ?)"
            ") c GROUP BY thread_id",
            [user_id, room_nid, after, *own_args, after, *wide_args, user_id, room_nid, after],
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    async def rows_for_events(self, event_nids: Sequence[int]) -> EventNotifications:
        """The notifications of these events, per user and room-wide: one read for all
        the readers of a room woken by them (sync/room_tallies.py), who then each
        decide whether a room-wide row applies to them. One read transaction (one hop
        to a reader connection, not two per chunk): the readers wait for it."""

        async def fn(txn: Txn) -> EventNotifications:
            out = EventNotifications([], [])
            for chunk in in_chunks(event_nids):
                rows = await txn.fetchall(
                    "SELECT stream_ordering, user_id, highlight, notify FROM event_push_actions"
                    f" WHERE event_nid IN ({marks(chunk)})",
                    chunk,
                )
                out.users.extend((int(r[0]), r[1], bool(r[2]), bool(r[3])) for r in rows)
                rows = await txn.fetchall(
                    f"SELECT stream_ordering, sender, highlight FROM event_push_room WHERE event_nid IN ({marks(chunk)})",
                    chunk,
                )
                out.room_wide.extend((int(r[0]), r[1], bool(r[2])) for r in rows)
            return out

        return await self.db.read(fn)

    async def counts_in_rooms(self, user_id: str, after: dict[int, int], upto: int) -> dict[int, tuple[int, int]]:
        """`counts_for` in many rooms, each from its own position (room nid -> after): the
        user's own rows, each room's range its own range of the primary key; and the
        room-wide rows, through the user's spans in each room (a key lookup) to each
        room's range of them. On SQLite one statement per chunk whose joins are taken in
        the order written (`CROSS JOIN`): left to itself, the planner walks all the user's
        rows (or spans) and tests each against every room, which costs milliseconds per
        chunk for a member of many rooms (an initial sync counts every room)."""
        found: dict[int, tuple[int, int]] = {}

        def add(rows: list[Row]) -> None:
            for nid, n, h in rows:
                was = found.get(int(nid), (0, 0))
                found[int(nid)] = (was[0] + int(n), was[1] + int(h))

        for chunk in in_chunks(after, 250):  # two parameters a room
            terms = [a for nid in chunk for a in (nid, after[nid])]
            starts_sql = ",".join(["(CAST(? AS BIGINT), CAST(? AS BIGINT))"] * len(chunk))
            if self.db.engine != "postgres":
                add(await self.db.fetchall(
                    f"WITH starts (room_nid, after) AS (VALUES {starts_sql})"
                    " SELECT a.room_nid, COUNT(*), COALESCE(SUM(a.highlight), 0) FROM starts t"
                    " CROSS JOIN event_push_actions a ON a.user_id = ? AND a.room_nid = t.room_nid"
                    " AND a.stream_ordering > t.after AND a.stream_ordering <= ? WHERE a.notify = 1"
                    " GROUP BY a.room_nid"
                    " UNION ALL"
                    " SELECT r.room_nid, COUNT(*), COALESCE(SUM(r.highlight), 0) FROM starts t"
                    " CROSS JOIN local_member_spans s"
                    " ON s.user_id = ? AND s.room_nid = t.room_nid AND (s.left_at IS NULL OR s.left_at > t.after)"
                    " CROSS JOIN event_push_room r ON r.room_nid = t.room_nid AND r.stream_ordering > t.after"
                    f" AND r.stream_ordering <= ? AND {_APPLIES} GROUP BY r.room_nid",
                    [*terms, user_id, upto, user_id, upto],
                ))
                continue
            add(await self.db.fetchall(
                "SELECT room_nid, COUNT(*), COALESCE(SUM(highlight), 0) FROM event_push_actions"
                " WHERE user_id = ? AND stream_ordering <= ? AND notify = 1 AND ("
                + " OR ".join(["(room_nid = ? AND stream_ordering > ?)"] * len(chunk))
                + ") GROUP BY room_nid",
                [user_id, upto, *terms],
            ))
            # PostgreSQL would apply each room's `after` as a join filter and read the
            # room's whole room-wide range; a lateral count per span makes it an index
            # range of the primary key.
            add(await self.db.fetchall(
                f"WITH starts (room_nid, after) AS (VALUES {starts_sql})"
                " SELECT s.room_nid, c.n, c.h FROM starts t JOIN local_member_spans s"
                " ON s.user_id = ? AND s.room_nid = t.room_nid AND (s.left_at IS NULL OR s.left_at > t.after)"
                " CROSS JOIN LATERAL (SELECT COUNT(*) AS n, COALESCE(SUM(r.highlight), 0) AS h"
                " FROM event_push_room r WHERE r.room_nid = t.room_nid AND r.stream_ordering > t.after"
                f" AND r.stream_ordering <= ? AND {_APPLIES}) c WHERE c.n > 0",
                [*terms, user_id, upto],
            ))
        return {nid: found.get(nid, (0, 0)) for nid in after}

    async def thread_counts(
        self, user_id: str, room_nid: int, after: int, upto: int, thread_starts: dict[str, int]
    ) -> dict[str, tuple[int, int]]:
        """thread ("main" or a root's event ID) -> (notifications, highlights) in
        (after, upto], each thread starting instead after its entry in `thread_starts`
        where that is further."""
        out = await self._by_thread(user_id, room_nid, after, upto)
        for thread, start in thread_starts.items():
            if thread in out and start > after:
                out[thread] = (await self._by_thread(user_id, room_nid, start, upto, thread)).get(thread, (0, 0))
        return out

    async def page(self, user_id: str, before: int | None, limit: int, only_highlight: bool) -> list[PushActionRow]:
        """The user's notifications, newest first, at positions below `before`."""
        sql = _SELECT + " WHERE user_id = ? AND notify = 1"
        args: list[Any] = [user_id]
        if before is not None:
            sql += " AND stream_ordering < ?"
            args.append(before)
        if only_highlight:
            sql += " AND highlight = 1"
        rows = await self.db.fetchall(sql + " ORDER BY stream_ordering DESC LIMIT ?", [*args, limit])
        found = [_from_row(r) for r in rows]
        spans = await self._spans(user_id, None, before)
        found += await self._room_wide(
            user_id, spans, (" AND r.stream_ordering < ?", [before]) if before is not None else ("", []),
            only_highlight, descending=True, limit=limit,
        )
        found.sort(key=lambda r: r.stream_ordering, reverse=True)
        return found[:limit]

    async def since(self, user_id: str, after: int, limit: int) -> list[PushActionRow]:
        """The user's notifications after a stream position, oldest first (e-mail pushers)."""
        rows = await self.db.fetchall(
            _SELECT + " WHERE user_id = ? AND stream_ordering > ? AND notify = 1 ORDER BY stream_ordering LIMIT ?",
            (user_id, after, limit),
        )
        found = [_from_row(r) for r in rows]
        spans = await self._spans(user_id, after, None)
        found += await self._room_wide(
            user_id, spans, (" AND r.stream_ordering > ?", [after]), False, descending=False, limit=limit
        )
        found.sort(key=lambda r: r.stream_ordering)
        return found[:limit]

    async def _spans(self, user_id: str, after: int | None, before: int | None) -> list[tuple[int, int, int | None]]:
        """The user's (room nid, joined at, left at) spans that may hold positions in
        (after, before)."""
        sql = "SELECT room_nid, joined_at, left_at FROM local_member_spans WHERE user_id = ?"
        args: list[Any] = [user_id]
        if after is not None:
            sql += " AND (left_at IS NULL OR left_at > ?)"
            args.append(after + 1)
        if before is not None:
            sql += " AND joined_at < ?"
            args.append(before - 1)
        return [(int(r[0]), int(r[1]), None if r[2] is None else int(r[2])) for r in await self.db.fetchall(sql, args)]

    async def _room_wide(
        self, user_id: str, spans: list[tuple[int, int, int | None]], bound: tuple[str, list[Any]],
        only_highlight: bool, *, descending: bool, limit: int,
    ) -> list[PushActionRow]:
        """The room-wide rows applying to the user in each of these spans within
        `bound`, at most `limit` per span from the end `descending` names: each span
        is one index range of its room, so the newest (or oldest) of many rooms are
        found without reading all of them. Spans go in chunks, one statement each."""
        order = "DESC" if descending else "ASC"
        extra = bound[0] + (" AND r.highlight = 1" if only_highlight else "")
        one = (
            f"SELECT * FROM (SELECT ? AS user_id, r.room_nid, r.stream_ordering, r.event_nid, r.thread_id,"
            " r.highlight, r.actions, r.ts FROM event_push_room r WHERE r.room_nid = ? AND r.stream_ordering > ?"
            f" AND (CAST(? AS BIGINT) IS NULL OR r.stream_ordering < ?){extra} AND r.sender <> ? AND NOT EXISTS"
            " (SELECT 1 FROM event_push_actions x WHERE x.user_id = ? AND x.room_nid = r.room_nid"
            f" AND x.stream_ordering = r.stream_ordering) ORDER BY r.stream_ordering {order} LIMIT ?) AS w"
        )
        out: list[PushActionRow] = []
        for chunk in in_chunks(spans, 50):
            args: list[Any] = []
            for room_nid, joined_at, left_at in chunk:
                args += [user_id, room_nid, joined_at, left_at, left_at, *bound[1], user_id, user_id, limit]
            rows = await self.db.fetchall(" UNION ALL ".join([one] * len(chunk)), args)
            out.extend(_from_row(r) for r in rows)
        return out

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
                " SELECT user_id, COUNT(*), COALESCE(SUM(highlight), 0) FROM ("
                " SELECT a.user_id, a.highlight FROM starts t JOIN event_push_actions a ON a.user_id = t.user_id"
                " AND a.room_nid = ? AND a.stream_ordering > t.after AND a.stream_ordering <= ? WHERE a.notify = 1"
                " UNION ALL SELECT s.user_id, r.highlight FROM starts t JOIN local_member_spans s"
                " ON s.user_id = t.user_id AND s.room_nid = ? AND (s.left_at IS NULL OR s.left_at > t.after)"
                " JOIN event_push_room r ON r.room_nid = s.room_nid AND r.stream_ordering > t.after"
                f" AND r.stream_ordering <= ? AND {_APPLIES}"
                ") c GROUP BY user_id",
                [*(v for pair in chunk for v in pair), room_nid, upto, room_nid, upto],
            )
            out.update({r[0]: (int(r[1]), int(r[2])) for r in rows})
        return out

    async def get_many(self, wanted: Iterable[tuple[str, int]]) -> dict[tuple[str, int], PushActionRow]:
        """The notifications of these (user, event nid) pairs, own or room-wide: what a
        round of queued pushes delivers, read at once."""
        pairs = set(wanted)
        users = sorted({u for u, _ in pairs})
        events = sorted({e for _, e in pairs})
        out: dict[tuple[str, int], PushActionRow] = {}
        excepted: set[tuple[str, int]] = set()
        for event_chunk in in_chunks(events):
            for user_chunk in in_chunks(users):
                rows = await self.db.fetchall(
                    _COLUMNS + f", notify FROM event_push_actions WHERE event_nid IN ({marks(event_chunk)})"
                    f" AND user_id IN ({marks(user_chunk)})",
                    [*event_chunk, *user_chunk],
                )
                for r in rows:
                    row = _from_row(r)
                    if (row.user_id, row.event_nid) in pairs:
                        excepted.add((row.user_id, row.event_nid))
                        if r[8]:
                            out[(row.user_id, row.event_nid)] = row
        rest = [(u, e) for u, e in pairs if (u, e) not in excepted]
        if not rest:
            return out
        wide: dict[int, tuple[str, PushActionRow]] = {}  # event nid -> (sender, row as the sender's)
        for chunk in in_chunks(sorted({e for _, e in rest})):
            rows = await self.db.fetchall(
                "SELECT sender, room_nid, stream_ordering, event_nid, thread_id, highlight, actions, ts"
                f" FROM event_push_room WHERE event_nid IN ({marks(chunk)})",
                chunk,
            )
            wide.update({int(r[3]): (r[0], _from_row(r)) for r in rows})
        rest = [(u, e) for u, e in rest if e in wide and wide[e][0] != u]
        spans: dict[tuple[str, int], list[tuple[int, int | None]]] = {}
        rooms = sorted({wide[e][1].room_nid for _, e in rest})
        for user_chunk in in_chunks(sorted({u for u, _ in rest})):
            for room_chunk in in_chunks(rooms):
                rows = await self.db.fetchall(
                    "SELECT user_id, room_nid, joined_at, left_at FROM local_member_spans"
                    f" WHERE user_id IN ({marks(user_chunk)}) AND room_nid IN ({marks(room_chunk)})",
                    [*user_chunk, *room_chunk],
                )
                for r in rows:
                    spans.setdefault((r[0], int(r[1])), []).append((int(r[2]), None if r[3] is None else int(r[3])))
        for user_id, event_nid in rest:
            row = wide[event_nid][1]
            if any(
                joined < row.stream_ordering and (left is None or row.stream_ordering < left)
                for joined, left in spans.get((user_id, row.room_nid), ())
            ):
                out[(user_id, event_nid)] = replace(row, user_id=user_id)
        return out

    async def get(self, user_id: str, event_nid: int) -> PushActionRow | None:
        """The user's notification for one event (what a queued push delivers)."""
        return (await self.get_many([(user_id, event_nid)])).get((user_id, event_nid))
