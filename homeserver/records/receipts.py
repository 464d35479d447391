"""One read receipt."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Receipt:
    room_id: str
    user_id: str
    receipt_type: str
    thread_id: str  # UNTHREADED, "main" or a thread root's event ID
    event_id: str
    event_stream_ordering: int
    ts: int
    stream_id: int
