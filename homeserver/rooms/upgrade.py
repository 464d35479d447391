"""POST /rooms/{roomId}/upgrade: replace a room by a new one of another (or the same)
room version, following the steps of the spec's "Server behaviour" in order.

Every event of the upgrade is an ordinary event authorised by the auth rules, sent
by the upgrading user; nothing bypasses `RoomService.create_event`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
import weakref
from typing import TYPE_CHECKING, Any

from federation.events import (
    CanonicalJSONError,
    EventFormatError,
    UnsupportedRoomVersionError,
    build_event,
    get_required_power_level,
    get_room_version,
    get_user_power_level,
    room_creators,
    room_id_from_create_event_id,
)
from federation.events.room_versions import RoomVersion
from homeserver.errors import MatrixError, forbidden
from homeserver.identifiers import parse_user_id
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.rooms.membership import MembershipService
    from homeserver.rooms.service import RoomService
    from homeserver.signing_key import SigningKey
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]
CREATE: StateKey = ("m.room.create", "")
POWER_LEVELS: StateKey = ("m.room.power_levels", "")
CANONICAL_ALIAS: StateKey = ("m.room.canonical_alias", "")
#: The spec's recommended transferable state, minus power levels (handled apart
#: because the upgrader may need temporary power to send the rest).
TRANSFERRED_STATE = (
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
)
TOMBSTONE_BODY = "This room has been replaced"
#: How long a repeated identical upgrade request returns the replacement already made.
REPEAT_WINDOW_MS = 5 * 60 * 1000


def parse_room_version(version: Any) -> RoomVersion:
    """The room version to upgrade to, or the spec's 400 M_UNSUPPORTED_ROOM_VERSION."""
    try:
        return get_room_version(version)
    except UnsupportedRoomVersionError:
        raise MatrixError(
            400, "M_UNSUPPORTED_ROOM_VERSION", f"This server does not support room version {version!r}"
        ) from None


def _int(value: Any, default: int) -> int:
    return value if type(value) is int else default


def _levels_in(content: dict[str, Any]) -> list[int]:
    """Every integer level a power levels content mentions."""
    out = [v for k, v in content.items() if k not in ("users", "events", "notifications") and type(v) is int]
    for sub in ("users", "events"):
        mapping = content.get(sub)
        if isinstance(mapping, dict):
            out.extend(v for v in mapping.values() if type(v) is int)
    return out


