"""One piece of account data, global or for a room."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AccountDataEntry:
    room_id: str  # GLOBAL for global account data
    data_type: str
    content: dict[str, Any]
    stream_id: int
