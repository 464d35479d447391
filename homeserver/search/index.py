"""The search index's side of the event writer (an EventIndex, homeserver/rooms/persist.py).

Told of every event entering a timeline (local, received, backfilled) in its own write
transaction, it indexes the searchable text of m.room.message (content.body),
m.room.name (content.name) and m.room.topic (content.topic, and the text/plain
representation in content["m.topic"]); told of a redaction, it drops the event, so a
redacted message can never be found again, even after a crash.
"""

from __future__ import annotations

from typing import Any

from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.storage.database import Txn
from homeserver.storage.search import SearchStore

# The search request's `keys` and the event type each one is read from.
KEY_TYPES = {"content.body": "m.room.message", "content.name": "m.room.name", "content.topic": "m.room.topic"}


def searchable_text(event: dict[str, Any]) -> str | None:
    """The text of an event the index holds, or None for events it does not."""
    content = event.get("content")
    if not isinstance(content, dict):
        return None
    parts: list[str] = []
    kind = event.get("type")
    if kind == "m.room.message":
        parts.append(content.get("body"))  # type: ignore[arg-type]
    elif kind == "m.room.name":
        parts.append(content.get("name"))  # type: ignore[arg-type]
    elif kind == "m.room.topic":
        parts.append(content.get("topic"))  # type: ignore[arg-type]
        reps = content.get("m.topic")
        if isinstance(reps, dict):
            reps = reps.get("m.text")
        if isinstance(reps, list):
            for rep in reps:
                if isinstance(rep, dict) and rep.get("mimetype", "text/plain") == "text/plain":
                    parts.append(rep.get("body"))  # type: ignore[arg-type]
    texts: list[str] = []
    for p in parts:
        if isinstance(p, str) and p.strip() and p not in texts:
            texts.append(p)
    if not texts:
        return None
    # PostgreSQL text cannot hold NUL; it separates words like any other control character.
    return "\n".join(texts).replace("\x00", " ")


class SearchIndex:
    """Keeps event_search in step with the timeline (registered in server.py)."""

    def __init__(self, store: SearchStore) -> None:
        self.store = store

    async def event_written(self, txn: Txn, room: RoomRecord, stored: StoredEvent) -> None:
        if stored.redacted_by is not None or stored.state_key not in (None, ""):
            return
        text = searchable_text(stored.event)
        if text is not None:
            await self.store.index_event(txn, stored.nid, text)

    async def event_redacted(self, txn: Txn, room: RoomRecord, redacted_event_id: str) -> None:
        await self.store.unindex_event(txn, redacted_event_id)
