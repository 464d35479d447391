"""Which rooms and which events another server may read.

Two decisions, kept apart because they answer different questions:

* `ServerGate.authorise` is the room-wide gate every room-scoped read passes first:
  the room exists, federates, its server ACL admits the server, and the server
  is in the room (one of its users is joined now) or the room is world readable
  now (anyone may read it, so any server may too).
* `ServerViewer` decides event by event, from the room state *at* each event,
  whether the server may see it: the client history-visibility rules applied to
  "any user of that server" (a server may receive an event if any of its users
  could see it). Events it may not see are served redacted, never in full: the
  event ID is a hash of the redacted form, so the requester can still link the
  DAG, check the signatures and run the auth rules, but learns no content.

`ServerGate.server_in_room` is the single membership test, read from the memberships table
(kept by every persisted m.room.member event, local or received over federation).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from federation.acl import server_allowed_by_acl
from federation.events import get_room_version, pdu_json, redact_event
from homeserver.errors import MatrixError, not_found
from homeserver.identifiers import domain_is
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore
    from homeserver.storage.state import StateStore

HISTORY_VISIBILITY = ("m.room.history_visibility", "")
SERVER_ACL = ("m.room.server_acl", "")
_KNOWN_VISIBILITY = ("world_readable", "shared", "invited", "joined")


def server_of(user_id: str) -> str:
    """The server part of a user ID (localparts cannot contain ':')."""
    return user_id.partition(":")[2]


def forbidden_server(message: str = "Your server is not allowed to read this room") -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", message)


class CurrentStateEvent(Protocol):
    """One event of a room's current state (RoomService)."""

    async def current_state_event(self, room: RoomRecord, key: tuple[str, str]) -> StoredEvent | None: ...


async def acl_allows(current: CurrentStateEvent, room: RoomRecord, server_name: str) -> bool:
    """The room's current m.room.server_acl applied to `server_name`."""
    acl = await current.current_state_event(room, SERVER_ACL)
    content = acl.event.get("content") if acl is not None else None
    return server_allowed_by_acl(server_name, content if isinstance(content, dict) else None)


@dataclass(frozen=True)
class ServerAccess:
    """The outcome of the room gate: `joined` when the server has a member now,
    otherwise it reads only because the room is world readable."""

    room: RoomRecord
    server_name: str
    joined: bool


class ServerGate:
    """The room gate and the per-event viewer, over the stores they read."""

    def __init__(
        self, *, rooms: RoomStore, events: EventStore, state: StateStore, current: CurrentStateEvent,
        world_readable: Callable[[RoomRecord], Awaitable[bool]],
    ) -> None:
        self.rooms = rooms
        self.events = events
        self.state = state
        self.current = current
        self.world_readable = world_readable  # VisibilityService.is_world_readable

    async def server_in_room(self, room: RoomRecord, server_name: str) -> bool:
        """Whether any user of `server_name` is joined to the room now."""
        members = await self.rooms.members(room.room_nid, "join")
        return any(domain_is(user_id, server_name) for user_id, _, _ in members)

    async def acl_allows(self, room: RoomRecord, server_name: str) -> bool:
        return await acl_allows(self.current, room, server_name)

    async def authorise(self, room_id: str, server_name: str) -> ServerAccess:
        """The room gate: 404 M_NOT_FOUND for unknown rooms, 403 M_FORBIDDEN for a
        room that does not federate, an ACL that denies the server, or a server that
        is neither in the room nor reading a world-readable one."""
        room = await self.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        if not room.federate:
            raise forbidden_server("This room does not federate")
        if not await self.acl_allows(room, server_name):
            raise forbidden_server("Your server is denied by the room's server ACL")
        if await self.server_in_room(room, server_name):
            return ServerAccess(room, server_name, True)
        if await self.world_readable(room):
            return ServerAccess(room, server_name, False)
        raise forbidden_server("Your server is not in this room")

    def viewer(self, access: ServerAccess) -> ServerViewer:
        return ServerViewer(access, events=self.events, state=self.state)


