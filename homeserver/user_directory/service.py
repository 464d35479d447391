"""Searching the user directory.

Whom a searcher finds (the spec's minimum): users joined to a room the searcher
is joined to, and users joined to a room whose join rule is public or whose
history is world_readable; with `user_directory.search_all_local_users`, every
local user as well (an organization's staff directory). Never a user seen only
in a private room the searcher is not in. Deactivated users and the server
notices account are never found.

Matching: the search term is cut into words (letters and digits, case-folded);
every word must begin a word of the user's display name or localpart. A term
starting with '@' also finds the user IDs it begins.

Local users are searched in their profiles (always current); other servers'
users in an index of their latest join event, kept by a listener on membership
events. Which rooms are open (public or world_readable) is kept by a listener
on join rules and history visibility. Both were filled once, at the first
start with them (a search waits for that), from what the server already held.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.records.user_directory import DirectoryUser
from homeserver.storage.user_directory import UserDirectoryStore

if TYPE_CHECKING:
    from homeserver.rooms.service import RoomService

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W_]+")
_OPENING_TYPES = ("m.room.join_rules", "m.room.history_visibility")
HIDDEN_USER_TYPES = ("support",)  # the server notices account (homeserver/partners/notices.py)
_CANDIDATES = 1000  # rows read per half (local, remote) at most; beyond that the answer is limited


def search_words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _localpart(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


def matches(user: DirectoryUser, words: list[str], term: str) -> bool:
    if term.startswith("@") and user.user_id.casefold().startswith(term.casefold()):
        return True
    own = search_words(user.display_name or "") + search_words(_localpart(user.user_id))
    return all(any(w.startswith(word) for w in own) for word in words)


def _rank(user: DirectoryUser, term: str) -> tuple[int, int, str, str]:
    name = (user.display_name or "").casefold()
    folded = term.casefold()
    closeness = 0 if name == folded else 1 if name.startswith(folded) else 2
    return closeness, 0 if user.display_name else 1, name, user.user_id


class UserDirectory:
    def __init__(
        self,
        *,
        store: UserDirectoryStore,
        room_service: RoomService,
        is_mine: Callable[[str], bool],
        search_all_local_users: bool,
    ) -> None:
        self.store = store
        self.room_service = room_service
        self.is_mine = is_mine
        self.search_all_local_users = search_all_local_users
        self._built = False
        self._build_lock = asyncio.Lock()
        self._room_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        # Rooms indexed whole (`_index_room`) since a local user last left one: while a
        # local user stays joined, every change reaches `on_room_event` as an event.
        self._whole: set[int] = set()

    async def search(self, searcher: str, term: str, limit: int) -> tuple[list[DirectoryUser], bool]:
        """The users found, best first, and whether there were more than `limit`."""
        words = search_words(term)
        if not words:
            return [], False
        await self._ensure_built()
        local = await self.store.search_local(
            searcher, [w for w in words if w.isascii()], everyone=self.search_all_local_users,
            exclude_types=HIDDEN_USER_TYPES, cap=_CANDIDATES,
        )
        remote = await self.store.search_remote(searcher, words, _CANDIDATES)
        found = sorted((u for u in local + remote if matches(u, words, term)), key=lambda u: _rank(u, term))
        limited = len(found) > limit or len(local) >= _CANDIDATES or len(remote) >= _CANDIDATES
        return found[:limit], limited

    # --- keeping the index ---

    def on_room_event(self, event: StoredEvent, room: RoomRecord) -> None:
        """Every persisted event: remote users' join events, rooms opening or closing,
        and local users' joins (the room may have just come whole from another server,
        its state never passing here as events)."""
        if event.outlier or event.state_key is None:
            return
        if event.type == "m.room.member":
            joined = event.event.get("content", {}).get("membership") == "join"
            if not self.is_mine(event.state_key):
                if joined:
                    self._spawn(self._put_remote([(event.state_key, event.event.get("content", {}))]))
            elif not joined:
                # Perhaps the last local member: the room may next come whole again.
                self._whole.discard(room.room_nid)
            elif room.room_nid not in self._whole:
                # The room whole once, not per local join (a big room's whole state
                # each time): after it, its changes come here as events.
                self._whole.add(room.room_nid)
                self._spawn(self._index_room(room))
        elif event.type in _OPENING_TYPES and event.state_key == "":
            self._spawn(self._refresh_room(room))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("user directory update failed", exc_info=task.exception())

    async def settle(self) -> None:
        """Wait for the index updates under way (tests; shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _put_remote(self, members: list[tuple[str, dict[str, Any]]]) -> None:
        """Other servers' users by the content of their join events."""
        rows = []
        for user_id, content in members:
            name = content.get("displayname")
            avatar = content.get("avatar_url")
            display_name = name if isinstance(name, str) else None
            avatar_url = avatar if isinstance(avatar, str) and avatar.startswith("mxc://") else None
            text = " ".join(search_words(display_name or "") + search_words(user_id))
            rows.append((user_id, display_name, avatar_url, " " + text))
        await self.store.put_remote(rows)

    async def _index_room(self, room: RoomRecord) -> None:
        """The room's openness and its remote joined members, from its current state."""
        try:
            await self._index_whole(room)
        except BaseException:
            self._whole.discard(room.room_nid)  # the next local join tries again
            raise

    async def _index_whole(self, room: RoomRecord) -> None:
        await self._refresh_room(room)
        ids = await self.room_service.current_state_ids(room)
        remote = [k for k in ids if k[0] == "m.room.member" and not self.is_mine(k[1])]
        if not remote:
            return
        events = await self.room_service.state_events(ids, remote)
        await self._put_remote([
            (key[1], ev.event.get("content", {})) for key, ev in events.items()
            if ev.event.get("content", {}).get("membership") == "join"
        ])

    async def _refresh_room(self, room: RoomRecord) -> None:
        # One at a time: each reads the current state, so the last one writes the truth.
        async with self._room_lock:
            state = await self.room_service.current_state_events(room, [(t, "") for t in _OPENING_TYPES])
            join_rules = state.get(("m.room.join_rules", ""))
            visibility = state.get(("m.room.history_visibility", ""))
            is_open = (
                join_rules is not None and join_rules.event.get("content", {}).get("join_rule") == "public"
            ) or (
                visibility is not None
                and visibility.event.get("content", {}).get("history_visibility") == "world_readable"
            )
            await self.store.set_room_open(room.room_nid, is_open)

    def start(self) -> None:
        """Fill the index in the background if it never was (a server upgraded to it)."""
        self._spawn(self._ensure_built())

    async def _ensure_built(self) -> None:
        if self._built:
            return
        async with self._build_lock:
            if self._built:
                return
            if not await self.store.is_built():
                await self._build()
                await self.store.mark_built()
            self._built = True

    async def _build(self) -> None:
        """Fill the index from the rooms and memberships held before it existed."""
        for room_id in await self.store.room_ids():
            room = await self.room_service.find_room(room_id)
            if room is not None:
                await self._refresh_room(room)
        await self._put_remote([
            (user_id, content) for user_id, content in await self.store.joined_member_contents()
            if not self.is_mine(user_id)
        ])
