"""One audit log entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
