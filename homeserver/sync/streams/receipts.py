"""The receipts stream: each joined room's m.receipt event in `ephemeral`, holding
the receipts that moved since the token (others' private receipts left out).

The receipts of every joined room are read once per request, and only for rooms
whose latest receipt position is past the token (kept in memory by the receipt
service). A public receipt wakes the room's local members, a private one its owner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from homeserver.receipts import READ_PRIVATE, ReceiptService
from homeserver.records.receipts import Receipt
from homeserver.records.rooms import RoomRecord
from homeserver.sync.streams.base import StreamProvider, SyncRequest

if TYPE_CHECKING:
    from homeserver.sync.notifier import Notifier


class ReceiptsStream(StreamProvider):
    key = "receipts"
    in_rooms = True

    def __init__(
        self, receipts: ReceiptService, notifier: Notifier, local_members: Callable[[RoomRecord], Awaitable[set[str]]]
    ) -> None:
        self.receipts = receipts
        self.notifier = notifier
        self.local_members = local_members
        receipts.on_change.append(self._changed)

    async def _changed(self, room: RoomRecord, receipt: Receipt) -> None:
        if receipt.receipt_type == READ_PRIVATE:
            self.notifier.notify_users([receipt.user_id])
        else:
            self.notifier.notify_users(await self.local_members(room))

    async def current_position(self) -> int:
        return await self.receipts.current_position()

    def position_now(self) -> int | None:
        return self.receipts.position_now()

    async def prepare(self, req: SyncRequest) -> None:
        joined = [m.room_id for m in req.memberships if m.membership == "join"]
        req.loaded[self.key] = await self.receipts.receipts_since(
            joined, req.since_pos(self.key), req.user_id, upto=req.now.receipts
        )

    def quiet_in(self, req: SyncRequest, room_id: str) -> bool:
        loaded = req.loaded.get(self.key)
        return loaded is not None and room_id not in loaded

    async def room_part(self, req: SyncRequest, room: RoomRecord, membership: str) -> dict[str, list[dict[str, Any]]]:
        event = req.loaded[self.key].get(room.room_id) if membership == "join" else None
        if event is None or not req.filter.ephemeral.matches(event, room.room_id):
            return {}
        return {"ephemeral": [event]}

    async def shown_room_part(self, req: SyncRequest, room: RoomRecord, event_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """A room's part for a client that has never been sent it (sliding sync shows
        rooms one window at a time): the receipts on the events it is sent, and the
        user's own, rather than every receipt in the room."""
        event = await self.receipts.receipts_on_events(room.room_id, event_ids, req.user_id, req.now.receipts)
        if event is None or not req.filter.ephemeral.matches(event, room.room_id):
            return {}
        return {"ephemeral": [event]}
