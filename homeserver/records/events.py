"""A persisted event with its place in the room and stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class StoredEvent:
    """Slotted: the event cache holds tens of thousands, and a slotted record takes
    about 110 bytes less than one with an attribute dict."""

    nid: int
    event_id: str
    room_nid: int
    stream_ordering: int | None
    state_before: int | None
    state_after: int | None
    outlier: bool
    rejected: str | None
    redacted_by: str | None
    txn_device: str | None
    txn_id: str | None
    event: dict[str, Any]

    @property
    def type(self) -> str:
        return self.event["type"]

    @property
    def state_key(self) -> str | None:
        return self.event.get("state_key")

    @property
    def sender(self) -> str:
        return self.event["sender"]