class RoomUpgradeService:
    def __init__(
        self, *, server_name: str, signing_key: SigningKey, clock: Clock, rooms: RoomStore,
        events: EventStore, room_service: RoomService, membership: MembershipService,
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.clock = clock
        self.rooms = rooms
        self.events = events
        self.room_service = room_service
        self.membership = membership
        # One upgrade of a room at a time: two concurrent upgrades would both
        # tombstone the room and split its members between two replacements.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[room_id] = lock
        return lock

    async def upgrade(
        self, user_id: str, room: RoomRecord, new_version: RoomVersion, additional_creators: list[str]
    ) -> str:
        """Upgrade `room` (which `user_id` is joined to); returns the replacement's room ID."""
        async with self._lock(room.room_id):
            recent = await self._recent_replacement(user_id, room, new_version)
            if recent is not None:
                return recent
            return await self._upgrade(user_id, room, new_version, additional_creators)

    async def _recent_replacement(self, user_id: str, room: RoomRecord, rv: RoomVersion) -> str | None:
        """The replacement this user made moments ago to the same version, if any.

        A repeated request (a double click, a client retry after a timeout) must not
        tombstone the room a second time and split its members between two new rooms;
        after the window a deliberate re-upgrade proceeds.
        """
        tombstone = await self.room_service.current_state_event(room, ("m.room.tombstone", ""))
        if tombstone is None or tombstone.sender != user_id:
            return None
        if self.clock.time_ms() - int(tombstone.event["origin_server_ts"]) > REPEAT_WINDOW_MS:
            return None
        replacement = tombstone.event["content"].get("replacement_room")
        new_room = await self.rooms.get_room(replacement) if isinstance(replacement, str) else None
        if new_room is None or new_room.room_version != rv.identifier:
            return None
        create = await self.room_service.current_state_event(new_room, CREATE)
        predecessor = create.event["content"].get("predecessor") if create is not None else None
        if not isinstance(predecessor, dict) or predecessor.get("room_id") != room.room_id:
            return None
        return new_room.room_id

    async def _upgrade(
        self, user_id: str, room: RoomRecord, rv: RoomVersion, additional_creators: list[str]
    ) -> str:
        rooms = self.room_service
        state_ids = await rooms.current_state_ids(room)
        wanted = [CREATE, POWER_LEVELS, CANONICAL_ALIAS, *((t, "") for t in TRANSFERRED_STATE)]
        members = [k for k in state_ids if k[0] == "m.room.member"]
        old_state = await rooms.state_events(state_ids, [*wanted, *members])
        plain = {k: ev.event for k, ev in old_state.items()}
        old_rv = get_room_version(room.room_version)

        # 1. The upgrader must be able to send m.room.tombstone.
        my_old_level = get_user_power_level(user_id, plain, old_rv)
        if my_old_level < get_required_power_level(plain, "m.room.tombstone", ""):
            raise forbidden("You cannot upgrade this room")

        if not rv.creators_have_infinite_power:
            additional_creators = []
        additional_creators = [u for u in dict.fromkeys(additional_creators) if u != user_id]
        new_creators = {user_id, *additional_creators}

        # 2. The replacement room, pointing back at this one.
        old_create = old_state[CREATE].event["content"]
        creation: dict[str, Any] = {
            "room_version": rv.identifier,
            "predecessor": {"room_id": room.room_id},
        }
        last = await self._last_event_id(room)
        if last is not None:
            # Deprecated since v1.16 and optional for v12 rooms, but still "SHOULD be
            # populated where possible": it is the last event before the upgrade.
            creation["predecessor"]["event_id"] = last
        if isinstance(old_create.get("type"), str):
            creation["type"] = old_create["type"]
        if old_create.get("m.federate") is False:
            creation["m.federate"] = False  # a local-only room stays local-only
        if rv.create_requires_creator_field:
            creation["creator"] = user_id
        if additional_creators:
            creation["additional_creators"] = additional_creators
        new_room = await self._create(user_id, rv, creation, room.federate)

        async def send(event_type: str, content: dict[str, Any], state_key: str = "") -> StoredEvent:
            return await rooms.create_event(new_room, user_id, event_type, content, state_key=state_key)

        await send("m.room.member", await self.membership.member_content(user_id, "join"), user_id)

        # 3. Transferable state. Power levels go first, with the upgrader raised as far
        # as needed to send everything else; the exact copy follows at the end.
        final_levels = self._new_power_levels(old_state, old_rv, rv, user_id, my_old_level, new_creators)
        setup_levels = final_levels
        if final_levels is not None and not rv.creators_have_infinite_power:
            users = final_levels["users"]
            mine = _int(users.get(user_id), _int(final_levels.get("users_default"), 0))
            needed = max([mine, *_levels_in({k: v for k, v in final_levels.items() if k != "users"})])
            if needed > mine:
                setup_levels = copy.deepcopy(final_levels)
                setup_levels["users"][user_id] = needed
        if setup_levels is not None:
            await send("m.room.power_levels", setup_levels)
        for event_type in TRANSFERRED_STATE:
            ev = old_state.get((event_type, ""))
            if ev is not None:
                await send(event_type, copy.deepcopy(ev.event["content"]))
        # Bans carry over, or an upgrade would be a way back in for those removed.
        creators_now = room_creators({"sender": user_id, "content": creation}, rv)
        for (event_type, target), ev in old_state.items():
            if event_type != "m.room.member" or ev.event["content"].get("membership") != "ban":
                continue
            if target in creators_now:
                continue
            content: dict[str, Any] = {"membership": "ban"}
            if isinstance(ev.event["content"].get("reason"), str):
                content["reason"] = ev.event["content"]["reason"]
            await send("m.room.member", content, target)

        # 4. Local aliases and the canonical alias move to the new room, as does the
        # room's place in the published directory.
        await self.rooms.move_aliases(room.room_id, new_room.room_id)
        alias_event = old_state.get(CANONICAL_ALIAS)
        if alias_event is not None and alias_event.event["content"]:
            await send("m.room.canonical_alias", copy.deepcopy(alias_event.event["content"]))
            await self._try(room, user_id, "m.room.canonical_alias", {})
        if room.published:
            await self.rooms.set_published(new_room.room_id, True)
            await self.rooms.set_published(room.room_id, False)
        if setup_levels is not final_levels and final_levels is not None:
            await send("m.room.power_levels", final_levels)

        # 5. The tombstone tells clients where the room went.
        await rooms.create_event(
            room, user_id, "m.room.tombstone",
            {"body": TOMBSTONE_BODY, "replacement_room": new_room.room_id}, state_key="",
        )

        # 6. Stop the old room being used: no more messages or invites from ordinary members.
        levels = await rooms.current_state_event(room, POWER_LEVELS)
        if levels is not None:
            content = copy.deepcopy(levels.event["content"])
            restricted = max(50, _int(content.get("users_default"), 0) + 1)
            changed = False
            for key, default in (("events_default", 0), ("invite", 0)):
                if _int(content.get(key), default) < restricted:
                    content[key] = restricted
                    changed = True
            if changed:
                await self._try(room, user_id, "m.room.power_levels", content)
        return new_room.room_id

    async def _last_event_id(self, room: RoomRecord) -> str | None:
        nids = await self.rooms.forward_extremities(room.room_nid)
        events = await self.events.get_events_by_nid(nids)
        newest = max(events.values(), key=lambda e: e.stream_ordering or 0, default=None)
        return newest.event_id if newest is not None else None

    async def _create(self, creator: str, rv: RoomVersion, content: dict[str, Any], federate: bool) -> RoomRecord:
        room_id = None if rv.room_id_is_create_event_id else f"!{secrets.token_urlsafe(18)}:{self.server_name}"
        try:
            event = build_event(
                rv, room_id=room_id, sender=creator, event_type="m.room.create", content=content,
                prev_events=[], auth_events=[], depth=1, origin_server_ts=self.clock.time_ms(),
                state_key="", signing_key=self.signing_key, server_name=self.server_name,
            )
        except (EventFormatError, CanonicalJSONError) as e:
            raise MatrixError(400, "M_BAD_JSON", str(e)) from None
        if room_id is None:
            room_id = room_id_from_create_event_id(event["event_id"])
        room, _ = await self.room_service.create_room_event(room_id, rv, creator, federate, event)
        return room

    @staticmethod
    def _new_power_levels(
        old_state: dict[StateKey, StoredEvent],
        old_rv: RoomVersion,
        rv: RoomVersion,
        upgrader: str,
        old_level: int | float,
        new_creators: set[str],
    ) -> dict[str, Any] | None:
        """The old room's power levels as the new room's version requires them.

        Into a v12+ room the new creators leave `users` (the auth rules forbid them
        there; they hold infinite power instead). Out of a room where the upgrader was
        an infinitely powerful creator, they get an explicit level at least as high as
        any the room mentions. Other old creators keep no special power: an upgrade is
        how a v12 room sheds a creator, so it must not re-grant one implicitly.
        """
        ev = old_state.get(POWER_LEVELS)
        if ev is None:
            return None
        content = copy.deepcopy(ev.event["content"])
        users = content.get("users")
        users = dict(users) if isinstance(users, dict) else {}
        if rv.creators_have_infinite_power:
            for creator in new_creators:
                users.pop(creator, None)
        elif old_rv.creators_have_infinite_power and old_level == float("inf"):
            users[upgrader] = max([100, *_levels_in(content)])
        content["users"] = users
        return content

    async def _try(self, room: RoomRecord, sender: str, event_type: str, content: dict[str, Any]) -> None:
        """Send a best-effort event in the old room ("if possible", says the spec)."""
        try:
            await self.room_service.create_event(room, sender, event_type, content, state_key="")
        except MatrixError as e:
            logger.info("upgrade of %s: could not send %s: %s", room.room_id, event_type, e.message)


def parse_additional_creators(value: Any) -> list[str]:
    """The request's additional_creators: a list of valid user IDs (M_BAD_JSON otherwise)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(u, str) and parse_user_id(u) for u in value):
        raise MatrixError(400, "M_BAD_JSON", "'additional_creators' must be a list of user IDs")
    return list(value)
