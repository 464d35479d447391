"""The audit log: who did what security-relevant thing, when, and from where.

Organizations must be able to answer "who changed this, and from which address"
after the fact, so every login (and failure), credential or device change,
admin action, partnership change and federation refusal is recorded here.
Records never hold secrets: details are scrubbed of anything that looks like a
password or token before they are stored, so a leaked audit export leaks no
credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from homeserver.storage.database import Database, Txn

if TYPE_CHECKING:
    from homeserver.clock import Clock

# Keys whose values are credentials in any request or response we might log.
_SECRET_MARKERS = ("password", "token", "secret", "mac", "key", "nonce")


def scrub(value: Any) -> Any:
    """A copy of `value` with every credential-like field replaced."""
    if isinstance(value, dict):
        return {
            k: ("<redacted>" if any(m in str(k).lower() for m in _SECRET_MARKERS) else scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: int
    action: str
    actor: str | None
    target: str | None
    ip: str | None
    outcome: str
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "ts": self.ts, "action": self.action, "actor": self.actor,
            "target": self.target, "ip": self.ip, "outcome": self.outcome, "details": self.details,
        }


class AuditLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def record(
        self,
        action: str,
        *,
        actor: str | None,
        target: str | None = None,
        ip: str | None = None,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append one entry. `action` is a dotted name (``login``, ``login.failed``,
        ``admin.user.deactivate``, ``partnership.accept``, ``federation.refused``);
        `outcome` is ``ok`` or ``refused``/``failed``."""
        row = (
            self.clock.time_ms(), action, actor, target, ip, outcome,
            orjson.dumps(scrub(details or {})).decode(),
        )

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
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        since_ts: int | None = None,
        until_ts: int | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first. `action` matches exactly or as a prefix ending in '.'
        (``admin.`` is every admin action); `before_id` pages backwards."""
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