def federation_pdu(event: StoredEvent, room_version: str, *, redact: bool = False) -> dict[str, Any]:
    """The PDU as it goes over federation: without internal keys, with the stored
    hashes and signatures, redacted when it was redacted here or must be withheld."""
    pdu = pdu_json(event.event, room_version)
    if redact or event.redacted_by is not None:
        pdu = redact_event(pdu, get_room_version(room_version))
    return pdu


class ServerViewer:
    """One server's view of one room's history for one request; the visibility and
    the server's memberships are cached per state snapshot, so walking a page of
    the DAG costs one state read per state change. The memberships are read only
    when the visibility leaves the answer to them: in a `shared` room the server is
    in (the usual case) no snapshot's members are looked at, which in a big room
    was a scan of every member key per snapshot (each join makes a new one)."""

    def __init__(self, access: ServerAccess, *, events: EventStore, state: StateStore) -> None:
        self.events = events
        self.state = state
        self.access = access
        self._visibility: dict[int | None, str] = {}
        self._memberships: dict[int, frozenset[str]] = {}

    async def _visibility_at(self, snapshot: int | None) -> str:
        """The history visibility in a snapshot, reading that one key."""
        cached = self._visibility.get(snapshot)
        if cached is not None:
            return cached
        visibility: Any = None
        key_nid = await self.state.lookup_key_nid(HISTORY_VISIBILITY) if snapshot is not None else None
        if snapshot is not None and key_nid is not None:
            event_nid = (await self.state.get_entries(snapshot, [key_nid])).get(key_nid)
            ev = (await self.events.get_events_by_nid([event_nid])).get(event_nid) if event_nid else None
            if ev is not None:
                visibility = (ev.event.get("content") or {}).get("history_visibility")
        if visibility not in _KNOWN_VISIBILITY:
            visibility = "shared"  # the spec's default for absent or unknown values
        self._visibility[snapshot] = result = str(visibility)
        return result

    async def _memberships_at(self, snapshot: int | None) -> frozenset[str]:
        """The memberships of the server's users in a snapshot."""
        if snapshot is None:
            return frozenset()
        cached = self._memberships.get(snapshot)
        if cached is not None:
            return cached
        memberships: set[str] = set()
        state = await self.state.get_state(snapshot)
        keys = await self.state.keys_for(set(state))
        wanted = [
            state[key_nid] for key_nid, key in keys.items()
            if key[0] == "m.room.member" and domain_is(key[1], self.access.server_name)
        ]
        for ev in (await self.events.get_events_by_nid(wanted)).values():
            membership = (ev.event.get("content") or {}).get("membership")
            if isinstance(membership, str):
                memberships.add(membership)
        self._memberships[snapshot] = result = frozenset(memberships)
        return result

    async def _allowed(self, snapshot: int | None) -> bool:
        visibility = await self._visibility_at(snapshot)
        if visibility == "world_readable" or (visibility == "shared" and self.access.joined):
            return True
        # "shared": the user joined at any point after the event (a server in the room
        # now has a user who did); else a user of the server joined (or invited) then.
        memberships = await self._memberships_at(snapshot)
        return "join" in memberships or (visibility == "invited" and "invite" in memberships)

    async def can_see(self, event: StoredEvent) -> bool:
        if event.room_nid != self.access.room.room_nid:
            return False
        if await self._allowed(event.state_before):
            return True
        if event.type == "m.room.history_visibility" or (
            event.type == "m.room.member" and domain_is(event.state_key or "", self.access.server_name)
        ):
            # Visible if the state before *or* after the event allows it (a join
            # is visible to the joining server, a visibility change to both sides).
            return await self._allowed(event.state_after)
        return False

    async def pdu(self, event: StoredEvent) -> dict[str, Any]:
        """The event for this server: whole if it may see it, redacted otherwise."""
        visible = await self.can_see(event)
        return federation_pdu(event, self.access.room.room_version, redact=not visible)
