"""The device-list stream: which users' devices or device keys changed.

A client tracking another user's devices (to encrypt for them) learns that it
must refetch their keys from /sync's `device_lists.changed` or from
`GET /keys/changes`. `DeviceLists.mark_changed` is the one way a device change
enters the stream: a device created (login) or deleted, device keys or
cross-signing keys uploaded; it wakes the /sync of every local user who shares
a room with the user, and of the user themself.

The stream also records membership changes (and a room becoming encrypted),
told by the room service after each persisted event: they change who must track
whose devices. For a reader, `changed` holds the users sharing a room with them
whose devices changed (themself included), and the users who now share an
encrypted room with them (a join by either side, or the room becoming
encrypted); `left` the users with whom they no longer share any encrypted room.
Both are computed from the memberships as they are when asked, so a user who
left and came back in the window is simply `changed`.

A signature one user makes on another user's master key (with their user-signing
key) is seen by the signer alone (`/keys/query` shows it to no one else), so it is
recorded for the signer alone (`signature_changed`): the row's `room_id` holds the
signer's user ID (a `@` can never begin a room ID), only the signer's /sync is
woken and only the signer is told the target changed, and no other server hears of
it. Telling every room-mate of the target would make all of them refetch keys that
did not change for them, and would tell them when the signer verified the target.

Membership rows are written just after the event (not in its transaction): a
crash in between loses that row, and the next device change of those users
tells their room-mates again. Every m.room.member event writes one (profile
changes included), so the stream moves with membership traffic; a reader's
cost is then one read of the rows in its window and two of its room-mates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from homeserver.rooms.stream import StreamTracker

if TYPE_CHECKING:
    from homeserver.records.events import StoredEvent
    from homeserver.records.rooms import RoomRecord
    from homeserver.storage.device_lists import DeviceListStore

logger = logging.getLogger(__name__)

ChangeListener = Callable[[str], Awaitable[None]]
# Told the users a change concerns, after it is recorded (the sync stream wakes them).
WakeListener = Callable[[set[str]], None]
# Local users sharing a joined room with a user, the user included.
Audience = Callable[[str], Awaitable[frozenset[str]]]
JoinedLocalUsers = Callable[["RoomRecord"], Awaitable[set[str]]]

# More rows than this in one reader's window: the reader is told nothing precise
# is known, so every room-mate is reported changed (a client then refetches keys).
_MAX_WINDOW_ROWS = 50_000


class DeviceLists:
    def __init__(
        self,
        *,
        store: DeviceListStore,
        audience: Audience,
        joined_local_users: JoinedLocalUsers,
    ) -> None:
        self.store = store
        self.audience = audience
        self.joined_local_users = joined_local_users
        # Told of each device change after it is recorded.
        self.on_change: list[ChangeListener] = []
        # Told synchronously of each local user's change (the m.device_list_update
        # EDU handler, homeserver/e2ee/edus.py, which tells other servers).
        self.local_listeners: list[Callable[[str], None]] = []
        self.wake_listeners: list[WakeListener] = []
        self._stream: StreamTracker | None = None
        self._stream_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _tracker(self) -> StreamTracker:
        # Loaded on first use: the database is only open once the server has started.
        if self._stream is None:
            async with self._stream_lock:
                if self._stream is None:
                    self._stream = StreamTracker(await self.store.max_position())
        return self._stream

    async def current_position(self) -> int:
        return (await self._tracker()).current

    def position_now(self) -> int | None:
        """`current_position`, once loaded (None before: the caller awaits that)."""
        return self._stream.current if self._stream is not None else None

    async def _record(self, user_id: str, room_id: str | None) -> None:
        tracker = await self._tracker()
        pos = tracker.allocate()
        try:
            await self.store.add([(pos, user_id, room_id)])
        finally:
            tracker.finish(pos)

    def _wake(self, user_ids: set[str]) -> None:
        for listener in self.wake_listeners:
            listener(user_ids)

    async def mark_changed(self, user_id: str) -> None:
        """Record that `user_id`'s devices or their keys changed (a device added,
        removed or renamed keys, new device keys or cross-signing keys), and wake
        the /sync of every local user who shares a room with them, and their own.
        Call it after the change is committed; it may be called for local users
        only (remote users' changes arrive over federation)."""
        await self._record(user_id, None)
        self._wake(set(await self.audience(user_id)) | {user_id})
        for local in self.local_listeners:
            local(user_id)
        for listener in self.on_change:
            await listener(user_id)

    async def remote_changed(self, user_id: str) -> None:
        """Record that another server's user's devices or keys changed (their
        server told us, or we fetched their list again), and wake the /sync of
        the local users who share a room with them."""
        await self._record(user_id, None)
        self._wake(set(await self.audience(user_id)) - {user_id})

    async def signature_changed(self, signer: str, target: str) -> None:
        """Record that `signer` signed `target`'s master key (or removed such a
        signature): only the signer sees it, so only the signer's stream moves."""
        await self._record(target, signer)
        self._wake({signer})

    def on_room_event(self, event: StoredEvent, room: RoomRecord) -> None:
        """Every persisted event (a room service listener): membership changes and
        a room becoming encrypted enter the stream."""
        if event.type == "m.room.member" and event.event.get("state_key") is not None:
            self._spawn(self._membership(str(event.event["state_key"]), room))
        elif event.type == "m.room.encryption" and event.event.get("state_key") == "":
            self._spawn(self._membership("", room))

    async def _membership(self, user_id: str, room: RoomRecord) -> None:
        await self._record(user_id, room.room_id)
        concerned = await self.joined_local_users(room)
        # The room's kept set itself, not a copy with the user in it (10,000 names per
        # membership change in a big room); the user apart when they left.
        self._wake(concerned)
        if user_id and user_id not in concerned:
            self._wake({user_id})

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("recording a membership change in the device-list stream failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the membership rows being written (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def changes_for(self, user_id: str, after: int, upto: int) -> tuple[list[str], list[str]]:
        """(changed, left) for `user_id` over the stream positions (after, upto]."""
        if upto <= after:
            return [], []
        rows = await self.store.changes(after, upto, _MAX_WINDOW_ROWS + 1)
        if not rows:
            return [], []
        shared_encrypted = await self.store.room_mates(user_id, encrypted_only=True)
        if len(rows) > _MAX_WINDOW_ROWS:
            everyone = await self.store.room_mates(user_id, encrypted_only=False)
            return sorted(everyone | {user_id}), []
        shared: set[str] | None = None
        changed: set[str] = set()
        left: set[str] = set()
        rooms: dict[str, set[str] | None] = {}
        for who, room_id in rows:
            if room_id is not None and room_id.startswith("@"):  # a signature only its signer sees
                if room_id == user_id:
                    changed.add(who)
                continue
            if room_id is None:
                if shared is None:
                    shared = await self.store.room_mates(user_id, encrypted_only=False)
                if who == user_id or who in shared:
                    changed.add(who)
                continue
            if room_id not in rooms:
                rooms[room_id] = await self.store.encrypted_room_members(room_id)
            members = rooms[room_id]
            if members is None:
                continue  # not encrypted: no one needs the other's devices for it
            if who in ("", user_id):
                if user_id in members:
                    changed |= members - {user_id}
                elif who == user_id:
                    left |= members
            elif user_id in members:
                if who in members:
                    changed.add(who)
                else:
                    left.add(who)
        left -= shared_encrypted | {user_id}
        return sorted(changed), sorted(left)
