"""Room administration: summaries for the admin API, blocking, and shutting rooms down.

Shutting a room down makes every local member leave (optionally moving them to a new
notice room), and with `purge` removes the room from the database and from every
in-memory cache, so the server behaves afterwards as if it had never known the room.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.errors import MatrixError
from homeserver.records.admin_rooms import PurgeResult, RoomCounts
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.public_rooms import plain_topic
from homeserver.storage.admin_rooms import AdminRoomStore

if TYPE_CHECKING:
    from homeserver.account_data import AccountDataService
    from homeserver.clock import Clock
    from homeserver.receipts import ReceiptService
    from homeserver.rooms.creation import RoomCreator
    from homeserver.rooms.membership import MembershipService
    from homeserver.rooms.servers import RoomServers
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore
    from homeserver.storage.state import StateStore
    from homeserver.sync.service import SyncService
    from homeserver.sync.unread import UnreadCounter
    from homeserver.typing import TypingService

logger = logging.getLogger(__name__)

DEFAULT_NOTICE_ROOM_NAME = "Content Violation Notification"
DEFAULT_NOTICE_MESSAGE = (
    "Sharing illegal content on this server is not permitted and rooms in violation will be blocked."
)
# Statuses a deletion reports, as Synapse's admin API names them.
COMPLETE, FAILED = "complete", "failed"
_TASK_LIMIT = 1000  # kept in memory until restart, as Synapse does for 24 hours


def _content(events: dict[tuple[str, str], Any], event_type: str) -> dict[str, Any]:
    ev = events.get((event_type, ""))
    content = ev.event.get("content") if ev is not None else None
    return content if isinstance(content, dict) else {}


def _str(content: dict[str, Any], key: str) -> str | None:
    value = content.get(key)
    return value if isinstance(value, str) else None


@dataclass
class DeleteTask:
    delete_id: str
    room_id: str
    status: str
    shutdown_room: dict[str, Any]
    error: str | None = None

    def to_json(self, *, with_ids: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"delete_id": self.delete_id, "room_id": self.room_id, "status": self.status}
        if self.error is not None:
            out["error"] = self.error
        out["shutdown_room"] = self.shutdown_room
        return out


@dataclass
class ShutdownParams:
    requester: str
    block: bool = False
    purge: bool = True
    force_purge: bool = False
    new_room_user_id: str | None = None
    room_name: str | None = None
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class RoomAdmin:
    def __init__(
        self, *, store: AdminRoomStore, clock: Clock, rooms: RoomStore, events: EventStore,
        state: StateStore, room_service: RoomService, room_servers: RoomServers,
        membership: MembershipService, room_creator: RoomCreator, sync: SyncService,
        unread: UnreadCounter, receipts: ReceiptService, account_data: AccountDataService,
        typing: TypingService,
    ) -> None:
        self.store = store
        self.clock = clock
        self.rooms = rooms
        self.events = events
        self.state = state
        self.room_service = room_service
        self.room_servers = room_servers
        self.membership = membership
        self.room_creator = room_creator
        # What a purge clears of the room from memory.
        self.sync = sync
        self.unread = unread
        self.receipts = receipts
        self.account_data = account_data
        self.typing = typing
        # Called with the room ID before a purge removes its events (the media they mention).
        self.before_purge: list[Callable[[str], Awaitable[object]]] = []
        self._tasks: dict[str, DeleteTask] = {}

    # --- reading ---

    async def summary(self, room: RoomRecord, counts: RoomCounts | None = None, *, details: bool = False) -> dict[str, Any]:
        """The room as the admin API's room list (and, with `details`, room details) shows it."""
        if counts is None:
            counts = (await self.store.counts(room.room_nid)).get(room.room_nid, RoomCounts())
        state = await self.room_service.current_state_events(
            room,
            [(t, "") for t in (
                "m.room.create", "m.room.name", "m.room.canonical_alias", "m.room.join_rules",
                "m.room.guest_access", "m.room.history_visibility", "m.room.encryption",
                "m.room.topic", "m.room.avatar", "m.room.tombstone",
            )],
        )
        out: dict[str, Any] = {
            "room_id": room.room_id,
            "name": _str(_content(state, "m.room.name"), "name"),
            "canonical_alias": _str(_content(state, "m.room.canonical_alias"), "alias"),
            "joined_members": counts.joined,
            "joined_local_members": counts.joined_local,
            "version": room.room_version,
            "creator": room.creator,
            "encryption": _str(_content(state, "m.room.encryption"), "algorithm"),
            "federatable": room.federate,
            "public": room.published,
            "join_rules": _str(_content(state, "m.room.join_rules"), "join_rule"),
            "guest_access": _str(_content(state, "m.room.guest_access"), "guest_access"),
            "history_visibility": _str(_content(state, "m.room.history_visibility"), "history_visibility"),
            "state_events": counts.state_events,
            "room_type": _str(_content(state, "m.room.create"), "type"),
        }
        if details:
            tombstone = state.get(("m.room.tombstone", ""))
            out.update({
                "topic": plain_topic(_content(state, "m.room.topic")),
                "avatar": _str(_content(state, "m.room.avatar"), "url"),
                "joined_local_devices": counts.joined_local_devices,
                "forgotten": await self.store.all_local_forgotten(room.room_nid),
                "tombstoned": tombstone is not None,
                "replacement_room": _str(_content(state, "m.room.tombstone"), "replacement_room"),
            })
        return out

    async def list_rooms(self, search_term: str | None, public: bool | None, empty: bool | None) -> list[dict[str, Any]]:
        """Every room's summary, filtered as the admin API's room list filters."""
        counts = await self.store.counts()
        out = []
        for room in await self.store.all_rooms():
            s = await self.summary(room, counts.get(room.room_nid, RoomCounts()))
            if public is not None and s["public"] != public:
                continue
            if empty is not None and (s["joined_members"] == 0) != empty:
                continue
            if search_term is not None and not _matches(s, search_term):
                continue
            out.append(s)
        return out

    # --- blocking ---

    async def get_room(self, room_id: str) -> RoomRecord | None:
        return await self.rooms.get_room(room_id)

    async def joined_members(self, room: RoomRecord) -> list[str]:
        """The room's joined members, sorted."""
        return sorted(u for u, _, _ in await self.rooms.members(room.room_nid, "join"))

    async def blocked_by(self, room_id: str) -> str | None:
        """Who blocked the room (None when it is not blocked)."""
        return await self.store.blocked_by(room_id)

    async def set_blocked(self, room_id: str, blocked: bool, by: str) -> None:
        await self.store.set_blocked(room_id, blocked, by, self.clock.time_ms())

    async def check_not_blocked(self, room_id: str, user_id: str) -> None:
        """Refuse a local user's way into a blocked room (join, invite or knock)."""
        if self.membership.is_local(user_id) and await self.store.is_blocked(room_id):
            raise MatrixError(403, "M_FORBIDDEN", "This room has been blocked on this server")

    # --- shutting down ---

    def tasks_for_room(self, room_id: str) -> list[DeleteTask]:
        return [t for t in self._tasks.values() if t.room_id == room_id]

    def task(self, delete_id: str) -> DeleteTask | None:
        return self._tasks.get(delete_id)

    async def delete_room(self, room_id: str, params: ShutdownParams) -> DeleteTask:
        """Shut down (and purge) a room, recording the outcome as a delete task.

        Runs to completion before returning: a failure is reported in the task's
        status rather than raised, as the asynchronous v2 API reports it."""
        task = DeleteTask(
            "".join(secrets.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(16)),
            room_id, "active", _empty_shutdown(),
        )
        self._tasks[task.delete_id] = task
        if len(self._tasks) > _TASK_LIMIT:
            self._tasks.pop(next(iter(self._tasks)))
        try:
            task.shutdown_room = await self.shutdown(room_id, params)
            if params.purge:
                await self.purge(room_id, force=params.force_purge, missing_ok=params.block)
            task.status = COMPLETE
        except MatrixError as e:
            task.status, task.error = FAILED, e.message
        except Exception as e:  # a failed background task reports, never vanishes
            logger.exception("deleting room %s failed", room_id)
            task.status, task.error = FAILED, str(e) or type(e).__name__
        return task

    async def shutdown(self, room_id: str, params: ShutdownParams) -> dict[str, Any]:
        """Make every local member leave, optionally into a new notice room, and block.

        An unknown room can only be blocked (pre-emptively); anything else about it is
        a bad request."""
        if params.new_room_user_id is not None and not self.membership.is_local(params.new_room_user_id):
            raise MatrixError(400, "M_UNKNOWN", "User must be our own: " + params.new_room_user_id)
        room = await self.rooms.get_room(room_id)
        if room is None:
            if params.block:
                await self.set_blocked(room_id, True, params.requester)
                return _empty_shutdown()
            raise MatrixError(400, "M_UNKNOWN", f"Unknown room {room_id}")
        if params.block:
            await self.set_blocked(room_id, True, params.requester)
        new_room = None
        notice_user = params.new_room_user_id
        if notice_user is not None:
            new_room = await self._notice_room(params)
        await self.rooms.set_published(room_id, False)
        kicked: list[str] = []
        failed: list[str] = []
        for user_id, membership, _ in await self.rooms.members(room.room_nid):
            if membership not in ("join", "invite", "knock") or not self.membership.is_local(user_id):
                continue
            try:
                await self.membership.update(room, user_id, user_id, "leave")
                if new_room is not None and notice_user is not None and membership == "join" and user_id != notice_user:
                    await self.membership.update(new_room, notice_user, user_id, "invite")
                    await self.membership.update(new_room, user_id, user_id, "join")
                kicked.append(user_id)
            except MatrixError as e:
                logger.warning("shutting down %s: %s could not leave: %s", room_id, user_id, e.message)
                failed.append(user_id)
        aliases = await self.rooms.aliases_for_room(room_id)
        if new_room is not None:
            await self.rooms.move_aliases(room_id, new_room.room_id)
        return {
            "kicked_users": kicked,
            "failed_to_kick_users": failed,
            "local_aliases": aliases,
            "new_room_id": new_room.room_id if new_room is not None else None,
        }

    async def _notice_room(self, params: ShutdownParams) -> RoomRecord:
        """The room members of a shut-down room are moved to, where they may not speak."""
        creator = params.new_room_user_id
        assert creator is not None
        room_id = await self.room_creator.create(creator, {
            "preset": "public_chat",
            "name": params.room_name or DEFAULT_NOTICE_ROOM_NAME,
            "power_level_content_override": {"users_default": -10},
        })
        room = await self.room_service.get_room(room_id)
        await self.room_service.create_event(
            room, creator, "m.room.message",
            {"msgtype": "m.text", "body": params.message or DEFAULT_NOTICE_MESSAGE},
        )
        return room

    async def purge(self, room_id: str, *, force: bool = False, missing_ok: bool = False) -> PurgeResult | None:
        """Remove the room from the database and every cache that could bring it back."""
        room = await self.rooms.get_room(room_id)
        if room is None:
            if missing_ok:
                return None
            raise MatrixError(404, "M_NOT_FOUND", "Room not found")
        async with self.room_service.lock(room_id):  # no event of the room is written meanwhile
            if not force:
                joined = await self.room_service.joined_local_users(room)
                if joined:
                    raise MatrixError(
                        400, "M_UNKNOWN", f"Cannot purge room: local users are still joined ({len(joined)})"
                    )
            for hook in self.before_purge:
                await hook(room_id)
            result = await self.store.purge(room)
            self._forget_caches(room, result)
        return result

    def _forget_caches(self, room: RoomRecord, result: PurgeResult) -> None:
        nid = room.room_nid
        store = self.rooms
        store._rooms.pop(room.room_id, None)
        store._rooms_by_nid.pop(nid, None)
        self.room_service.forget_room(nid, result.event_ids)
        for event_id in result.event_ids:
            self.events.forget(event_id)
        for snapshot in result.snapshot_nids:
            self.state.forget_snapshot(snapshot)
        self.room_servers.invalidate(nid)
        for user_id in result.members:
            self.sync.invalidate_memberships(user_id)
        self.unread.forget_room(nid)
        receipts = self.receipts
        receipts._room_pos.pop(room.room_id, None)
        for rkey in [k for k in receipts._read_cache if k[1] == room.room_id]:
            del receipts._read_cache[rkey]
        receipts._writes += 1  # a read that raced the purge must not be cached
        account_data = self.account_data
        for akey in [k for k in account_data._cache if k[1] == room.room_id]:
            del account_data._cache[akey]
        account_data._writes += 1
        self.typing._rooms.pop(room.room_id, None)


def _empty_shutdown() -> dict[str, Any]:
    return {"kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": None}


def _matches(summary: dict[str, Any], term: str) -> bool:
    """Synapse's search_term: in the name, the canonical alias's localpart, or the room ID."""
    name = summary["name"] or ""
    alias = summary["canonical_alias"] or ""
    alias_local = alias[1:].split(":", 1)[0] if alias else ""
    lowered = term.lower()
    return lowered in name.lower() or lowered in alias_local.lower() or term in summary["room_id"]
