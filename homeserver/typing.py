"""Typing notifications: who is typing in which room, in memory only.

Typing is worthless after a restart and changes many times a minute, so it
never touches the database. Each change of a room's typing set takes the next
position of the typing stream; /sync asks `typing_events_since` whether a
room's set changed after the position in its token. Only changes of the set
count: a client re-sending "still typing" every few seconds moves nothing and
wakes nobody.

Timeouts are measured on the server's clock, so tests can move time. Expiry
happens lazily whenever the state is read, and a timer wakes the server at the
next expiry so that waiting /sync requests hear when someone stops typing.

Over federation, `TypingEdu` takes m.typing EDUs from other servers' users in
rooms they are joined to, and sends our users' starts, refreshes and stops to
the other servers of the room (in memory, a newer one replacing a queued one).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.federation.edus import OutgoingEdu, Submit, sent_by
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.storage.rooms import RoomStore

DEFAULT_TIMEOUT_MS = 30_000
# Clients refresh every 20-30 s (the spec's advice), so a longer promise only
# leaves a stale "is typing" behind when a client vanishes.
MAX_TIMEOUT_MS = 30_000


@dataclass
class _RoomTyping:
    room: RoomRecord
    users: dict[str, int] = field(default_factory=dict)  # user_id -> expiry (ms)
    changed_at: int = 0  # typing stream position of the last change of `users`


class TypingService:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._position = 0
        self._rooms: dict[str, _RoomTyping] = {}
        # (expiry ms, room_id, user_id); stale entries are skipped when popped.
        self._expiries: list[tuple[int, str, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: int | None = None
        self._background: set[asyncio.Task[None]] = set()
        # callables(room, user_id, typing) told of every start, refresh and stop
        # (TypingEdu sends our users' to the room's other servers).
        self.listeners: list[Callable[[RoomRecord, str, bool], None]] = []
        # awaited after each change of a room's typing set (the typing stream of
        # /sync wakes the requests it concerns).
        self.on_change: list[Callable[[RoomRecord], Awaitable[None]]] = []

    def current_position(self) -> int:
        """The typing stream position; every change up to it is visible."""
        self.expire()
        return self._position

    async def set_typing(self, room: RoomRecord, user_id: str, typing: bool, timeout_ms: int) -> None:
        """Mark the user typing for `timeout_ms` (capped), or not typing. The caller
        has checked that the user may act for themselves in this room."""
        now = self.clock.time_ms()
        state = self._rooms.get(room.room_id)
        if typing:
            expiry = now + max(0, min(timeout_ms, MAX_TIMEOUT_MS))
            if state is None:
                state = self._rooms[room.room_id] = _RoomTyping(room)
            newly = user_id not in state.users
            state.users[user_id] = expiry
            heapq.heappush(self._expiries, (expiry, room.room_id, user_id))
            self._schedule()
            self._tell(room, user_id, True)  # refreshes too: other servers time typing out
            if newly:
                await self._changed(state)
        elif state is not None and state.users.pop(user_id, None) is not None:
            self._tell(room, user_id, False)
            await self._changed(state)
        self.expire()

    def typing_events_since(self, room_id: str, since_pos: int) -> dict[str, Any] | None:
        """The room's m.typing ephemeral event if its typing set changed after
        `since_pos`, else None. A position beyond the current one comes from
        before a restart (typing restarts from 0) and is answered like 0; at 0
        an empty set is not worth sending."""
        self.expire()
        state = self._rooms.get(room_id)
        if state is None:
            return None
        if since_pos > self._position:
            since_pos = 0
        if state.changed_at <= since_pos or (since_pos == 0 and not state.users):
            return None
        return {"type": "m.typing", "content": {"user_ids": sorted(state.users)}}

    def typing_users(self, room_id: str) -> list[str]:
        self.expire()
        state = self._rooms.get(room_id)
        return sorted(state.users) if state else []

    def expire(self) -> None:
        """Drop everyone whose timeout has passed and wake the rooms they left (asked
        with every /sync's position: nothing to do when nobody is typing)."""
        if not self._expiries:
            return
        now = self.clock.time_ms()
        touched: dict[str, _RoomTyping] = {}
        while self._expiries and self._expiries[0][0] <= now:
            expiry, room_id, user_id = heapq.heappop(self._expiries)
            state = self._rooms.get(room_id)
            if state is not None and state.users.get(user_id) == expiry:
                del state.users[user_id]
                touched[room_id] = state
                self._tell(state.room, user_id, False)
        for state in touched.values():
            self._bump(state)
            self._spawn(self._notify(state.room))

    async def drain(self) -> None:
        """Wait for background work started so far (wake-ups after timeouts and
        activity); for tests and an orderly shutdown."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # --- internals ---

    def _tell(self, room: RoomRecord, user_id: str, typing: bool) -> None:
        for listener in self.listeners:
            listener(room, user_id, typing)

    def _bump(self, state: _RoomTyping) -> None:
        self._position += 1
        state.changed_at = self._position

    async def _changed(self, state: _RoomTyping) -> None:
        self._bump(state)
        await self._notify(state.room)

    async def _notify(self, room: RoomRecord) -> None:
        for hook in self.on_change:
            await hook(room)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _schedule(self) -> None:
        """Arm the timer for the earliest pending expiry (one timer at a time)."""
        if not self._expiries:
            return
        due = self._expiries[0][0]
        if self._timer is not None and self._timer_due is not None and self._timer_due <= due:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay_s = max(0.0, (due - self.clock.time_ms()) / 1000)
        self._timer_due = due
        # A TimerHandle (not a task) so a server stopped mid-wait leaves nothing pending.
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_due = None
        self.expire()
        self._schedule()

    def on_room_event(self, event: StoredEvent, room: RoomRecord) -> None:
        """Someone who leaves (or is kicked or banned) stops typing at once."""
        if event.type != "m.room.member" or event.state_key is None:
            return
        if event.event["content"].get("membership") == "join":
            return
        state = self._rooms.get(room.room_id)
        if state is not None and state.users.pop(event.state_key, None) is not None:
            self._tell(room, event.state_key, False)
            self._bump(state)
            self._spawn(self._notify(room))


class TypingEdu:
    """m.typing over federation."""

    edu_type = "m.typing"

    def __init__(
        self,
        *,
        typing: TypingService,
        rooms: RoomStore,
        acl_allows: Callable[[RoomRecord, str], Awaitable[bool]],
        servers_in_room: Callable[[RoomRecord], Awaitable[Iterable[str]]],
        is_mine: Callable[[str], bool],
    ) -> None:
        self.typing = typing
        self.rooms = rooms
        self.acl_allows = acl_allows
        self.servers_in_room = servers_in_room
        self.is_mine = is_mine

    async def receive(self, origin: str, content: dict[str, Any]) -> None:
        """A user of `origin` joined to the room starts or stops typing (the
        room's server ACL must admit `origin`)."""
        user_id, room_id = content.get("user_id"), content.get("room_id")
        if not sent_by(user_id, origin) or not isinstance(room_id, str):
            return
        room = await self.rooms.get_room(room_id)
        if room is None or not await self.acl_allows(room, origin):
            return
        member = await self.rooms.membership_of(room.room_nid, str(user_id))
        if member is None or member[0] != "join":
            return
        await self.typing.set_typing(room, str(user_id), bool(content.get("typing")), 30_000)

    def watch(self, submit: Submit) -> None:
        def on_typing(room: RoomRecord, user_id: str, typing: bool) -> None:
            if room.federate and self.is_mine(user_id):
                submit(lambda: self._outgoing(room, user_id, typing))

        self.typing.listeners.append(on_typing)

    async def _outgoing(self, room: RoomRecord, user_id: str, typing: bool) -> list[OutgoingEdu]:
        content = {"room_id": room.room_id, "user_id": user_id, "typing": typing}
        key = (self.edu_type, room.room_id, user_id)
        return [OutgoingEdu(self.edu_type, content, list(await self.servers_in_room(room)), key)]
