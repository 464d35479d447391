"""Presence: whether local users are online, idle or offline, with a status message
and the time they were last active, shown to the users who share a room with them.

Presence is the busiest of the ephemeral streams (every message and every /sync
touches it), so all of it lives in memory and each touch costs a dict lookup:
activity only moves `last_active_ts` unless it changes what others see (the
state, or `currently_active` flipping on). Only visible changes take a presence
stream position and wake anyone. The database keeps each user's last state so
it survives a restart; explicit changes (PUT) are written before the request
returns, everything else in batches a few seconds later.

Timeouts (the spec's idle timeout, and going offline once a user stops syncing)
are checked by a periodic sweep measured on the server's clock, so tests can move time
and call `check_timeouts()`.

Users of other servers: their presence arrives in m.presence EDUs and is taken
only from their own server, and only for users who share a room with one of
ours (nobody here could see anything else). It lives in memory only (their
server has the truth and will tell us again); a remote user not heard of for
REMOTE_OFFLINE_AFTER_MS is taken as offline, in case their server went away
without saying so. `PresenceEdu` takes those EDUs in, and sends the visible
changes of local users to the servers sharing a federated room with them (in
memory, a newer one replacing a queued one).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import MatrixError, invalid_param
from homeserver.federation.edus import OutgoingEdu, Submit, servers_sharing_rooms
from homeserver.identifiers import LocalServer, parse_user_id
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.config import Config
    from homeserver.storage.presence import PresenceStore
    from homeserver.storage.rooms import RoomStore

logger = logging.getLogger(__name__)

ONLINE = "online"
UNAVAILABLE = "unavailable"
OFFLINE = "offline"
STATES = (ONLINE, UNAVAILABLE, OFFLINE)

IDLE_AFTER_MS = 5 * 60_000  # online -> unavailable without activity (the spec's example)
# currently_active stays true this long after the last activity; while it is
# true, further activity sends no updates (the spec's Last active ago).
ACTIVE_WINDOW_MS = 60_000
# Offline once the user has neither started a /sync nor acted (sent a message,
# set presence) for this long. A /sync reports itself only
# when it starts, so this must exceed the longest long-poll (/sync caps its
# timeout at 5 minutes) or a client waiting quietly would flicker offline.
SYNC_OFFLINE_AFTER_MS = 6 * 60_000
SWEEP_INTERVAL_S = 10.0
FLUSH_DELAY_S = 5.0
REMOTE_OFFLINE_AFTER_MS = 30 * 60_000
# Longest status message, in characters: a local user's longer one is refused (400
# M_TOO_LARGE), a remote user's is cut. Status lines are a sentence or two; the bound
# keeps every copy of them (database, each sync, each EDU to every peer) small.
MAX_STATUS_MSG = 1024
MAX_PUSH = 500  # presence updates taken from one EDU


def presence_enabled(config: Config) -> bool:
    return config.presence.enabled


@dataclass
class _Presence:
    state: str = OFFLINE
    status_msg: str | None = None
    last_active_ts: int = 0
    currently_active: bool = False
    last_sync_ts: int = 0
    stream_id: int = 0


class PresenceService:
    def __init__(
        self,
        *,
        store: PresenceStore,
        enabled: bool,
        server_name: str,
        clock: Clock,
        rooms: RoomStore,
        local_members: Callable[[RoomRecord], Awaitable[set[str]]],
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.clock = clock
        self.rooms = rooms
        self.local_members = local_members
        self._states: dict[str, _Presence] = {}
        self._live: set[str] = set()  # users not offline: the only ones timeouts concern
        self._position = 0
        # user_id -> position of their last visible change, oldest first, so
        # `presence_since` walks back from the newest change only as far as needed.
        self._log: OrderedDict[str, int] = OrderedDict()
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._dirty: set[str] = set()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        # user_id -> local users sharing a joined room with them (themselves
        # included); dropped whenever any membership changes.
        self._audiences: dict[str, frozenset[str]] = {}
        self._local = LocalServer(server_name)
        # callables(user_id, m.presence content) told of every visible change
        # (PresenceEdu sends our users' to the servers sharing a room with them).
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        # awaited with the users whose visible presence changed (the presence
        # stream of /sync wakes the requests it concerns).
        self.on_change: list[Callable[[Collection[str]], Awaitable[None]]] = []

    async def _load(self) -> None:
        # On first use: the database only opens once the server starts.
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            rows = await self.store.load_all()
            now = self.clock.time_ms()
            for user_id, state, status_msg, last_active_ts, stream_id in rows:
                # Whoever was online gets the sync timeout's grace to reconnect.
                p = _Presence(state, status_msg, last_active_ts, False, now, stream_id)
                self._states[user_id] = p
                self._log[user_id] = p.stream_id
                if p.state != OFFLINE:
                    self._live.add(user_id)
                self._position = max(self._position, p.stream_id)
            self._loaded = True
        self._arm_sweep()

    async def current_position(self) -> int:
        """The presence stream position; every change up to it is visible."""
        await self._load()
        return self._position

    def position_now(self) -> int | None:
        """`current_position`, once loaded (None before: the caller awaits that)."""
        return self._position if self._loaded else None

    # --- changes ---

    async def set_presence(self, user_id: str, state: str, status_msg: str | None) -> None:
        """PUT /presence: the user's own choice, durable before it returns. Setting
        any state counts as activity (the spec: "the activity time is updated")."""
        if state not in STATES:
            raise invalid_param(f"presence must be one of {', '.join(STATES)}")
        if status_msg is not None and len(status_msg) > MAX_STATUS_MSG:
            raise MatrixError(400, "M_TOO_LARGE", f"status_msg is longer than {MAX_STATUS_MSG} characters")
        if not self.enabled:
            return
        await self._load()
        p = self._get(user_id)
        now = self.clock.time_ms()
        p.last_active_ts = now
        p.last_sync_ts = now  # a client that sets presence is connected
        changed = (state, status_msg) != (p.state, p.status_msg)
        p.state, p.status_msg = state, status_msg
        active = state == ONLINE
        if active != p.currently_active:
            p.currently_active = active
            changed = True
        if changed:
            self._changed(user_id, p)
            await self._notify(user_id)
        self._dirty.discard(user_id)
        await self._persist([user_id])

    async def sync_activity(self, user_id: str, set_presence: str | None) -> None:
        """Called by /sync as each request starts, with its `set_presence`
        (default online). "online" brings an offline user online; "unavailable"
        marks them idle; "offline" leaves presence alone (the client does not
        want to appear connected). Syncing keeps a user from going offline but
        is not activity: an idle user syncing stays idle."""
        set_presence = set_presence or ONLINE
        if set_presence not in STATES:
            raise invalid_param(f"set_presence must be one of {', '.join(STATES)}")
        if not self.enabled or set_presence == OFFLINE:
            return
        await self._load()
        p = self._get(user_id)
        now = self.clock.time_ms()
        p.last_sync_ts = now
        if set_presence == ONLINE and p.state == OFFLINE:
            # Coming online is pro-active (the spec's Last active ago).
            p.state, p.last_active_ts, p.currently_active = ONLINE, now, True
        elif set_presence == UNAVAILABLE and p.state != UNAVAILABLE:
            p.state, p.currently_active = UNAVAILABLE, False
        else:
            return
        self._changed(user_id, p)
        self._mark_dirty(user_id)
        await self._notify(user_id)

    async def on_remote_presence(self, origin: str, push: Any) -> None:
        """The `push` list of an m.presence EDU sent by `origin`. Updates for users
        of another server, malformed ones, and users who share no room with a
        local user are dropped; the rest are visible changes like local ones."""
        if not self.enabled or not isinstance(push, list):
            return
        await self._load()
        now = self.clock.time_ms()
        for item in push[:MAX_PUSH]:
            if not isinstance(item, dict):
                continue
            user_id = item.get("user_id")
            if not isinstance(user_id, str):
                continue
            parsed = parse_user_id(user_id)
            state = item.get("presence")
            if parsed is None or parsed[1] != origin or state not in STATES or self._local.is_mine(user_id):
                continue
            if not (await self.audience(user_id)) - {user_id}:
                continue  # no local user shares a room with them
            status_msg = item.get("status_msg")
            status_msg = status_msg[:MAX_STATUS_MSG] if isinstance(status_msg, str) else None
            ago = item.get("last_active_ago")
            ago = ago if type(ago) is int and 0 <= ago <= now else 0
            active = item.get("currently_active") is True and state == ONLINE
            p = self._get(user_id)
            p.last_sync_ts = now  # when we last heard of them, for REMOTE_OFFLINE_AFTER_MS
            p.last_active_ts = now - ago
            if (state, status_msg, active) == (p.state, p.status_msg, p.currently_active):
                continue
            p.state, p.status_msg, p.currently_active = state, status_msg, active
            self._changed(user_id, p)
            await self._notify(user_id)

    async def bump_activity(self, user_id: str) -> None:
        """A pro-active action (sending an event): online, and currently active."""
        if not self.enabled:
            return
        await self._load()
        p = self._get(user_id)
        # A client that acts is connected, even one that never syncs (a bot).
        p.last_active_ts = p.last_sync_ts = self.clock.time_ms()
        self._mark_dirty(user_id)
        if p.state == ONLINE and p.currently_active:
            return
        p.state, p.currently_active = ONLINE, True
        self._changed(user_id, p)
        await self._notify(user_id)

    def check_timeouts(self) -> list[str]:
        """Apply the idle and offline timeouts and end stale currently_active;
        returns the users whose presence changed (their audiences are woken)."""
        now = self.clock.time_ms()
        changed: list[str] = []
        for user_id in list(self._live):
            p = self._states[user_id]
            if not self._local.is_mine(user_id):
                # Remote: their server reports idleness; we only give up on silence.
                if now - p.last_sync_ts <= REMOTE_OFFLINE_AFTER_MS:
                    continue
                p.state, p.currently_active = OFFLINE, False
                self._changed(user_id, p)
                changed.append(user_id)
                continue
            if now - p.last_sync_ts > SYNC_OFFLINE_AFTER_MS:
                p.state, p.currently_active = OFFLINE, False
            elif p.state == ONLINE and now - p.last_active_ts > IDLE_AFTER_MS:
                p.state, p.currently_active = UNAVAILABLE, False
            elif p.currently_active and now - p.last_active_ts > ACTIVE_WINDOW_MS:
                p.currently_active = False
            else:
                continue
            self._changed(user_id, p)
            changed.append(user_id)
        if changed:
            self._spawn(self._notify_many(changed))
        return changed

    # --- reads ---

    async def get_presence(self, user_id: str) -> dict[str, Any]:
        """The content of the user's m.presence event as of now."""
        if not self.enabled:
            return {"presence": OFFLINE}
        await self._load()
        p = self._states.get(user_id)
        return self._content(p) if p is not None else {"presence": OFFLINE}

    async def shares_room(self, user_id: str, other_id: str) -> bool:
        """Whether the two share a joined room; `user_id` is local, `other_id` may
        be remote (audiences list local users only, so ask from the other side)."""
        if user_id == other_id or other_id in await self.audience(user_id):
            return True
        return not self._local.is_mine(other_id) and user_id in await self.audience(other_id)

    async def audience(self, user_id: str) -> frozenset[str]:
        """Local users sharing a joined room with the user (local or remote), the
        user included: those who see their presence (and whose presence they see)."""
        cached = self._audiences.get(user_id)
        if cached is not None:
            return cached
        users = {user_id}
        for room_id, _ in await self.rooms.rooms_for_user(user_id):
            room = await self.rooms.get_room(room_id)
            if room is not None:
                users |= await self.local_members(room)
        result = frozenset(users)
        self._audiences[user_id] = result
        return result

    async def presence_since(self, user_id: str, since_pos: int) -> list[dict[str, Any]]:
        """m.presence events of the user and of users sharing a room with them whose
        presence changed after `since_pos`. At 0 (initial sync) only those not
        offline are worth sending; a position beyond the current one comes from a
        previous run that did not get to persist it, and is answered like 0."""
        if not self.enabled:
            return []
        await self._load()
        if since_pos > self._position:
            since_pos = 0
        changed: list[str] = []
        for other, pos in reversed(self._log.items()):
            if pos <= since_pos:
                break
            changed.append(other)
        if not changed:
            return []
        audience = await self.audience(user_id)
        events = []
        for other in reversed(changed):
            p = self._states[other]
            if since_pos == 0 and p.state == OFFLINE:
                continue
            if other not in audience and (
                self._local.is_mine(other) or user_id not in await self.audience(other)
            ):
                continue
            events.append({"type": "m.presence", "sender": other, "content": self._content(p)})
        return events

    async def presence_in_rooms(self, user_id: str, room_nids: Collection[int]) -> list[dict[str, Any]]:
        """m.presence events of the members of these rooms (those not offline; the
        user excluded): what a user who newly joined them is sent, whether or not
        the members' presence changed since the user's token, since the user was
        told nothing of them before (Synapse does the same). Offline members are
        left out as on an initial sync: unknown and offline look alike to a client,
        and a large room would otherwise cost an event per member."""
        if not self.enabled or not room_nids:
            return []
        await self._load()
        members: set[str] = set()
        for room_nid in room_nids:
            members.update(u for u, _, _ in await self.rooms.members(room_nid, "join"))
        members.discard(user_id)
        return [
            {"type": "m.presence", "sender": u, "content": self._content(p)}
            for u in sorted(members)
            if (p := self._states.get(u)) is not None and p.state != OFFLINE
        ]

    async def drain(self) -> None:
        """Wait for background work started so far (wake-ups after timeouts and
        activity); for tests and an orderly shutdown."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # --- internals ---

    def _get(self, user_id: str) -> _Presence:
        p = self._states.get(user_id)
        if p is None:
            p = self._states[user_id] = _Presence()
        return p

    def _content(self, p: _Presence) -> dict[str, Any]:
        content: dict[str, Any] = {"presence": p.state}
        if p.last_active_ts:
            content["last_active_ago"] = max(0, self.clock.time_ms() - p.last_active_ts)
        if p.state == ONLINE:
            content["currently_active"] = p.currently_active
        if p.status_msg is not None:
            content["status_msg"] = p.status_msg
        return content

    def _changed(self, user_id: str, p: _Presence) -> None:
        """Give a visible change the next stream position, stored with the next flush
        (remote users' too: a restart then resumes the stream with every change a
        client's token may not have seen, instead of forgetting the remote ones)."""
        self._position += 1
        p.stream_id = self._position
        self._mark_dirty(user_id)
        self._log[user_id] = self._position
        self._log.move_to_end(user_id)
        if p.state == OFFLINE:
            self._live.discard(user_id)
        else:
            self._live.add(user_id)
            self._arm_sweep()
        if self.listeners:
            content = self._content(p)
            for listener in self.listeners:
                listener(user_id, content)

    async def _notify(self, user_id: str) -> None:
        await self._notify_many([user_id])

    async def _notify_many(self, user_ids: Iterable[str]) -> None:
        users = list(user_ids)
        for hook in self.on_change:
            await hook(users)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def on_room_event(self, event: StoredEvent, room: RoomRecord) -> None:
        """Every persisted event: a membership change changes who shares rooms with
        whom; a message is activity of its local sender (state events are not:
        the server sends some on users' behalf, and the spec's example of a
        pro-active event is a message)."""
        if event.type == "m.room.member":
            self._audiences.clear()
            self._announce_join(event)
        sender = event.sender
        if not self.enabled or event.state_key is not None or not self._local.is_mine(sender):
            return
        p = self._states.get(sender) if self._loaded else None
        if p is not None and p.state == ONLINE and p.currently_active:
            p.last_active_ts = p.last_sync_ts = self.clock.time_ms()  # the hot path: nothing anyone sees
            self._mark_dirty(sender)
            return
        self._spawn(self.bump_activity(sender))

    def _announce_join(self, event: StoredEvent) -> None:
        """A user who joins a room starts sharing it with its members, who have
        been sent nothing about them yet: re-announce their presence (one stream
        position) so incremental syncs of the new room-mates carry it. A remote
        user's presence is known when they share another room with a local user;
        re-announcing a local user's also sends it to the servers now sharing a
        room with them. (What the joiner is sent of the members:
        `presence_in_rooms`.)"""
        user_id = event.state_key
        if not self.enabled or user_id is None or event.event["content"].get("membership") != "join":
            return
        p = self._states.get(user_id)
        if p is None or p.state == OFFLINE:
            return
        self._changed(user_id, p)
        self._spawn(self._notify(user_id))

    # --- persistence and timers (TimerHandles, not tasks: a stopped server leaves
    # nothing pending behind) ---

    def _mark_dirty(self, user_id: str) -> None:
        self._dirty.add(user_id)
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self._on_flush_timer)

    def _on_flush_timer(self) -> None:
        self._flush_timer = None
        self._spawn(self.flush())

    async def flush(self) -> None:
        """Write every user changed since the last flush (in one transaction)."""
        users, self._dirty = self._dirty, set()
        if not users:
            return
        try:
            await self._persist(users)
        except Exception:
            logger.warning("could not persist presence; will retry", exc_info=True)
            self._dirty |= users
            if self._flush_timer is None:
                self._flush_timer = asyncio.get_running_loop().call_later(
                    FLUSH_DELAY_S, self._on_flush_timer
                )

    async def _persist(self, user_ids: Iterable[str]) -> None:
        rows = [
            (u, p.state, p.status_msg, p.last_active_ts, p.stream_id)
            for u in user_ids
            if (p := self._states.get(u)) is not None
        ]
        if rows:
            await self.store.upsert_many(rows)

    def _arm_sweep(self) -> None:
        if self._sweep_timer is None and self._live:
            self._sweep_timer = asyncio.get_running_loop().call_later(SWEEP_INTERVAL_S, self._on_sweep)

    def _on_sweep(self) -> None:
        self._sweep_timer = None
        self.check_timeouts()
        self._arm_sweep()


