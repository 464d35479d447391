"""Partnerships between this server and others, the request IDs peers have used,
what we still have to tell peers (deliveries), and the partner service's small
settings (the server notice room)."""

from __future__ import annotations

import builtins
from typing import Any

import orjson

from homeserver.records.partnerships import ACTIVE, Delivery, Partnership
from homeserver.storage.database import Database, Txn

_COLUMNS = (
    "server_name, state, direction, request_id, alt_request_id, organization, message,"
    " requested_by, created_ts, updated_ts, updated_by"
)


def _record(row: tuple[Any, ...]) -> Partnership:
    return Partnership(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], int(row[8]), int(row[9]), row[10]
    )


class PartnershipStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, server_name: str) -> Partnership | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM partnerships WHERE server_name = ?", (server_name,)
        )
        return _record(row) if row else None

    async def list(
        self, *, state: str | None = None, direction: str | None = None, limit: int = 1000
    ) -> list[Partnership]:
        """Most recently changed first."""
        clauses, args = [], []
        for column, value in (("state", state), ("direction", direction)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM partnerships{where} ORDER BY updated_ts DESC, server_name LIMIT ?",
            (*args, limit),
        )
        return [_record(r) for r in rows]

    async def active_servers(self) -> builtins.list[str]:  # `list` is a method here
        rows = await self.db.fetchall(
            "SELECT server_name FROM partnerships WHERE state = ?", (ACTIVE,)
        )
        return [r[0] for r in rows]

    async def save(
        self, p: Partnership, *, seen_request_id: str | None = None, deliver: Delivery | None = None
    ) -> None:
        """Write the partnership with its peer (replacing the previous one), and in
        the same transaction remember a request ID the peer used and queue the
        message that tells the peer (so the change is never kept untold)."""
        row = (
            p.server_name, p.state, p.direction, p.request_id, p.alt_request_id, p.organization,
            p.message, p.requested_by, p.created_ts, p.updated_ts, p.updated_by,
        )

        async def fn(txn: Txn) -> None:
            await txn.execute(
                f"INSERT INTO partnerships ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (server_name) DO UPDATE SET state = excluded.state,"
                " direction = excluded.direction, request_id = excluded.request_id,"
                " alt_request_id = excluded.alt_request_id, organization = excluded.organization,"
                " message = excluded.message, requested_by = excluded.requested_by,"
                " created_ts = excluded.created_ts, updated_ts = excluded.updated_ts,"
                " updated_by = excluded.updated_by",
                row,
            )
            if seen_request_id is not None:
                await txn.execute(
                    "INSERT INTO partnership_request_ids (server_name, request_id, received_ts)"
                    " VALUES (?, ?, ?) ON CONFLICT (server_name, request_id) DO NOTHING",
                    (p.server_name, seen_request_id, p.updated_ts),
                )
            if deliver is not None:
                await self._add_delivery(txn, deliver)

        await self.db.write(fn)

    # --- deliveries: what peers must still be told, in order ---

    @staticmethod
    async def _add_delivery(txn: Txn, d: Delivery) -> None:
        await txn.execute(
            "INSERT INTO partnership_deliveries (server_name, verb, request_id, body, created_ts)"
            " VALUES (?, ?, ?, ?, ?)",
            (d.server_name, d.verb, d.request_id, orjson.dumps(d.body).decode(), d.created_ts),
        )

    async def add_delivery(self, d: Delivery) -> None:
        async def fn(txn: Txn) -> None:
            await self._add_delivery(txn, d)

        await self.db.write(fn)

    async def next_delivery(self, server_name: str) -> Delivery | None:
        """The oldest message still to be delivered to the peer."""
        row = await self.db.fetchone(
            "SELECT seq, verb, request_id, body, created_ts FROM partnership_deliveries"
            " WHERE server_name = ? ORDER BY seq LIMIT 1",
            (server_name,),
        )
        if row is None:
            return None
        return Delivery(server_name, row[1], row[2], orjson.loads(row[3]), int(row[4]), int(row[0]))

    async def remove_delivery(self, seq: int) -> None:
        await self.db.execute("DELETE FROM partnership_deliveries WHERE seq = ?", (seq,))

    async def delivery_servers(self) -> builtins.list[str]:  # `list` is a method here
        rows = await self.db.fetchall("SELECT DISTINCT server_name FROM partnership_deliveries")
        return sorted(r[0] for r in rows)

    async def seen_request_id(self, server_name: str, request_id: str) -> bool:
        """Whether the peer already sent a request with this ID (a retry or a replay)."""
        row = await self.db.fetchone(
            "SELECT 1 FROM partnership_request_ids WHERE server_name = ? AND request_id = ?",
            (server_name, request_id),
        )
        return row is not None

    async def get_setting(self, name: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM partner_settings WHERE name = ?", (name,))
        return row[0] if row else None

    async def set_setting(self, name: str, value: str) -> None:
        await self.db.execute(
            "INSERT INTO partner_settings (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    async def local_admins(self) -> builtins.list[str]:  # `list` is a method here
        """Active, non-guest server admins: whom partnership notices go to. Read
        here rather than in the user store because only this topic needs it."""
        rows = await self.db.fetchall(
            "SELECT user_id FROM users WHERE admin = 1 AND deactivated = 0 AND is_guest = 0"
            " ORDER BY user_id"
        )
        return [r[0] for r in rows]
