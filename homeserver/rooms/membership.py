"""Membership changes: join, invite, leave, kick, ban, unban, knock, forget.

Each change is an m.room.member event authorised by the room's auth rules;
this module adds what the client-server API layers on top of them:

* the joiner's profile in the content (the spec asks servers to include it),
* checks the auth rules cannot express (unban only whom is banned, kick only
  whom is in the room, guests only into rooms that admit them) and friendlier
  refusals than the rule texts, run under the room lock so they cannot race,
* no-ops instead of duplicate events (joining twice, inviting the invited),
* restricted joins: naming a local user who may invite as the spec's
  ``join_authorised_via_users_server`` when the joiner qualifies,
* propagating profile changes into every joined room, and removing guests
  from rooms that stop admitting them.

Rooms this server is not in (it holds no part of their DAG, or nobody here is
joined any more while other servers are) are joined, left and knocked on
through a server that is in them; users on other servers are invited through
their own server, which countersigns the invite. Internal rooms
(``m.federate: false``) admit this server's users only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from federation.events import get_named_level, get_room_version, get_user_power_level
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.identifiers import parse_user_id
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.identifiers import LocalServer
    from homeserver.rooms.servers import RoomServers
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore
    from homeserver.storage.users import UserStore

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]
CREATE: StateKey = ("m.room.create", "")
JOIN_RULES: StateKey = ("m.room.join_rules", "")
POWER_LEVELS: StateKey = ("m.room.power_levels", "")
GUEST_ACCESS: StateKey = ("m.room.guest_access", "")
# What a would-be member sees of a room before joining (the spec's stripped state, for
# invites and knocks); the create event comes first and is required over federation.
STRIPPED_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
    "m.room.canonical_alias", "m.room.encryption", "m.room.topic",
)

# What a request asks for, which is more than the membership it results in:
# "leave" is leaving, rejecting an invite or retracting a knock; "kick" and
# "unban" also end in leave; "profile" re-sends a join with a new profile.
ACTIONS = ("join", "invite", "leave", "kick", "ban", "unban", "knock", "profile")
_MEMBERSHIP_OF_ACTION = {"kick": "leave", "unban": "leave", "profile": "join"}
_NO_FEDERATION = "joining it needs federation with its server"


def _membership(event: StoredEvent | None) -> str | None:
    if event is None:
        return None
    value = event.event.get("content", {}).get("membership")
    return value if isinstance(value, str) else None


class RemoteJoins(Protocol):
    """Joining a room through a server that is in it (FederatedJoins)."""

    async def join_remote(
        self, user_id: str, room_id: str, servers: list[str], extra: dict[str, Any] | None = None
    ) -> str: ...


class RemoteInvites(Protocol):
    """Invites over federation (FederatedInvites)."""

    async def send_invite(self, room: RoomRecord, event: dict[str, Any]) -> dict[str, Any]: ...

    async def reject(self, room: RoomRecord, user_id: str, invite: StoredEvent, reason: str | None) -> StoredEvent: ...


class RoomBlocks(Protocol):
    """Rooms the server admin has blocked (RoomAdmin)."""

    async def check_not_blocked(self, room_id: str, user_id: str) -> None: ...


class GlobalAccountData(Protocol):
    async def get_global(self, user_id: str, data_type: str) -> dict[str, Any] | None: ...


class MembershipService:
    def __init__(
        self, *, local: LocalServer, federation_enabled: bool,
        allow_destination: Callable[[str, str], bool], users: UserStore, rooms: RoomStore,
        events: EventStore, room_service: RoomService, room_servers: RoomServers,
        account_data: GlobalAccountData,
    ) -> None:
        self.local = local
        self.server_name = local.server_name
        self.federation_enabled = federation_enabled
        self.allow_destination = allow_destination
        self.users = users
        self.rooms = rooms
        self.events = events
        self.room_service = room_service
        self.room_servers = room_servers
        self.account_data = account_data
        self._joins: RemoteJoins | None = None
        self._invites: RemoteInvites | None = None
        self._blocks: RoomBlocks | None = None
        self._forgotten: Callable[[str], None] = lambda user_id: None

    def connect(
        self, *, joins: RemoteJoins, invites: RemoteInvites, blocks: RoomBlocks,
        forgotten: Callable[[str], None],
    ) -> None:
        """The collaborators built after this service. Federated joins and invites
        and the room admin each use this service (cycles); sync is built later, with
        its streams. server.py connects them once they exist."""
        self._joins = joins
        self._invites = invites
        self._blocks = blocks
        self._forgotten = forgotten  # sync drops its cached memberships of the user

    @property
    def joins(self) -> RemoteJoins:
        assert self._joins is not None, "MembershipService.connect was not called"
        return self._joins

    @property
    def invites(self) -> RemoteInvites:
        assert self._invites is not None, "MembershipService.connect was not called"
        return self._invites

    @property
    def blocks(self) -> RoomBlocks:
        assert self._blocks is not None, "MembershipService.connect was not called"
        return self._blocks

    def is_local(self, user_id: str) -> bool:
        return parse_user_id(user_id) is not None and self.local.is_mine(user_id)

    async def member_content(self, user_id: str, membership: str) -> dict[str, Any]:
        """Content for a membership event, with the user's profile where the spec
        wants it (so clients need no extra profile lookups)."""
        content: dict[str, Any] = {"membership": membership}
        if membership in ("join", "invite", "knock"):
            profile = await self.users.get_full_profile(user_id)
            if profile:
                for key in ("displayname", "avatar_url"):
                    if isinstance(profile.get(key), str):
                        content[key] = profile[key]
        return content

    async def resolve_room(self, room_id_or_alias: str) -> RoomRecord:
        """The local room a room ID or alias names; 404 M_NOT_FOUND when this
        server does not know it (rooms elsewhere would need federation)."""
        server_name = self.server_name
        if room_id_or_alias.startswith("#"):
            _, sep, domain = room_id_or_alias.partition(":")
            if not sep or len(room_id_or_alias) < 3:
                raise invalid_param("Invalid room alias")
            found = await self.rooms.get_alias(room_id_or_alias)
            if found is None:
                if domain != server_name:
                    raise not_found(f"Room alias {room_id_or_alias} is not known here; {_NO_FEDERATION}")
                raise not_found("Room alias not found")
            room_id_or_alias = found[0]
        elif not room_id_or_alias.startswith("!") or len(room_id_or_alias) < 2:
            raise invalid_param("Expected a room ID or room alias")
        room = await self.rooms.get_room(room_id_or_alias)
        if room is None:
            _, sep, domain = room_id_or_alias.partition(":")
            if sep and domain != server_name:
                raise not_found(f"Room {room_id_or_alias} is not known here; {_NO_FEDERATION}")
            raise not_found("Room not found")
        return room

    async def is_resident(self, room: RoomRecord | None) -> bool:
        """Whether this server takes part in the room, so that membership changes
        are events built on its own DAG head. A room known only from an invite or
        a knock has no head here; one that everybody here has left, while other
        servers remain, has a stale one: both are reached through those servers."""
        if room is None:
            return False
        head = await self.room_service.head(room)
        if head.snapshot is None:
            return False
        if await self.room_service.joined_local_users(room):
            return True
        return not await self.room_servers.servers_in_room(room)

    async def servers_to_ask(self, room_id: str, user_id: str, via: list[str]) -> list[str]:
        """Servers that may be in a room this server is not in: those the client
        named, the server that invited us, those we last saw there, the room ID's."""
        servers = list(via)
        room = await self.rooms.get_room(room_id)
        if room is not None:
            current = await self.rooms.membership_of(room.room_nid, user_id)
            if current is not None:
                event = (await self.events.get_events_by_nid([current[1]])).get(current[1])
                if event is not None:
                    servers.append(event.sender.partition(":")[2])
            servers.extend(sorted(await self.room_servers.servers_in_room(room)))
        if ":" in room_id:
            servers.append(room_id.partition(":")[2])
        own = self.server_name
        return [s for s in dict.fromkeys(servers) if s and s != own]

    async def check_invitee(self, user_id: str, room: RoomRecord | None = None) -> None:
        """Refuse invites that could never be delivered or accepted.

        Inviting a local ID nobody holds would hand the room to whoever
        registers it later; a remote user can only be invited into a room that
        federates, by a server that federates (their server answers for them);
        and users may block invites altogether.
        """
        parsed = parse_user_id(user_id)
        if parsed is None:
            raise invalid_param(f"Invalid user ID {user_id!r}")
        if parsed[1] != self.server_name:
            if not self.federation_enabled:
                raise forbidden(f"Cannot invite {user_id}: federation is disabled on this server")
            if room is not None and not room.federate:
                raise forbidden(
                    f"Cannot invite {user_id}: this room is internal to {self.server_name}"
                )
            if not self.allow_destination(parsed[1], "invite"):
                # Before any event exists (and, from createRoom, before the room does).
                raise forbidden(
                    f"Cannot invite {user_id}: this server's federation policy does not allow {parsed[1]}"
                )
            return
        user = await self.users.get_user(user_id)
        if user is None:
            raise not_found(f"User {user_id} does not exist")
        if user.deactivated:
            raise forbidden(f"User {user_id} has been deactivated")
        # The spec's invite permission (v1.18): a user may refuse all invites.
        config = await self.account_data.get_global(user_id, "m.invite_permission_config")
        if isinstance(config, dict) and config.get("default_action") == "block":
            raise MatrixError(403, "M_INVITE_BLOCKED", f"{user_id} does not accept invites")

    # --- the client-server actions ---

    async def join(
        self, room: RoomRecord, user_id: str, *, reason: str | None = None, is_guest: bool = False,
        via: list[str] | None = None, extra: dict[str, Any] | None = None,
    ) -> str:
        """Join; returns the room ID (a room this server is not in is joined remotely).
        `extra` is further membership content the client sent (see `join_content`)."""
        await self.blocks.check_not_blocked(room.room_id, user_id)
        if not is_guest and not await self.is_resident(room):
            servers = await self.servers_to_ask(room.room_id, user_id, via or [])
            if servers:
                remote_extra = {**(extra or {}), **({"reason": reason} if reason is not None else {})}
                return await self.joins.join_remote(user_id, room.room_id, servers, remote_extra)
            if (await self.room_service.head(room)).snapshot is None:
                raise not_found("This server is not in the room and knows no server that is")
        await self.update(room, user_id, user_id, "join", reason=reason, is_guest=is_guest, extra=extra)
        return room.room_id

    async def invite(self, room: RoomRecord, sender: str, target: str, *, reason: str | None = None) -> StoredEvent:
        await self.check_invitee(target, room)
        return await self.update(room, sender, target, "invite", reason=reason)

    async def leave(self, room: RoomRecord, user_id: str, *, reason: str | None = None) -> StoredEvent | None:
        if not await self.is_resident(room):
            current = await self.rooms.membership_of(room.room_nid, user_id)
            if current is None:
                raise forbidden("You are not a member of this room")
            if current[0] in ("invite", "knock"):
                event = (await self.events.get_events_by_nid([current[1]]))[current[1]]
                return await self.invites.reject(room, user_id, event, reason)
            if current[0] in ("leave", "ban"):
                return None  # already out: what was asked holds
        return await self.update(room, user_id, user_id, "leave", reason=reason)

    async def kick(self, room: RoomRecord, sender: str, target: str, *, reason: str | None = None) -> StoredEvent:
        return await self.update(room, sender, target, "leave", reason=reason, action="kick")

    async def ban(self, room: RoomRecord, sender: str, target: str, *, reason: str | None = None) -> StoredEvent:
        return await self.update(room, sender, target, "ban", reason=reason)

    async def unban(self, room: RoomRecord, sender: str, target: str, *, reason: str | None = None) -> StoredEvent:
        return await self.update(room, sender, target, "leave", reason=reason, action="unban")

    async def knock(self, room: RoomRecord, user_id: str, *, reason: str | None = None) -> StoredEvent:
        return await self.update(room, user_id, user_id, "knock", reason=reason)

    async def forget(self, room: RoomRecord, user_id: str) -> None:
        """Hide a room the user has left from them, until they are next
        invited, join or knock (the storage resets the flag on those)."""
        async with self.room_service.lock(room.room_id):  # no membership change in between
            current = await self.rooms.membership_of(room.room_nid, user_id)
            if current is None:
                raise not_found("You have never been in this room")
            if current[0] in ("join", "invite", "knock"):
                what = {"join": "are in", "invite": "are invited to", "knock": "have knocked on"}[current[0]]
                raise MatrixError(
                    400, "M_UNKNOWN", f"You {what} room {room.room_id}; leave it before forgetting it"
                )
            await self.rooms.forget(room.room_nid, user_id)
            self._forgotten(user_id)  # forgetting sends no event

    # --- the one way membership changes ---

    async def update(
        self,
        room: RoomRecord,
        sender: str,
        target: str,
        membership: str,
        *,
        reason: str | None = None,
        is_direct: bool = False,
        extra: dict[str, Any] | None = None,
        action: str | None = None,
        is_guest: bool = False,
    ) -> StoredEvent:
        """Send the m.room.member event for `action` (by default the membership
        itself; "leave" of someone else counts as a kick)."""
        if action is None:
            action = "kick" if membership == "leave" and sender != target else membership
        if action not in ACTIONS or _MEMBERSHIP_OF_ACTION.get(action, action) != membership:
            raise ValueError(f"membership {membership!r} does not fit action {action!r}")
        if membership in ("join", "invite", "knock"):
            await self.blocks.check_not_blocked(room.room_id, target)
        content = await self.member_content(target, membership)
        before_persist = None
        if membership == "invite" and not self.is_local(target):
            async def before_persist(event: dict[str, Any]) -> dict[str, Any]:
                return await self.invites.send_invite(room, event)
        if membership == "invite" and is_direct:
            content["is_direct"] = True
        if reason is not None:
            content["reason"] = reason
        if extra:
            content.update(extra)

        async def precondition(snapshot: int | None) -> StoredEvent | None:
            return await self._precondition(room, snapshot, action, sender, target, content, is_guest)

        return await self.room_service.create_event(
            room, sender, "m.room.member", content, state_key=target, precondition=precondition,
            before_persist=before_persist,
        )

    async def _precondition(
        self,
        room: RoomRecord,
        snapshot: int | None,
        action: str,
        sender: str,
        target: str,
        content: dict[str, Any],
        is_guest: bool,
    ) -> StoredEvent | None:
        """Checks beyond the auth rules, against the state the event will follow.
        Returns the current member event when the request is already satisfied."""
        service = self.room_service
        keys = [("m.room.member", sender), ("m.room.member", target), JOIN_RULES, GUEST_ACCESS]
        # The target's key is new for every first join: looked up, not the state copied.
        state = await service.state_events_at_snapshot(snapshot, keys, look_up=True)
        current = state.get(("m.room.member", target))
        target_m = _membership(current)
        sender_m = _membership(state.get(("m.room.member", sender)))
        if action in ("invite", "kick", "ban", "unban") and sender_m != "join":
            # Before anything about the target: strangers learn nothing about members.
            raise forbidden("You are not joined to this room")

        if action == "join":
            if is_guest:
                guest = state.get(GUEST_ACCESS)
                if guest is None or guest.event["content"].get("guest_access") != "can_join":
                    raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may not join this room")
            if target_m == "ban":
                raise forbidden("You are banned from this room")
            if target_m == "join" and current is not None and current.event["content"] == content:
                return current
            if target_m not in ("join", "invite"):
                await self._authorise_restricted_join(room, snapshot, state.get(JOIN_RULES), target, content)
        elif action == "profile":
            if target_m != "join" or current is None:
                raise forbidden("No longer joined to this room")
            if current.event["content"] == content:
                return current
        elif action == "invite":
            if target_m == "invite":
                return current  # the spec: 200 when "already invited"
            if target_m == "join":
                raise forbidden(f"{target} is already in the room")
            if target_m == "ban":
                raise forbidden(f"{target} is banned from the room")
        elif action == "leave":
            if target_m is None:
                raise forbidden("You are not a member of this room")
            if target_m == "leave":
                return current  # already gone (left or kicked): what was asked holds
            if target_m == "ban":
                raise forbidden("You are banned from this room")
        elif action == "kick":
            if target_m not in ("join", "invite", "knock"):
                raise forbidden(f"{target} is not in the room")
        elif action == "ban":
            if target_m == "ban" and current is not None and current.event["content"] == content:
                return current
        elif action == "unban":
            if target_m != "ban":
                raise MatrixError(403, "M_BAD_STATE", f"{target} is not banned from this room")
        elif action == "knock":
            refusal = {
                "join": "You are already in this room",
                "invite": "You are already invited to this room; join it instead",
                "ban": "You are banned from this room",
            }.get(str(target_m))
            if refusal is not None:
                raise forbidden(refusal)
        return None

    async def authorise_restricted_join_content(self, room: RoomRecord, user_id: str, content: dict[str, Any]) -> None:
        """For a join built elsewhere (make_join): name our authorising user in a
        restricted room, from the room's current state."""
        snapshot = (await self.room_service.head(room)).snapshot
        rules = (await self.room_service.state_events_at_snapshot(snapshot, [JOIN_RULES])).get(JOIN_RULES)
        await self._authorise_restricted_join(room, snapshot, rules, user_id, content)

    async def _authorise_restricted_join(
        self,
        room: RoomRecord,
        snapshot: int | None,
        join_rules: StoredEvent | None,
        user_id: str,
        content: dict[str, Any],
    ) -> None:
        """For restricted rooms, name a local user who may invite (the spec's
        join_authorised_via_users_server) when the joiner is joined to a room
        the allow rules list; refuse with a clear reason otherwise."""
        rules = join_rules.event["content"] if join_rules is not None else {}
        join_rule = rules.get("join_rule")
        if join_rule not in ("restricted", "knock_restricted"):
            return
        allow = rules.get("allow", [])
        qualifies = False
        for entry in allow if isinstance(allow, list) else []:
            if not isinstance(entry, dict) or entry.get("type") != "m.room_membership":
                continue
            room_id = entry.get("room_id")
            other = await self.rooms.get_room(room_id) if isinstance(room_id, str) else None
            if other is None:
                continue  # rooms this server is not in cannot be verified
            m = await self.rooms.membership_of(other.room_nid, user_id)
            if m is not None and m[0] == "join":
                qualifies = True
                break
        if not qualifies:
            hint = "; you may knock to ask for one" if join_rule == "knock_restricted" else ""
            raise forbidden(
                "You need an invite to join this room, or to be joined to one of the rooms "
                f"its join rule allows{hint}"
            )
        rv = get_room_version(room.room_version)
        plain = {
            k: ev.event
            for k, ev in (await self.room_service.state_events_at_snapshot(snapshot, [POWER_LEVELS, CREATE])).items()
        }
        invite_level = get_named_level(plain, "invite")
        # The room's memberships table is current state, and we hold the room lock.
        joined = sorted(m for m, _, _ in await self.rooms.members(room.room_nid, "join"))
        for member in joined:
            if self.is_local(member) and get_user_power_level(member, plain, rv) >= invite_level:
                content["join_authorised_via_users_server"] = member
                return
        raise forbidden("No user on this server who may invite is in the room to authorise the join")

    # --- side effects of other changes ---

    async def propagate_profile(self, user_id: str) -> None:
        """Re-send the user's join event, with the new displayname and avatar_url,
        in every room they are joined to (the spec's "Events on Change of
        Profile Information"). A room that refuses is skipped, not fatal: the
        profile itself has changed either way."""
        for room_id, _ in await self.rooms.rooms_for_user(user_id, ("join",)):
            room = await self.rooms.get_room(room_id)
            if room is None:
                continue
            try:
                await self.update(room, user_id, user_id, "join", action="profile")
            except MatrixError as e:
                logger.info("profile change of %s not sent to %s: %s", user_id, room_id, e.message)

    async def enforce_guest_access(self, room: RoomRecord) -> None:
        """Once a room stops admitting guests, its guests must leave (the spec's
        guest access "Server behaviour"); each leaves under their own name."""
        guest = await self.room_service.current_state_event(room, GUEST_ACCESS)
        if guest is not None and guest.event["content"].get("guest_access") == "can_join":
            return
        for member, _, _ in await self.rooms.members(room.room_nid, "join"):
            if not self.is_local(member):
                continue
            user = await self.users.get_user(member)
            if user is None or not user.is_guest:
                continue
            try:
                await self.update(room, member, member, "leave")
            except MatrixError as e:
                logger.warning("could not remove guest %s from %s: %s", member, room.room_id, e.message)
