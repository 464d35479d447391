"""The full-text index of room events (table event_search, migration v019).

Written only inside the event writer's transaction (homeserver/search/index.py),
so it never disagrees with the timeline. Queries are built from plain words only:
each word is quoted for FTS5 (SQLite) or passed to plainto_tsquery (PostgreSQL),
so nothing a user types is ever read as query syntax.
"""

from __future__ import annotations

from typing import Any

from homeserver.records.search import SearchHit, SearchQuery
from homeserver.storage.database import Database, IntegrityError, Txn, marks


def fts5_query(terms: tuple[str, ...]) -> str:
    """Every term as an FTS5 string (double quotes doubled), all required."""
    return " ".join('"' + t.replace('"', '""') + '"' for t in terms)


class SearchStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.postgres = db.engine == "postgres"

    async def index_event(self, txn: Txn, event_nid: int, text: str) -> None:
        if self.postgres:
            await txn.execute(
                "INSERT INTO event_search (event_nid, vector) VALUES (?, to_tsvector('english', ?))"
                " ON CONFLICT (event_nid) DO UPDATE SET vector = excluded.vector",
                (event_nid, text),
            )
            return
        # Almost every event indexed is new, so the insert is tried alone: FTS5 refuses a
        # rowid it holds (a constraint error that undoes nothing but the statement), and
        # only then is the old row (an event indexed again, or a purged event's nid
        # reused) replaced. A DELETE before every insert cost each send a statement.
        insert = "INSERT INTO event_search (rowid, value, event_nid) VALUES (?, ?, ?)"
        try:
            await txn.execute(insert, (event_nid, text, event_nid))
        except IntegrityError:
            await txn.execute("DELETE FROM event_search WHERE rowid = ?", (event_nid,))
            await txn.execute(insert, (event_nid, text, event_nid))

    async def unindex_event(self, txn: Txn, event_id: str) -> None:
        column = "event_nid" if self.postgres else "rowid"
        await txn.execute(
            f"DELETE FROM event_search WHERE {column} IN (SELECT event_nid FROM events WHERE event_id = ?)",
            (event_id,),
        )

    async def search(self, q: SearchQuery, limit: int) -> list[SearchHit]:
        """Matching timeline events in rooms the user is joined to, or left (up to their
        leaving) and did not forget, after `q.after` in the order asked."""
        args: list[Any] = []
        if self.postgres:
            matches = (
                "SELECT s.event_nid AS nid, ts_rank(s.vector, query) AS score"
                " FROM event_search s, plainto_tsquery('english', ?) query WHERE s.vector @@ query"
            )
            args.append(" ".join(q.terms))
        else:
            matches = (
                "SELECT rowid AS nid, -bm25(event_search) AS score FROM event_search"
                " WHERE event_search MATCH ?"
            )
            args.append(fts5_query(q.terms))
        where = [
            "e.stream_ordering IS NOT NULL",
            "e.redacted_by IS NULL",
            "ms.forgotten = 0",
            "(ms.membership = 'join' OR (ms.membership IN ('leave', 'ban')"
            " AND e.stream_ordering <= ms.stream_ordering))",
        ]
        args.append(q.user_id)

        def within(column: str, values: tuple[str, ...], negate: bool = False) -> None:
            where.append(f"{column} {'NOT IN' if negate else 'IN'} ({marks(values)})")
            args.extend(values)

        within("e.event_type", q.types)
        if q.room_ids is not None:
            within("r.room_id", q.room_ids or ("",))
        if q.not_room_ids:
            within("r.room_id", q.not_room_ids, negate=True)
        if q.senders is not None:
            within("e.sender", q.senders or ("",))
        if q.not_senders:
            within("e.sender", q.not_senders, negate=True)
        if q.order == "recent":
            order = "e.stream_ordering DESC"
            if q.after is not None:
                where.append("e.stream_ordering < ?")
                args.append(int(q.after[0]))
        else:
            order = "m.score DESC, m.nid DESC"
            if q.after is not None:
                where.append("(m.score < ? OR (m.score = ? AND m.nid < ?))")
                args.extend([q.after[0], q.after[0], q.after[1]])
        materialized = "" if self.postgres else "MATERIALIZED "
        sql = (
            f"WITH m AS {materialized}({matches})"
            " SELECT m.nid, m.score, e.stream_ordering FROM m"
            " JOIN events e ON e.event_nid = m.nid"
            " JOIN memberships ms ON ms.room_nid = e.room_nid AND ms.user_id = ?"
            " JOIN rooms r ON r.room_nid = e.room_nid"
            f" WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        )
        args.append(limit)
        rows = await self.db.fetchall(sql, args)
        return [SearchHit(int(r[0]), float(r[1]), int(r[2])) for r in rows]
