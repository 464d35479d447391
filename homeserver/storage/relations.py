"""The relations index: which timeline events relate to which (m.relates_to).

Rows are written and removed inside the event writer's transaction
(homeserver/relations/index.py), so they never disagree with the timeline.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

from homeserver.records.relations import Relation, ThreadRoot
from homeserver.storage.database import Database, Txn, in_chunks, marks

_COLUMNS = "event_id, room_nid, relates_to_id, rel_type, event_type, sender, stream_ordering"
THREAD = "m.thread"


def _unique_chunks(ids: Collection[str]) -> Iterator[list[str]]:
    """Each ID once, in a stable order, one IN (...) list's worth at a time."""
    return in_chunks(sorted(set(ids)))


def _relation(row: Sequence[Any]) -> Relation:
    return Relation(row[0], int(row[1]), row[2], row[3], row[4], row[5], int(row[6]))


class RelationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def add(txn: Txn, rel: Relation) -> None:
        await txn.execute(
            f"INSERT INTO event_relations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            (rel.event_id, rel.room_nid, rel.relates_to_id, rel.rel_type, rel.event_type, rel.sender,
             rel.stream_ordering),
        )

    async def unrelated_since(self) -> tuple[int, set[str]]:
        """(the highest event nid, the targets of relations whose target is not an
        event here): what `RelatedTargets` starts from."""

        async def fn(txn: Txn) -> tuple[int, set[str]]:
            row = await txn.fetchone("SELECT COALESCE(MAX(event_nid), 0) FROM events")
            rows = await txn.fetchall(
                "SELECT DISTINCT r.relates_to_id FROM event_relations r"
                " WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = r.relates_to_id)"
            )
            return int(row[0]) if row else 0, {str(r[0]) for r in rows}

        return await self.db.read(fn)

    @staticmethod
    async def remove(txn: Txn, event_id: str) -> None:
        await txn.execute("DELETE FROM event_relations WHERE event_id = ?", (event_id,))

    async def children(
        self,
        room_nid: int,
        parents: Collection[str],
        *,
        rel_type: str | None,
        event_type: str | None,
        from_pos: int | None,
        to_pos: int | None,
        backwards: bool,
        limit: int,
    ) -> list[Relation]:
        """Events relating to any of `parents`, by timeline position: (to, from]
        going back (newest first), (from, to] going forward."""
        where = ["room_nid = ?"]
        args: list[Any] = [room_nid]
        if rel_type is not None:
            where.append("rel_type = ?")
            args.append(rel_type)
        if event_type is not None:
            where.append("event_type = ?")
            args.append(event_type)
        lower, upper = (to_pos, from_pos) if backwards else (from_pos, to_pos)
        if lower is not None:
            where.append("stream_ordering > ?")
            args.append(lower)
        if upper is not None:
            where.append("stream_ordering <= ?")
            args.append(upper)
        order = "DESC" if backwards else "ASC"
        found: list[Relation] = []
        for chunk in _unique_chunks(parents):
            rows = await self.db.fetchall(
                f"SELECT {_COLUMNS} FROM event_relations WHERE {' AND '.join(where)}"
                f" AND relates_to_id IN ({marks(chunk)}) ORDER BY stream_ordering {order} LIMIT ?",
                (*args, *chunk, limit),
            )
            found.extend(_relation(r) for r in rows)
        found.sort(key=lambda r: r.stream_ordering, reverse=backwards)
        return found[:limit]

    async def of_types(self, room_nid: int, parents: Collection[str], rel_types: Sequence[str]) -> list[Relation]:
        """Every relation in the room of the given types to any of `parents` (edits,
        references), oldest first."""
        found: list[Relation] = []
        for chunk in _unique_chunks(parents):
            rows = await self.db.fetchall(
                f"SELECT {_COLUMNS} FROM event_relations WHERE room_nid = ? AND relates_to_id IN ({marks(chunk)})"
                f" AND rel_type IN ({marks(rel_types)}) ORDER BY stream_ordering",
                (room_nid, *chunk, *rel_types),
            )
            found.extend(_relation(r) for r in rows)
        found.sort(key=lambda r: r.stream_ordering)
        return found

    async def targets_among(self, event_ids: Collection[str]) -> set[str]:
        """Those of `event_ids` that at least one relation targets."""
        found: set[str] = set()
        for chunk in _unique_chunks(event_ids):
            rows = await self.db.fetchall(
                f"SELECT DISTINCT relates_to_id FROM event_relations WHERE relates_to_id IN ({marks(chunk)})",
                chunk,
            )
            found.update(str(r[0]) for r in rows)
        return found

    async def thread_summaries(
        self, room_nid: int, roots: Collection[str], user_id: str
    ) -> dict[str, tuple[int, str, bool]]:
        """Per thread root with replies in the room: (reply count, newest reply's
        event ID, whether `user_id` replied)."""
        out: dict[str, tuple[int, str, bool]] = {}
        for chunk in _unique_chunks(roots):
            rows = await self.db.fetchall(
                "SELECT r.relates_to_id, COUNT(*), SUM(CASE WHEN r.sender = ? THEN 1 ELSE 0 END),"
                " (SELECT l.event_id FROM event_relations l WHERE l.relates_to_id = r.relates_to_id"
                "  AND l.rel_type = r.rel_type AND l.room_nid = r.room_nid ORDER BY l.stream_ordering DESC LIMIT 1)"
                " FROM event_relations r WHERE r.room_nid = ? AND r.rel_type = ?"
                f" AND r.relates_to_id IN ({marks(chunk)})"
                " GROUP BY r.relates_to_id, r.rel_type, r.room_nid",
                (user_id, room_nid, THREAD, *chunk),
            )
            for r in rows:
                out[r[0]] = (int(r[1]), r[3], int(r[2] or 0) > 0)
        return out

    async def kinds(self, room_nid: int, parents: Collection[str]) -> dict[str, set[tuple[str, str]]]:
        """Per parent with relations in the room: its relations' (rel_type, sender) pairs."""
        out: dict[str, set[tuple[str, str]]] = {}
        for chunk in _unique_chunks(parents):
            rows = await self.db.fetchall(
                "SELECT DISTINCT relates_to_id, rel_type, sender FROM event_relations"
                f" WHERE room_nid = ? AND relates_to_id IN ({marks(chunk)})",
                (room_nid, *chunk),
            )
            for r in rows:
                out.setdefault(r[0], set()).add((r[1], r[2]))
        return out

    async def sent_by(self, room_nid: int, parent: str, rel_type: str, event_type: str, sender: str) -> list[Relation]:
        """The user's relations of one type and event type to one event (annotations)."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM event_relations WHERE relates_to_id = ? AND room_nid = ? AND rel_type = ?"
            " AND event_type = ? AND sender = ?",
            (parent, room_nid, rel_type, event_type, sender),
        )
        return [_relation(r) for r in rows]

    async def latest_thread_replies(self, room_nid: int, root_id: str, limit: int) -> list[Relation]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM event_relations WHERE room_nid = ? AND rel_type = ? AND relates_to_id = ?"
            " ORDER BY stream_ordering DESC LIMIT ?",
            (room_nid, THREAD, root_id, limit),
        )
        return [_relation(r) for r in rows]

    async def threads(
        self, room_nid: int, *, participant: str | None, before: int | None, limit: int
    ) -> list[ThreadRoot]:
        """The room's threads by latest reply, newest first, whose latest reply lies
        below `before`; with `participant`, only threads they replied in
        or whose root they sent."""
        having = "HAVING MAX(stream_ordering) < ?" if before is not None else ""
        args: list[Any] = [room_nid, THREAD]
        sub = ""
        if participant is not None:
            sub = (
                " AND (relates_to_id IN (SELECT p.relates_to_id FROM event_relations p"
                " WHERE p.room_nid = ? AND p.rel_type = ? AND p.sender = ?)"
                " OR EXISTS (SELECT 1 FROM events e WHERE e.event_id = relates_to_id AND e.sender = ?))"
            )
            args += [room_nid, THREAD, participant, participant]
        sql = (
            "SELECT relates_to_id, MAX(stream_ordering) FROM event_relations WHERE room_nid = ? AND rel_type = ?"
            f"{sub} GROUP BY relates_to_id {having} ORDER BY MAX(stream_ordering) DESC LIMIT ?"
        )
        if before is not None:
            args.append(before)
        args.append(limit)
        rows = await self.db.fetchall(sql, args)
        return [ThreadRoot(r[0], int(r[1])) for r in rows]
