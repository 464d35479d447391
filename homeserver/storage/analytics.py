"""Daily rollups for the console's analytics, and the federation destinations' state.

Every figure is kept as it happens (added to a day's row), so reading a chart costs a
read of (days x metrics) rows, never a scan of events.
"""

from __future__ import annotations

from collections.abc import Iterable

from homeserver.records.analytics import DestinationRecord
from homeserver.storage.database import Database, Txn

_ADD = (
    "INSERT INTO analytics_daily (day, metric, dim, value) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (day, metric, dim) DO UPDATE SET value = analytics_daily.value + excluded.value"
)
_SET = (
    "INSERT INTO analytics_daily (day, metric, dim, value) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (day, metric, dim) DO UPDATE SET value = excluded.value"
)
_DEST_COLUMNS = (
    "destination, last_success_ts, failure_ts, retry_last_ts, retry_interval_ms, failures,"
    " last_error, refusals, last_refusal_ts"
)


class AnalyticsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- inside the event writer's transaction ---

    @staticmethod
    async def add_in_txn(txn: Txn, day: int, counts: Iterable[tuple[str, str, int]]) -> None:
        await txn.executemany(_ADD, [(day, metric, dim, n) for metric, dim, n in counts])

    @staticmethod
    async def mark_active_in_txn(txn: Txn, day: int, user_id: str) -> None:
        await txn.execute(
            "INSERT INTO analytics_active_users (day, user_id) VALUES (?, ?)"
            " ON CONFLICT (day, user_id) DO NOTHING",
            (day, user_id),
        )

    @staticmethod
    async def joined_users_in_txn(txn: Txn, room_nid: int) -> list[str]:
        rows = await txn.fetchall(
            "SELECT user_id FROM memberships WHERE room_nid = ? AND membership = 'join'", (room_nid,)
        )
        return [str(r[0]) for r in rows]

    # --- on their own ---

    async def add(self, day: int, counts: Iterable[tuple[str, str, int]]) -> None:
        rows = [(day, metric, dim, n) for metric, dim, n in counts]
        if rows:
            await self.db.write(lambda txn: txn.executemany(_ADD, rows))

    async def set_gauge(self, day: int, metric: str, value: int) -> None:
        await self.db.execute(_SET, (day, metric, "", value))

    async def daily(self, first_day: int, last_day: int) -> list[tuple[int, str, str, int]]:
        rows = await self.db.fetchall(
            "SELECT day, metric, dim, value FROM analytics_daily WHERE day >= ? AND day <= ?"
            " ORDER BY day, metric, dim",
            (first_day, last_day),
        )
        return [(int(d), m, k, int(v)) for d, m, k, v in rows]

    async def gauge_before(self, day: int, metric: str) -> int | None:
        """The gauge's latest value recorded before `day` (carried into a range)."""
        row = await self.db.fetchone(
            "SELECT value FROM analytics_daily WHERE metric = ? AND dim = '' AND day < ?"
            " ORDER BY day DESC LIMIT 1",
            (metric, day),
        )
        return int(row[0]) if row else None

    async def active_users(self, first_day: int, last_day: int) -> dict[int, int]:
        rows = await self.db.fetchall(
            "SELECT day, COUNT(*) FROM analytics_active_users WHERE day >= ? AND day <= ? GROUP BY day",
            (first_day, last_day),
        )
        return {int(d): int(n) for d, n in rows}

    # --- federation destinations ---

    async def save_destinations(self, records: Iterable[DestinationRecord]) -> None:
        rows = [
            (r.destination, r.last_success_ts, r.failure_ts, r.retry_last_ts, r.retry_interval_ms,
             r.failures, r.last_error, r.refusals, r.last_refusal_ts)
            for r in records
        ]
        if not rows:
            return
        await self.db.write(lambda txn: txn.executemany(
            f"INSERT INTO federation_destinations ({_DEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (destination) DO UPDATE SET last_success_ts = excluded.last_success_ts,"
            " failure_ts = excluded.failure_ts, retry_last_ts = excluded.retry_last_ts,"
            " retry_interval_ms = excluded.retry_interval_ms, failures = excluded.failures,"
            " last_error = excluded.last_error, refusals = excluded.refusals,"
            " last_refusal_ts = excluded.last_refusal_ts",
            rows,
        ))

    async def destinations(self) -> list[DestinationRecord]:
        rows = await self.db.fetchall(f"SELECT {_DEST_COLUMNS} FROM federation_destinations ORDER BY destination")
        return [DestinationRecord(*r) for r in rows]

    async def members_from(self, server_name: str) -> list[tuple[str, str, int]]:
        """(room ID, user ID, stream position of the join) of every user of `server_name`
        joined to a room here. A scan of the memberships (user IDs end with the server
        name, which no index serves): for admins' occasional look, not for hot paths."""
        rows = await self.db.fetchall(
            "SELECT r.room_id, m.user_id, m.stream_ordering FROM memberships m"
            " JOIN rooms r ON r.room_nid = m.room_nid"
            " WHERE m.membership = 'join' AND m.user_id LIKE ? ORDER BY r.room_id, m.user_id",
            ("%:" + server_name,),
        )
        # LIKE's `_` matches any character: keep exact domains only.
        return [(room, user, int(pos)) for room, user, pos in rows if user.split(":", 1)[1] == server_name]

    async def queue_depths(self) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT destination, COUNT(*) FROM federation_outbox GROUP BY destination"
        )
        return {d: int(n) for d, n in rows}
