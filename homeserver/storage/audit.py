"""The audit log table: append and query, newest first."""

from __future__ import annotations

from typing import Any

import orjson

from homeserver.records.audit import AuditEntry
from homeserver.storage.database import Database, Txn


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(
        self,
        ts: int,
        action: str,
        actor: str | None,
        target: str | None,
        ip: str | None,
        outcome: str,
        details: dict[str, Any],
    ) -> None:
        row = (ts, action, actor, target, ip, outcome, orjson.dumps(details).decode())

        async def fn(txn: Txn) -> None:
            await txn.execute(
                "INSERT INTO audit_log (ts, action, actor, target, ip, outcome, details)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )

        await self.db.write(fn)

    async def query(
        self,
        *,
        action: str | None,
        actor: str | None,
        target: str | None,
        since_ts: int | None,
        until_ts: int | None,
        before_id: int | None,
        limit: int,
    ) -> list[AuditEntry]:
        """Newest first. `action` matches exactly or as a prefix ending in '.'."""
        clauses: list[str] = []
        args: list[Any] = []
        if action is not None:
            if action.endswith("."):
                clauses.append("substr(action, 1, ?) = ?")
                args.extend((len(action), action))
            else:
                clauses.append("action = ?")
                args.append(action)
        for column, value in (("actor", actor), ("target", target)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if since_ts is not None:
            clauses.append("ts >= ?")
            args.append(since_ts)
        if until_ts is not None:
            clauses.append("ts <= ?")
            args.append(until_ts)
        if before_id is not None:
            clauses.append("id < ?")
            args.append(before_id)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self.db.fetchall(
            "SELECT id, ts, action, actor, target, ip, outcome, details FROM audit_log"
            f"{where} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [
            AuditEntry(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6], orjson.loads(r[7])) for r in rows
        ]
