"""A room, and one user's membership of it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoomRecord:
    room_nid: int
    room_id: str
    room_version: str
    creator: str
    federate: bool
    created_ts: int
    published: bool


@dataclass(frozen=True)
class UserMembership:
    room_nid: int
    room_id: str
    room_version: str
    membership: str
    event_nid: int
    stream_ordering: int
