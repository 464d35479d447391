"""The account data stream: the user's global entries changed since the token in
the top-level `account_data` section, each room's in the room's entry (joined
and left rooms). A change wakes its owner.

m.push_rules is served from the push rules service: present from the first sync
and always the live ruleset (see PushRulesService.sync_account_data).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.records.rooms import RoomRecord
from homeserver.sync.streams.base import StreamProvider, SyncRequest

if TYPE_CHECKING:
    from homeserver.account_data import AccountDataService
    from homeserver.push.service import PushRulesService
    from homeserver.sync.notifier import Notifier


class AccountDataStream(StreamProvider):
    key = "account_data"
    in_rooms = True

    def __init__(self, account_data: AccountDataService, push_rules: PushRulesService, notifier: Notifier) -> None:
        self.account_data = account_data
        self.push_rules = push_rules
        self.notifier = notifier
        account_data.listeners.append(self._changed)

    def _changed(self, user_id: str, room_id: str, data_type: str, pos: int) -> None:
        self.notifier.notify_users([user_id])

    async def current_position(self) -> int:
        return await self.account_data.current_position()

    def position_now(self) -> int | None:
        return self.account_data.position_now()

    async def prepare(self, req: SyncRequest) -> None:
        # Every room's entries in one read, not one per room.
        req.loaded[self.key] = await self.account_data.rooms_changes_since(req.user_id, req.since_pos(self.key))

    def quiet_in(self, req: SyncRequest, room_id: str) -> bool:
        loaded: dict[str, list[dict[str, Any]]] | None = req.loaded.get(self.key)
        return loaded is not None and not loaded.get(room_id)

    async def room_part(self, req: SyncRequest, room: RoomRecord, membership: str) -> dict[str, list[dict[str, Any]]]:
        loaded: dict[str, list[dict[str, Any]]] | None = req.loaded.get(self.key)
        if loaded is not None:
            events = loaded.get(room.room_id, [])
        else:  # a caller that did not prepare (the streams' interface allows it)
            events = await self.account_data.room_changes_since(req.user_id, room.room_id, req.since_pos(self.key))
        events = [e for e in events if req.filter.room_account_data.matches(e, room.room_id)]
        return {"account_data": events} if events else {}

    async def top_level(self, req: SyncRequest) -> dict[str, Any]:
        since = req.since_pos(self.key)
        events = await self.account_data.global_changes_since(req.user_id, since)
        events = await self.push_rules.sync_account_data(req.user_id, since, events)
        events = [e for e in events if req.filter.account_data.matches(e)]
        return {"account_data": {"events": events}} if events else {}
