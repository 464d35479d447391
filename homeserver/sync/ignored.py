"""Each syncing user's ignored users (m.ignored_user_list), kept in memory.

Every /sync asks it (timelines and invites hide the ignored users' events, and a
reader who ignores nobody may take a room's shared timeline, sync/shared_sections.py),
while it changes only when its owner writes the account data. Kept per user as the
set itself, dropped by that write (the account data service's listeners), so a woken
reader finds it without going down to the account data at all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

IGNORED_USER_LIST = "m.ignored_user_list"
_CACHE_SIZE = 50_000


class IgnoredUsers:
    def __init__(self, load: Callable[[str], Awaitable[set[str]]], max_users: int = _CACHE_SIZE) -> None:
        self._load = load
        self.max_users = max_users
        self._sets: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._versions: dict[str, int] = {}  # bumped per write: guards a load overlapping it

    async def get(self, user_id: str) -> frozenset[str]:
        """Whose events the user does not see (ignoring oneself hides nothing)."""
        found = self._sets.get(user_id)
        if found is not None:
            self._sets.move_to_end(user_id)
            return found
        version = self._versions.get(user_id, 0)
        loaded = frozenset(await self._load(user_id)) - {user_id}
        if self._versions.get(user_id, 0) == version:  # no write landed meanwhile
            self._sets[user_id] = loaded
            if len(self._sets) > self.max_users:
                self._sets.popitem(last=False)
        return loaded

    def account_data_changed(self, user_id: str, room_id: str, data_type: str, pos: int) -> None:
        """An account data write (AccountDataService.listeners)."""
        if data_type == IGNORED_USER_LIST:
            self._versions[user_id] = self._versions.get(user_id, 0) + 1
            self._sets.pop(user_id, None)
