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

    def transaction_id_for(self, user_id: str | None, device_id: str | None) -> str | None:
        """The transaction ID the event was sent with, for the one device that sent it
        (None for every other reader). A device ID is unique only among its user's
        devices, so the sender is matched too: two users may both log in as `PHONE`."""
        if device_id is None or self.txn_id is None or self.txn_device != device_id:
            return None
        return self.txn_id if self.event.get("sender") == user_id else None