class PresenceEdu:
    """m.presence over federation."""

    edu_type = "m.presence"

    def __init__(
        self,
        *,
        presence: PresenceService,
        rooms: RoomStore,
        servers_in_room: Callable[[RoomRecord], Awaitable[Iterable[str]]],
        is_mine: Callable[[str], bool],
    ) -> None:
        self.presence = presence
        self.rooms = rooms
        self.servers_in_room = servers_in_room
        self.is_mine = is_mine

    async def receive(self, origin: str, content: dict[str, Any]) -> None:
        await self.presence.on_remote_presence(origin, content.get("push"))

    def watch(self, submit: Submit) -> None:
        def on_presence(user_id: str, content: dict[str, Any]) -> None:
            if self.is_mine(user_id):
                push = {"user_id": user_id, **content}
                submit(lambda: self._outgoing(user_id, push))

        self.presence.listeners.append(on_presence)

    async def _outgoing(self, user_id: str, push: dict[str, Any]) -> list[OutgoingEdu]:
        push.setdefault("last_active_ago", 0)  # required by the EDU's schema
        key = (self.edu_type, user_id)
        return [OutgoingEdu(self.edu_type, {"push": [push]}, await self._destinations(user_id), key)]

    async def _destinations(self, user_id: str) -> set[str]:
        """Servers sharing a federated room with the user (the spec: only servers
        likely to be interested)."""
        return await servers_sharing_rooms(self.rooms, self.servers_in_room, user_id)
