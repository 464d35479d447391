"""Pushers and their durable delivery queues (the tables of migration v025).

A queue row is written in the transaction of the event it notifies about
(homeserver/push/actions.py) and deleted once the push gateway accepted it, so
a notification survives a restart and is sent until acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from homeserver.records.pushers import Pusher, QueuedPush
from homeserver.storage.database import Database, Row, Txn, in_chunks, marks

_PUSHER_COLUMNS = (
    "pusher_nid, user_id, device_id, kind, app_id, pushkey, app_display_name, device_display_name,"
    " profile_tag, lang, data, created_ts"
)
_QUEUE_COLUMNS = "queue_nid, pusher_nid, event_nid, room_nid, attempts, next_attempt_ts, created_ts"


def _pusher(r: Row) -> Pusher:
    return Pusher(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], orjson.loads(r[10]), int(r[11]))


def _queued(r: Row) -> QueuedPush:
    return QueuedPush(int(r[0]), int(r[1]), None if r[2] is None else int(r[2]), int(r[3]), int(r[4]), int(r[5]),
                      int(r[6]))


class PusherStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- pushers ---

    async def for_user(self, user_id: str) -> list[Pusher]:
        rows = await self.db.fetchall(
            f"SELECT {_PUSHER_COLUMNS} FROM pushers WHERE user_id = ? ORDER BY pusher_nid", (user_id,)
        )
        return [_pusher(r) for r in rows]

    async def get(self, pusher_nid: int) -> Pusher | None:
        row = await self.db.fetchone(f"SELECT {_PUSHER_COLUMNS} FROM pushers WHERE pusher_nid = ?", (pusher_nid,))
        return _pusher(row) if row else None

    async def users_with_kind(self, kind: str) -> set[str]:
        rows = await self.db.fetchall("SELECT DISTINCT user_id FROM pushers WHERE kind = ?", (kind,))
        return {r[0] for r in rows}

    async def put(self, p: Pusher, *, replace_other_users: bool) -> list[str]:
        """Create or update the user's pusher for (app_id, pushkey); with
        `replace_other_users`, other users' pushers with that key go (append false).
        Returns those other users."""

        async def fn(txn: Txn) -> list[str]:
            others: list[str] = []
            if replace_other_users:
                rows = await txn.fetchall(
                    "SELECT pusher_nid, user_id FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id != ?",
                    (p.app_id, p.pushkey, p.user_id),
                )
                await self._delete_nids(txn, [int(r[0]) for r in rows])
                others = sorted({r[1] for r in rows})
            await txn.execute(
                "INSERT INTO pushers (user_id, device_id, kind, app_id, pushkey, app_display_name,"
                " device_display_name, profile_tag, lang, data, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET device_id = excluded.device_id,"
                " kind = excluded.kind, app_display_name = excluded.app_display_name,"
                " device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag,"
                " lang = excluded.lang, data = excluded.data, created_ts = excluded.created_ts",
                (p.user_id, p.device_id, p.kind, p.app_id, p.pushkey, p.app_display_name, p.device_display_name,
                 p.profile_tag, p.lang, orjson.dumps(p.data).decode(), p.created_ts),
            )
            return others

        return await self.db.write(fn)

    async def count_for_user(self, user_id: str) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM pushers WHERE user_id = ?", (user_id,))
        return int(row[0]) if row else 0

    async def delete(self, user_id: str, app_id: str, pushkey: str) -> None:
        async def fn(txn: Txn) -> None:
            rows = await txn.fetchall(
                "SELECT pusher_nid FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                (user_id, app_id, pushkey),
            )
            await self._delete_nids(txn, [int(r[0]) for r in rows])

        await self.db.write(fn)

    async def delete_nid(self, pusher_nid: int) -> None:
        await self.db.write(lambda txn: self._delete_nids(txn, [pusher_nid]))

    @staticmethod
    async def delete_for_devices(txn: Txn, user_id: str, device_ids: list[str] | None) -> None:
        """A deleted device's pushers go with it (None: all the user's devices)."""
        if device_ids is None:
            rows = await txn.fetchall("SELECT pusher_nid FROM pushers WHERE user_id = ?", (user_id,))
        else:
            if not device_ids:
                return
            rows = await txn.fetchall(
                f"SELECT pusher_nid FROM pushers WHERE user_id = ? AND device_id IN ({marks(device_ids)})",
                (user_id, *device_ids),
            )
        await PusherStore._delete_nids(txn, [int(r[0]) for r in rows])

    @staticmethod
    async def _delete_nids(txn: Txn, nids: list[int]) -> None:
        for nid in nids:
            await txn.execute("DELETE FROM push_queue WHERE pusher_nid = ?", (nid,))
            await txn.execute("DELETE FROM email_pusher_state WHERE pusher_nid = ?", (nid,))
            await txn.execute("DELETE FROM pushers WHERE pusher_nid = ?", (nid,))

    async def of_kind(self, kind: str) -> list[Pusher]:
        rows = await self.db.fetchall(f"SELECT {_PUSHER_COLUMNS} FROM pushers WHERE kind = ? ORDER BY pusher_nid", (kind,))
        return [_pusher(r) for r in rows]

    # --- e-mail pushers' progress ---

    async def mailed_upto(self, pusher_nid: int) -> int | None:
        row = await self.db.fetchone(
            "SELECT last_stream_ordering FROM email_pusher_state WHERE pusher_nid = ?", (pusher_nid,)
        )
        return int(row[0]) if row else None

    async def set_mailed_upto(self, pusher_nid: int, pos: int) -> None:
        await self.db.execute(
            "INSERT INTO email_pusher_state (pusher_nid, last_stream_ordering) VALUES (?, ?)"
            " ON CONFLICT (pusher_nid) DO UPDATE SET last_stream_ordering = excluded.last_stream_ordering",
            (pusher_nid, pos),
        )

    async def last_digest(self, user_id: str) -> int | None:
        row = await self.db.fetchone("SELECT last_sent_ts FROM email_digests WHERE user_id = ?", (user_id,))
        return int(row[0]) if row else None

    async def set_last_digest(self, user_id: str, ts: int) -> None:
        await self.db.execute(
            "INSERT INTO email_digests (user_id, last_sent_ts) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET last_sent_ts = excluded.last_sent_ts",
            (user_id, ts),
        )

    # --- the queue ---

    @staticmethod
    async def queue_in(txn: Txn, user_ids: Iterable[str], kind: str, event_nid: int, room_nid: int, now: int) -> list[int]:
        """Queue one event for every pusher of `kind` of these users, inside the
        event's transaction; the pushers' nids."""
        users = list(user_ids)
        if not users:
            return []
        rows = await txn.fetchall(
            f"SELECT pusher_nid FROM pushers WHERE kind = ? AND user_id IN ({marks(users)})",
            (kind, *users),
        )
        nids = [int(r[0]) for r in rows]
        await txn.executemany(
            "INSERT INTO push_queue (pusher_nid, event_nid, room_nid, created_ts, next_attempt_ts)"
            " VALUES (?, ?, ?, ?, 0)",
            [(n, event_nid, room_nid, now) for n in nids],
        )
        return nids

    async def queue_badge(self, pusher_nids: list[int], room_nid: int, now: int) -> None:
        """A badge-only update for each pusher, replacing one still waiting."""

        async def fn(txn: Txn) -> None:
            for nid in pusher_nids:
                await txn.execute("DELETE FROM push_queue WHERE pusher_nid = ? AND event_nid IS NULL", (nid,))
                await txn.execute(
                    "INSERT INTO push_queue (pusher_nid, event_nid, room_nid, created_ts, next_attempt_ts)"
                    " VALUES (?, NULL, ?, ?, 0)",
                    (nid, room_nid, now),
                )

        await self.db.write(fn)

    async def heads(self, pusher_nids: Iterable[int]) -> list[QueuedPush]:
        """The oldest waiting notification of each of these pushers, in one query per
        chunk (a message to a big room wakes a pusher per member at once)."""
        out: list[QueuedPush] = []
        for chunk in in_chunks(pusher_nids):
            rows = await self.db.fetchall(
                f"SELECT {_QUEUE_COLUMNS} FROM push_queue WHERE queue_nid IN (SELECT MIN(queue_nid)"
                f" FROM push_queue WHERE pusher_nid IN ({marks(chunk)}) GROUP BY pusher_nid)",
                chunk,
            )
            out.extend(_queued(r) for r in rows)
        return out

    async def settle(self, done: list[int], retries: list[tuple[int, int, int]]) -> None:
        """One transaction for a round of answers: the queue rows the gateways took (or
        that will never go) are deleted, and `retries` (queue nid, attempts, next
        attempt) are pushed back."""
        if not done and not retries:
            return

        async def fn(txn: Txn) -> None:
            for chunk in in_chunks(done):
                await txn.execute(f"DELETE FROM push_queue WHERE queue_nid IN ({marks(chunk)})", chunk)
            if retries:
                await txn.executemany(
                    "UPDATE push_queue SET attempts = ?, next_attempt_ts = ? WHERE queue_nid = ?",
                    [(attempts, at, nid) for nid, attempts, at in retries],
                )

        await self.db.write(fn)

    async def pushers_with_queue(self) -> list[int]:
        rows = await self.db.fetchall("SELECT DISTINCT pusher_nid FROM push_queue")
        return [int(r[0]) for r in rows]

    async def queue_length(self, pusher_nid: int) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM push_queue WHERE pusher_nid = ?", (pusher_nid,))
        return int(row[0]) if row else 0
