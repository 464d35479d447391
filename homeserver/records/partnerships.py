"""A partnership with another organization's server, and a message to a peer about one."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# States of a partnership, and who asked first.
PENDING = "pending"
ACTIVE = "active"
DECLINED = "declined"
REVOKED = "revoked"
FAILED = "failed"  # our request never reached the peer
STATES = (PENDING, ACTIVE, DECLINED, REVOKED, FAILED)
INBOUND = "inbound"  # the peer asked us
OUTBOUND = "outbound"  # we asked the peer
DIRECTIONS = (INBOUND, OUTBOUND)


@dataclass(frozen=True)
class Delivery:
    """A message to a peer about one of our changes: PUT ``<verb>/<request_id>``."""

    server_name: str
    verb: str  # "respond" or "revoke"
    request_id: str
    body: dict[str, Any]
    created_ts: int
    seq: int = 0  # assigned when queued


@dataclass(frozen=True)
class Partnership:
    server_name: str
    state: str
    direction: str
    request_id: str
    alt_request_id: str | None
    organization: str | None  # the peer's organization name, as the peer gave it
    message: str | None
    requested_by: str | None  # our admin for an outbound request; None for inbound
    created_ts: int
    updated_ts: int
    updated_by: str | None

    def names(self, request_id: str) -> bool:
        """Whether `request_id` names this partnership (either side's request)."""
        return request_id in (self.request_id, self.alt_request_id)

    def evolve(self, **changes: Any) -> Partnership:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "server_name": self.server_name,
            "state": self.state,
            "direction": self.direction,
            "request_id": self.request_id,
            "organization": self.organization,
            "message": self.message,
            "requested_by": self.requested_by,
            "created_ts": self.created_ts,
            "updated_ts": self.updated_ts,
            "updated_by": self.updated_by,
        }
