"""Account data: what clients store per user (global or per room) and read back
through the API and /sync, and what the server itself consults (the
m.ignored_user_list that hides ignored users' events).

Writes take positions on their own stream so /sync can send only what changed
since a token; a user's writes are serialised so positions commit in the order
they were handed out for that user, and a later write never loses to an earlier
one. Global entries are read on every timeline page (the ignore list), so they
are cached; this process is the only writer, so the cache is exact.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from typing import Any

from homeserver.records.account_data import AccountDataEntry
from homeserver.rooms.stream import StreamTracker
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.database import Txn

# Types the server manages; the spec has clients change them through their own APIs.
SERVER_MANAGED_TYPES = frozenset({"m.fully_read", "m.push_rules"})
_CACHE_SIZE = 10_000
_Key = tuple[str, str, str]  # (user_id, room_id, type)
# Called after each committed write with (user_id, room_id or "", type, stream position);
# the account data stream of /sync wakes the owner's requests from it.
Listener = Callable[[str, str, str, int], None]


class AccountDataService:
    def __init__(self, store: AccountDataStore) -> None:
        self.store = store
        self.listeners: list[Listener] = []
        self._stream: StreamTracker | None = None
        self._stream_lock = asyncio.Lock()
        self._user_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._cache: OrderedDict[_Key, dict[str, Any] | None] = OrderedDict()
        self._writes = 0  # bumped by every write: a read that raced one is not cached
        # data type -> users holding global account data of it, loaded on first ask;
        # with every (user, type) of a global write started since, never removed.
        self._holders: dict[str, set[str]] = {}
        self._global_writes: dict[str, set[str]] = {}  # data type -> users who wrote it

    async def _tracker(self) -> StreamTracker:
        # Loaded on first use: the database is only open once the server has started.
        if self._stream is None:
            async with self._stream_lock:
                if self._stream is None:
                    # Never below 1: position 0 then only ever means "from the start"
                    # (an initial sync), which m.push_rules relies on (homeserver/push/service.py).
                    self._stream = StreamTracker(max(await self.store.max_stream_id(), 1))
        return self._stream

    async def current_position(self) -> int:
        """Every account data change up to this position is committed."""
        return (await self._tracker()).current

    def position_now(self) -> int | None:
        """`current_position`, once loaded (None before: the caller awaits that)."""
        return self._stream.current if self._stream is not None else None

    def _user_lock(self, user_id: str) -> asyncio.Lock:
        lock = self._user_locks.get(user_id)
        if lock is None:
            lock = asyncio.Lock()
            self._user_locks[user_id] = lock
        return lock

    def _remember(self, key: _Key, content: dict[str, Any] | None) -> None:
        self._cache[key] = content
        self._cache.move_to_end(key)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    async def _get(self, key: _Key) -> dict[str, Any] | None:
        return await self._cached(key, lambda: self.store.get(*key))

    async def _cached(self, key: _Key, load: Callable[[], Awaitable[dict[str, Any] | None]]) -> dict[str, Any] | None:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        writes = self._writes
        content = await load()
        if self._writes == writes:
            self._remember(key, content)
        return content

    async def get_global(self, user_id: str, data_type: str) -> dict[str, Any] | None:
        return await self._get((user_id, GLOBAL, data_type))

    async def get_global_in(self, txn: Txn, user_id: str, data_type: str) -> dict[str, Any] | None:
        """`get_global` for code running inside a write transaction, which may only
        read through its own `txn` (the event writer's push actions): cached the same."""
        return await self._cached((user_id, GLOBAL, data_type), lambda: AccountDataStore.get_in(txn, user_id, GLOBAL, data_type))

    async def get_room(self, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
        return await self._get((user_id, room_id, data_type))

    async def holders_in(self, txn: Txn, data_type: str) -> tuple[AbstractSet[str], ...]:
        """The users who may have global account data of the type, as sets to intersect
        with a room's members: for code inside a write transaction that must not look up
        every user (the push actions of a big room ask who has an ignore list). Never
        wrong the other way: a user who has such data is always in one of them."""
        holders = self._holders.get(data_type)
        if holders is None:
            holders = self._holders[data_type] = await AccountDataStore.users_with_global_in(txn, data_type)
        return holders, self._global_writes.setdefault(data_type, set())

    async def _set(self, key: _Key, content: dict[str, Any]) -> int:
        if key[1] == GLOBAL:
            self._global_writes.setdefault(key[2], set()).add(key[0])  # before the write: see holders_in
        tracker = await self._tracker()
        async with self._user_lock(key[0]):
            pos = tracker.allocate()
            self._writes += 1
            try:
                await self.store.put(*key, content, pos)
            except BaseException:
                self._cache.pop(key, None)
                raise
            finally:
                tracker.finish(pos)
                self._writes += 1  # before and after: any read overlapping the write
            self._remember(key, content)
        for listener in self.listeners:
            listener(*key, pos)
        return pos

    async def set_global(self, user_id: str, data_type: str, content: dict[str, Any]) -> int:
        """Store global account data; returns its stream position."""
        return await self._set((user_id, GLOBAL, data_type), content)

    async def set_room(self, user_id: str, room_id: str, data_type: str, content: dict[str, Any]) -> int:
        """Store account data for one room; returns its stream position."""
        return await self._set((user_id, room_id, data_type), content)

    async def changes(self, user_id: str, after: int, upto: int | None = None) -> list[AccountDataEntry]:
        """What changed for the user in (after, upto]: the latest content of each
        entry written in that range (room_id "" for global entries)."""
        return await self.store.changed(user_id, after, upto)

    async def global_changes_since(self, user_id: str, since: int) -> list[dict[str, Any]]:
        """Global entries changed after `since`, as /sync's account data events
        (m.push_rules as stored: the account data stream puts the live one in)."""
        entries = await self.store.changed_in_room(user_id, GLOBAL, since)
        return [{"type": e.data_type, "content": e.content} for e in entries]

    async def rooms_changes_since(self, user_id: str, since: int) -> dict[str, list[dict[str, Any]]]:
        """Every room's entries changed after `since`, by room ID (one read for a whole
        /sync response, however many rooms it has)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for e in await self.store.changed(user_id, since):
            if e.room_id != GLOBAL:
                out.setdefault(e.room_id, []).append({"type": e.data_type, "content": e.content})
        return out

    async def room_changes_since(self, user_id: str, room_id: str, since: int) -> list[dict[str, Any]]:
        """One room's entries changed after `since`, as /sync's per-room account data events."""
        entries = await self.store.changed_in_room(user_id, room_id, since)
        return [{"type": e.data_type, "content": e.content} for e in entries]
