"""Content reports: events and rooms users reported to the server's admins."""

from __future__ import annotations

from typing import Any

from homeserver.records.event_reports import EventReport
from homeserver.storage.database import Database

_COLUMNS = "id, received_ts, room_id, event_id, user_id, reason, score, sender"


def _report(row: tuple) -> EventReport:
    return EventReport(
        int(row[0]), int(row[1]), row[2], row[3], row[4], row[5],
        None if row[6] is None else int(row[6]), row[7],
    )


class EventReportStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_event_report(
        self, now_ms: int, room_id: str, event_id: str, user_id: str, reason: str | None,
        score: int | None, sender: str,
    ) -> int:
        async def fn(txn: Any) -> int:
            row = await txn.fetchone(
                "INSERT INTO event_reports (received_ts, room_id, event_id, user_id, reason, score,"
                " sender) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (now_ms, room_id, event_id, user_id, reason, score, sender),
            )
            return int(row[0])

        return await self.db.write(fn)

    async def add_room_report(self, now_ms: int, room_id: str, user_id: str, reason: str) -> int:
        async def fn(txn: Any) -> int:
            row = await txn.fetchone(
                "INSERT INTO room_reports (received_ts, room_id, user_id, reason)"
                " VALUES (?, ?, ?, ?) RETURNING id",
                (now_ms, room_id, user_id, reason),
            )
            return int(row[0])

        return await self.db.write(fn)

    async def get(self, report_id: int) -> EventReport | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM event_reports WHERE id = ?", (report_id,))
        return _report(row) if row else None

    async def delete(self, report_id: int) -> bool:
        return await self.db.execute("DELETE FROM event_reports WHERE id = ?", (report_id,)) > 0

    async def page(
        self,
        *,
        offset: int,
        limit: int,
        newest_first: bool,
        user_id: str | None = None,
        room_id: str | None = None,
        event_sender: str | None = None,
    ) -> tuple[list[EventReport], int]:
        """One page of reports in id order, and how many match the filters in all."""
        clauses: list[str] = []
        args: list[Any] = []
        # Substring filters, as the admin tools expect (a partial ID finds the report).
        for column, value in (("user_id", user_id), ("room_id", room_id), ("sender", event_sender)):
            if value is not None:
                clauses.append(f"instr({column}, ?) > 0" if self.db.engine == "sqlite"
                               else f"strpos({column}, ?) > 0")
                args.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        total_row = await self.db.fetchone(f"SELECT count(*) FROM event_reports{where}", args)
        order = "DESC" if newest_first else "ASC"
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM event_reports{where} ORDER BY id {order} LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [_report(r) for r in rows], int(total_row[0]) if total_row else 0
