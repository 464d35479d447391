"""Read receipts.

A receipt is keyed by (room, user, type, thread); thread_id '' stands for an
unthreaded receipt. Every write that moves a receipt records the receipt stream
position it was made at, so /sync can ask for what changed after a position.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from homeserver.records.receipts import Receipt
from homeserver.storage.database import Database, Txn, in_chunks, marks

UNTHREADED = ""  # the thread_id column value of an unthreaded receipt
# Rooms per IN (...) list: well under SQLite's and asyncpg's parameter limits.
_CHUNK = 500


_COLUMNS = "room_id, user_id, receipt_type, thread_id, event_id, event_stream_ordering, ts, stream_id"


def _receipt(row: tuple[Any, ...]) -> Receipt:
    return Receipt(row[0], row[1], row[2], row[3], row[4], int(row[5]), int(row[6]), int(row[7]))


class ReceiptStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, receipt: Receipt) -> bool:
        """Store a receipt unless the user's receipt of that type and thread already
        points at the same or a later event; True if it was stored.

        The comparison happens inside the upsert, so two devices racing cannot
        move a receipt backwards whatever order their writes commit in.
        """

        async def fn(txn: Txn) -> int:
            return await txn.execute(
                f"INSERT INTO receipts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET"
                " event_id = excluded.event_id, event_stream_ordering = excluded.event_stream_ordering,"
                " ts = excluded.ts, stream_id = excluded.stream_id"
                " WHERE receipts.event_stream_ordering < excluded.event_stream_ordering",
                (
                    receipt.room_id, receipt.user_id, receipt.receipt_type, receipt.thread_id,
                    receipt.event_id, receipt.event_stream_ordering, receipt.ts, receipt.stream_id,
                ),
            )

        return await self.db.write(fn) > 0

    async def max_stream_id(self) -> int:
        row = await self.db.fetchone("SELECT COALESCE(MAX(stream_id), 0) FROM receipts")
        return int(row[0]) if row else 0

    async def room_positions(self) -> dict[str, int]:
        """Each room's latest receipt stream position (loaded once at start, so
        /sync can skip rooms with nothing new without a query)."""
        rows = await self.db.fetchall("SELECT room_id, MAX(stream_id) FROM receipts GROUP BY room_id")
        return {r[0]: int(r[1]) for r in rows}

    async def changed_in_rooms(self, room_ids: Collection[str], after: int, upto: int) -> list[Receipt]:
        """Receipts in the given rooms whose last change lies in (after, upto]."""
        found: list[Receipt] = []
        for chunk in in_chunks(room_ids):
            rows = await self.db.fetchall(
                f"SELECT {_COLUMNS} FROM receipts WHERE room_id IN ({marks(chunk)})"
                " AND stream_id > ? AND stream_id <= ? ORDER BY stream_id",
                (*chunk, after, upto),
            )
            found.extend(_receipt(r) for r in rows)
        return found

    async def receipts_of_events_or_user(self, room_id: str, event_ids: Collection[str], user_id: str) -> list[Receipt]:
        """A room's receipts on the given events, and the user's own receipts there."""
        ids = list(event_ids)[:_CHUNK]
        on_events = f" OR event_id IN ({marks(ids)})" if ids else ""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM receipts WHERE room_id = ? AND (user_id = ?{on_events}) ORDER BY stream_id",
            (room_id, user_id, *ids),
        )
        return [_receipt(r) for r in rows]

    async def users_receipts(self, room_id: str, user_ids: Collection[str]) -> list[Receipt]:
        """`user_receipts` of many users in one room, one query per chunk."""
        found: list[Receipt] = []
        for chunk in in_chunks(user_ids):
            rows = await self.db.fetchall(
                f"SELECT {_COLUMNS} FROM receipts WHERE room_id = ? AND user_id IN ({marks(chunk)})",
                (room_id, *chunk),
            )
            found.extend(_receipt(r) for r in rows)
        return found

    async def user_receipts_in_rooms(self, user_id: str, room_ids: Collection[str]) -> dict[str, list[Receipt]]:
        """`user_receipts` in many rooms, one statement per chunk of rooms."""
        out: dict[str, list[Receipt]] = {r: [] for r in room_ids}
        for chunk in in_chunks(out):
            rows = await self.db.fetchall(
                f"SELECT {_COLUMNS} FROM receipts WHERE user_id = ? AND room_id IN ({marks(chunk)})",
                (user_id, *chunk),
            )
            for r in rows:
                receipt = _receipt(r)
                out[receipt.room_id].append(receipt)
        return out

    async def user_receipts(self, room_id: str, user_id: str) -> list[Receipt]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM receipts WHERE room_id = ? AND user_id = ?", (room_id, user_id)
        )
        return [_receipt(r) for r in rows]
