"""What the admin API learns about a room: its counts, and what a purge removed."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RoomCounts:
    joined: int = 0
    joined_local: int = 0
    joined_local_devices: int = 0
    state_events: int = 0


@dataclass
class PurgeResult:
    event_ids: list[str] = field(default_factory=list)
    snapshot_nids: list[int] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)  # rows deleted per table
