"""A user's report of an event or room."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventReport:
    id: int
    received_ts: int
    room_id: str
    event_id: str
    user_id: str
    reason: str | None
    score: int | None
    sender: str
