"""Event relationships (m.relates_to) as the relations index holds them, and the
aggregations bundled with events served to clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Relation:
    event_id: str  # the relating (child) event
    room_nid: int
    relates_to_id: str  # the parent event
    rel_type: str
    event_type: str
    sender: str
    stream_ordering: int


@dataclass(frozen=True)
class ThreadRoot:
    """A thread in a room: its root and the position of its latest reply."""

    root_id: str
    latest_ordering: int


@dataclass
class Aggregation:
    """What is bundled under unsigned.m.relations of one event (events still raw:
    the formatter shapes them for the client)."""

    thread_latest: Any = None  # StoredEvent of the newest visible reply
    thread_count: int = 0
    thread_participated: bool = False
    edit: Any = None  # StoredEvent of the edit in force
    references: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.thread_latest is None and self.edit is None and not self.references
