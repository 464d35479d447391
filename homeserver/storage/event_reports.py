"""Content reports: events, rooms and users that users reported to the server's admins."""

from __future__ import annotations

from typing import Any

from homeserver.records.event_reports import EventReport, RoomReport, UserReport
from homeserver.storage.database import Database, marks

_COLUMNS = "id, received_ts, room_id, event_id, user_id, reason, score, sender"
#: kind -> (table, columns, record) of the reports that name no event
_KINDS: dict[str, tuple[str, str, type[RoomReport] | type[UserReport]]] = {
    "room": ("room_reports", "id, received_ts, room_id, user_id, reason", RoomReport),
    "user": ("user_reports", "id, received_ts, target_user_id, user_id, reason", UserReport),
}


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
        return await self._insert(
            "event_reports (received_ts, room_id, event_id, user_id, reason, score, sender)",
            (now_ms, room_id, event_id, user_id, reason, score, sender),
        )

    async def add_room_report(self, now_ms: int, room_id: str, user_id: str, reason: str) -> int:
        return await self._insert("room_reports (received_ts, room_id, user_id, reason)", (now_ms, room_id, user_id, reason))

    async def add_user_report(self, now_ms: int, target_user_id: str, user_id: str, reason: str) -> int:
        return await self._insert(
            "user_reports (received_ts, target_user_id, user_id, reason)", (now_ms, target_user_id, user_id, reason)
        )

    async def _insert(self, into: str, values: tuple[Any, ...]) -> int:
        async def fn(txn: Any) -> int:
            row = await txn.fetchone(f"INSERT INTO {into} VALUES ({marks(values)}) RETURNING id", values)
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
        """One page of event reports in id order, and how many match the filters in all."""
        rows, total = await self._page(
            "event_reports", _COLUMNS, offset, limit, newest_first,
            (("user_id", user_id), ("room_id", room_id), ("sender", event_sender)),
        )
        return [_report(r) for r in rows], total

    # --- room and user reports, by kind ---

    async def page_of(
        self, kind: str, *, offset: int, limit: int, newest_first: bool, filters: dict[str, str | None],
    ) -> tuple[list[RoomReport | UserReport], int]:
        """One page of a kind's reports; `filters` are substrings of the named columns."""
        table, columns, record = _KINDS[kind]
        assert set(filters) <= set(columns.split(", ")), filters  # names from code, never from requests
        rows, total = await self._page(table, columns, offset, limit, newest_first, tuple(filters.items()))
        return [record(int(r[0]), int(r[1]), r[2], r[3], r[4]) for r in rows], total

    async def get_of(self, kind: str, report_id: int) -> RoomReport | UserReport | None:
        table, columns, record = _KINDS[kind]
        r = await self.db.fetchone(f"SELECT {columns} FROM {table} WHERE id = ?", (report_id,))
        return record(int(r[0]), int(r[1]), r[2], r[3], r[4]) if r else None

    async def delete_of(self, kind: str, report_id: int) -> bool:
        return await self.db.execute(f"DELETE FROM {_KINDS[kind][0]} WHERE id = ?", (report_id,)) > 0

    async def _page(
        self, table: str, columns: str, offset: int, limit: int, newest_first: bool,
        filters: tuple[tuple[str, str | None], ...],
    ) -> tuple[list[tuple], int]:
        """One page of a report table in id order, and how many rows match in all."""
        clauses: list[str] = []
        args: list[Any] = []
        # Substring filters, as the admin tools expect (a partial ID finds the report).
        for column, value in filters:
            if value is not None:
                clauses.append(f"instr({column}, ?) > 0" if self.db.engine == "sqlite"
                               else f"strpos({column}, ?) > 0")
                args.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        total_row = await self.db.fetchone(f"SELECT count(*) FROM {table}{where}", args)
        order = "DESC" if newest_first else "ASC"
        rows = await self.db.fetchall(
            f"SELECT {columns} FROM {table}{where} ORDER BY id {order} LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return list(rows), int(total_row[0]) if total_row else 0
