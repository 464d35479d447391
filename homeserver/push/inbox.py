"""GET /notifications: the user's notification inbox, read from the stored push
actions (homeserver/push/actions.py), newest first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.storage.push_actions import PushActionStore

if TYPE_CHECKING:
    from homeserver.receipts import ReceiptService
    from homeserver.rooms.history import RoomHistory
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore


class NotificationInbox:
    def __init__(
        self, *, store: PushActionStore, rooms: RoomStore, events: EventStore, history: RoomHistory,
        receipts: ReceiptService,
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.events = events
        self.history = history
        self.receipts = receipts

    async def page(self, user_id: str, before: int | None, limit: int, only_highlight: bool) -> dict[str, Any]:
        """One page: `before` is the previous page's next_token (a stream position);
        next_token is present only when more may follow."""
        rows = await self.store.page(user_id, before, limit, only_highlight) if limit > 0 else []
        events = await self.events.get_events_by_nid([r.event_nid for r in rows])
        out: list[dict[str, Any]] = []
        for r in rows:
            ev = events.get(r.event_nid)
            room = await self.rooms.get_room_by_nid(r.room_nid)
            if ev is None or room is None:
                continue
            (shown,) = await self.history.format_client_events(room, [ev])
            read = await self.receipts.read_up_to(user_id, room.room_id)
            out.append({
                "actions": r.actions,
                "event": shown,
                "profile_tag": None,
                "read": read is not None and r.stream_ordering <= read,
                "room_id": room.room_id,
                "ts": r.ts,
            })
        body: dict[str, Any] = {"notifications": out}
        if rows and len(rows) == limit:
            body["next_token"] = str(rows[-1].stream_ordering)
        return body
