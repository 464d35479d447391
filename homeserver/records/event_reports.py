"""A user's report of an event, a room or another user."""

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


@dataclass(frozen=True)
class RoomReport:
    id: int
    received_ts: int
    room_id: str
    user_id: str
    reason: str


@dataclass(frozen=True)
class UserReport:
    id: int
    received_ts: int
    target_user_id: str
    user_id: str
    reason: str
