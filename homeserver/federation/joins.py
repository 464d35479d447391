"""Membership handshakes across servers: make_join/send_join (v2),
make_leave/send_leave (v2) and make_knock/send_knock, from both ends.

The resident server (one already in the room) offers a template built on its
DAG head; the other server signs it and sends it back; the resident server
checks and persists it like any received event. For a join it answers with the
room state before the join and its auth chain, from which the joining server
builds its own copy of the room; for a knock with the room's stripped state;
for a leave (which is how a user rejects an invite to a room their server is
not in) with nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from federation.client import DestinationRefusedError, RemoteError, quote_path_segment
from federation.events import (
    AuthError,
    CanonicalJSONError,
    EventFormatError,
    add_hashes_and_signature,
    auth_types_for_event,
    check_auth,
    compute_auth_chain,
    compute_event_id,
    event_refs,
    get_room_version,
    pdu_json,
    reference_hash_b64,
    room_id_from_create_event_id,
    select_auth_event_ids,
)
from federation.events.room_versions import SUPPORTED_ROOM_VERSIONS, RoomVersion
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.federation.access import ServerGate, server_of
from homeserver.federation.pdu_checks import MissingEventsError, PduError
from homeserver.identifiers import parse_user_id
from homeserver.records.rooms import RoomRecord

if TYPE_CHECKING:
    from federation.client import FederationClient
    from homeserver.clock import Clock
    from homeserver.federation.pdu_checks import PduChecks
    from homeserver.rooms.membership import MembershipService
    from homeserver.rooms.received import ReceivedEvents
    from homeserver.rooms.servers import RoomServers
    from homeserver.rooms.service import RoomService
    from homeserver.rooms.state_reader import StateResolver
    from homeserver.signing_key import SigningKey
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore

logger = logging.getLogger(__name__)
CREATE = ("m.room.create", "")
MEMBER = "m.room.member"


def heroes(memberships: dict[str, Any], user_id: str) -> list[str]:
    """The members a client names an unnamed room after (the sync summary's
    `m.heroes`): up to five joined or invited members other than `user_id`, by user
    ID, or, when there are none, up to five who left or were banned."""
    present = sorted(u for u, m in memberships.items() if m in ("join", "invite") and u != user_id)
    if present:
        return present[:5]
    return sorted(u for u, m in memberships.items() if m in ("leave", "ban") and u != user_id)[:5]


class StrippedState(Protocol):
    """The stripped room state of invites and knocks (FederatedInvites)."""

    async def room_state_for_invite(self, room: RoomRecord) -> list[dict[str, Any]]: ...

    async def stripped_room_state(
        self, origin: str, room_id: str, rv: RoomVersion, room_state: Any
    ) -> list[dict[str, Any]]: ...


class FederatedJoins:
    def __init__(
        self, *, server_name: str, signing_key: SigningKey, federation_enabled: bool,
        client: FederationClient | None, gate: ServerGate, checks: PduChecks, received: ReceivedEvents,
        rooms: RoomStore, events: EventStore, room_service: RoomService, room_servers: RoomServers,
        resolver: StateResolver, membership: MembershipService, stripped: StrippedState, clock: Clock,
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.federation_enabled = federation_enabled
        self.client = client  # None when federation is off
        self.gate = gate
        self.checks = checks
        self.received = received
        self.rooms = rooms
        self.events = events
        self.room_service = room_service
        self.room_servers = room_servers
        self.resolver = resolver
        self.membership = membership
        self.stripped = stripped
        self.clock = clock
        # told each room this server has just joined over federation (the server
        # connects the backfill's prefetch of the history before the join)
        self.on_joined: list[Callable[[RoomRecord], None]] = []

    def _client(self) -> FederationClient:
        if self.client is None:
            raise MatrixError(403, "M_FORBIDDEN", "Federation is disabled on this server")
        return self.client

    # --- resident side ---

    async def _joinable_room(self, origin: str, room_id: str, user_id: str) -> RoomRecord:
        if parse_user_id(user_id) is None or server_of(user_id) != origin:
            raise forbidden("The joining user must belong to the requesting server")
        room = await self.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        if not room.federate:
            raise forbidden("This room does not federate: remote users cannot join")
        if not await self.gate.acl_allows(room, origin):
            raise forbidden("Your server is denied by the room's server ACL")
        return room

    async def make_join(self, origin: str, room_id: str, user_id: str, versions: list[str]) -> dict[str, Any]:
        return await self.make_membership(origin, room_id, user_id, "join", versions)

    async def make_membership(
        self, origin: str, room_id: str, user_id: str, membership: str, versions: list[str] | None
    ) -> dict[str, Any]:
        """A template for `membership` ("join", "leave" or "knock") built on our head;
        make_leave carries no versions (the leaver's server already knows the room)."""
        room = await self._joinable_room(origin, room_id, user_id)
        if versions is not None and room.room_version not in versions:
            raise MatrixError(
                400, "M_INCOMPATIBLE_ROOM_VERSION", f"The room is version {room.room_version}",
                room_version=room.room_version,
            )
        rs = self.room_service
        rv = get_room_version(room.room_version)
        if membership == "knock" and not rv.knock_join_rule:
            raise MatrixError(
                400, "M_INCOMPATIBLE_ROOM_VERSION", f"Room version {rv.identifier} does not allow knocking",
                room_version=room.room_version,
            )
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            await self.membership.authorise_restricted_join_content(room, user_id, content)
        head = await rs.head(room)
        prev = await self.events.get_events_by_nid(head.extremities)
        state_ids = await rs.state_ids_at_snapshot(head.snapshot)
        partial = {"type": "m.room.member", "sender": user_id, "state_key": user_id, "content": content}
        needed = auth_types_for_event(partial, rv) | {CREATE}
        state = await rs.state_events(state_ids, needed)
        cited = {e.event_id: e.event for e in [*prev.values(), *state.values()]}

        def reference_hash(event_id: str) -> str:  # v1/v2 cite events with their hashes
            return reference_hash_b64(cited[event_id], rv)

        auth_ids = select_auth_event_ids(partial, {k: e.event_id for k, e in state.items()}, rv)
        template = {
            **partial,
            "room_id": room.room_id,
            "origin_server_ts": self.clock.time_ms(),
            "depth": max((e.event["depth"] for e in prev.values()), default=0) + 1,
            "prev_events": event_refs([e.event_id for e in prev.values()], rv, reference_hash),
            "auth_events": event_refs(auth_ids, rv, reference_hash),
        }
        try:
            check_auth({**template, "hashes": {}, "signatures": {}}, {k: e.event for k, e in state.items()}, rv)
        except AuthError as e:
            raise forbidden(f"You are not allowed to {membership} this room: {e.reason}") from None
        return {"event": template, "room_version": room.room_version}

    async def send_join(
        self, origin: str, room_id: str, event_id: str, pdu: Any, *, omit_members: bool = False
    ) -> dict[str, Any]:
        """Accept the join and answer with the state before it and its auth chain.

        With `omit_members` (send_join v2's reduced answer, for servers that join with
        partial state) the state keeps no membership events but the heroes' (the
        members a client names an unnamed room after), which in a large room is most
        of the answer; `servers_in_room` then says whom the joiner can ask for the
        rest, and the auth chain leaves out what the state already holds.
        """
        room, stored = await self._accept_membership(origin, room_id, event_id, pdu, "join")
        rv = get_room_version(room.room_version)
        state_ids = await self.room_service.state_ids_before(stored)
        state = await self.room_service.state_events(state_ids)
        answer: dict[str, Any] = {"origin": self.server_name, "members_omitted": omit_members}
        if omit_members:
            members = {
                key[1]: ev.event["content"].get("membership") for key, ev in state.items() if key[0] == MEMBER
            }
            answer["servers_in_room"] = sorted(
                {server_of(user) for user, membership in members.items() if membership == "join"}
            )
            named = any(
                state[key].event["content"].get(field)
                for key, field in ((("m.room.name", ""), "name"), (("m.room.canonical_alias", ""), "alias"))
                if key in state
            )
            keep = set() if named else set(heroes(members, str(pdu.get("state_key"))))
            state = {k: e for k, e in state.items() if k[0] != MEMBER or k[1] in keep}
        roots = [stored.event_id, *(e.event_id for e in state.values())]
        events = await self.resolver.load_with_auth_chains(roots)
        chain = compute_auth_chain(roots, events, rv)
        if omit_members:  # "events returned in state may be omitted from auth_chain"
            chain -= {e.event_id for e in state.values()}
        chain_events = await self.events.get_events(chain)
        answer["state"] = [pdu_json(e.event, rv) for e in state.values()]
        answer["auth_chain"] = [pdu_json(e.event, rv) for e in chain_events.values()]
        answer["event"] = pdu_json(stored.event, rv)
        return answer

    async def send_leave(self, origin: str, room_id: str, event_id: str, pdu: Any) -> dict[str, Any]:
        await self._accept_membership(origin, room_id, event_id, pdu, "leave")
        return {}

    async def send_knock(self, origin: str, room_id: str, event_id: str, pdu: Any) -> dict[str, Any]:
        room, _ = await self._accept_membership(origin, room_id, event_id, pdu, "knock")
        return {"knock_room_state": await self.stripped.room_state_for_invite(room)}

    async def _accept_membership(
        self, origin: str, room_id: str, event_id: str, pdu: Any, membership: str
    ) -> tuple[RoomRecord, Any]:
        """Check and persist a membership event a remote server signed from our template."""
        if not isinstance(pdu, dict):
            raise MatrixError(400, "M_BAD_JSON", f"The {membership} event must be an object")
        user_id = pdu.get("state_key")
        room = await self._joinable_room(origin, room_id, str(user_id))
        rv = get_room_version(room.room_version)
        if (
            pdu.get("type") != "m.room.member"
            or pdu.get("sender") != user_id
            or pdu.get("room_id") != room.room_id
            or not isinstance(pdu.get("content"), dict)
            or pdu["content"].get("membership") != membership
        ):
            raise MatrixError(400, "M_BAD_JSON", f"Not a {membership} event for this room and user")
        try:
            event = await self.checks.check(pdu, rv)
        except PduError as e:
            raise MatrixError(400, "M_BAD_JSON", str(e)) from None
        if event["event_id"] != event_id:
            raise MatrixError(400, "M_BAD_JSON", "The event ID in the path does not match the event")
        received = self.received
        try:
            async with self.room_service.lock(room.room_id):
                outcome = await received.persist(room, event)
        except MissingEventsError as e:
            # The event was meant to be built from our own make_* template, whose prev
            # and auth events are all ours: naming others makes the request invalid
            # (the spec's 400), not something to fetch from the requester.
            raise MatrixError(
                400, "M_BAD_JSON", f"The {membership} event references {e.kind} events this server does not have"
            ) from None
        if outcome.status in ("rejected", "soft_failed"):
            raise forbidden(f"{membership.capitalize()} refused: {outcome.reason}")
        stored = await self.events.get_event(event["event_id"])
        assert stored is not None
        return room, stored

    # --- joining side ---

    async def locate(self, room_id_or_alias: str, via: list[str]) -> tuple[str, list[str]]:
        """A remote room's ID and servers to ask: an alias is resolved by its own
        server (/query/directory); a room ID's own domain (before v12) is a candidate."""
        if room_id_or_alias.startswith("#"):
            domain = room_id_or_alias.partition(":")[2]
            answer = await self._client().get_json(
                domain, "/_matrix/federation/v1/query/directory", query={"room_alias": room_id_or_alias}
            )
            if not isinstance(answer, dict) or not isinstance(answer.get("room_id"), str):
                raise not_found("Room alias not found")
            servers = [s for s in answer.get("servers", []) if isinstance(s, str)]
            return answer["room_id"], [*via, *servers, domain]
        _, sep, domain = room_id_or_alias.partition(":")
        return room_id_or_alias, [*via, domain] if sep else list(via)

    async def join_remote(
        self, user_id: str, room_id: str, servers: list[str], extra: dict[str, Any] | None = None
    ) -> str:
        """Join a room this server is not in, through the first server that helps;
        `extra` is membership content the client asked for (`reason`, custom keys)."""
        return await self._through_servers(
            "join", servers, lambda server: self._join_via(user_id, room_id, server, extra)
        )

    async def knock_remote(self, user_id: str, room_id: str, servers: list[str], reason: str | None) -> str:
        """Knock on a room this server is not in; the knock and the stripped state the
        resident server answers with are kept outside the room's DAG."""

        async def attempt(server: str) -> str:
            version, event, answer = await self.remote_membership(user_id, room_id, server, "knock", reason=reason)
            stripped = await self.stripped.stripped_room_state(
                server, room_id, version, answer.get("knock_room_state")
            )
            received = self.received
            room = await received.ensure_room(room_id, version.identifier, user_id)
            await received.persist_membership_outlier(room, event, stripped)
            return room_id

        return await self._through_servers("knock", servers, attempt)

    async def _through_servers(
        self, what: str, servers: list[str], attempt: Callable[[str], Awaitable[str]]
    ) -> str:
        """Try each server in turn. When every one refused (our federation policy,
        or the room's server answering 403), the user is told it is forbidden, not
        that the room cannot be found."""
        if not self.federation_enabled:
            raise forbidden("Federation is disabled on this server")
        errors: list[str] = []
        refused = 0
        for server in dict.fromkeys(s for s in servers if s and s != self.server_name):
            try:
                return await attempt(server)
            except DestinationRefusedError:
                refused += 1
                errors.append(f"{server}: this server's federation policy does not allow it")
            except RemoteError as e:
                refused += e.status == 403
                errors.append(f"{server}: {e}")
            except Exception as e:  # unreachable, bad answer: try the next server
                errors.append(f"{server}: {e}")
        if not errors:
            raise not_found("Room not found, and no server to ask about it was given")
        message = f"Could not {what} through any server: " + "; ".join(errors)
        if refused == len(errors):
            raise forbidden(message)
        raise MatrixError(404, "M_NOT_FOUND", message)

    async def _join_via(self, user_id: str, room_id: str, server: str, extra: dict[str, Any] | None) -> str:
        rv, event, answer = await self._handshake(user_id, room_id, server, "join", extra=extra)
        if isinstance(answer.get("event"), dict):
            # may carry the resident server's co-signature (restricted joins)
            event = {**answer["event"], "event_id": event["event_id"]}
        return await self._build_room(room_id, rv, event, answer)

    async def remote_membership(
        self, user_id: str, room_id: str, server: str, membership: str, *, reason: str | None = None
    ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """Leave or knock on a room this server is not in, through `server`; returns
        the room version, the event (with its ID) and the resident server's answer."""
        return await self._handshake(user_id, room_id, server, membership, reason=reason)

    async def _handshake(
        self, user_id: str, room_id: str, server: str, membership: str, *, reason: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """make_<membership>, sign the template, send_<membership>."""
        client = self._client()
        room_q, user_q = quote_path_segment(room_id), quote_path_segment(user_id)
        query = None if membership == "leave" else {"ver": list(SUPPORTED_ROOM_VERSIONS)}
        made = await client.get_json(
            server, f"/_matrix/federation/v1/make_{membership}/{room_q}/{user_q}", query=query
        )
        version = made.get("room_version") if isinstance(made, dict) else None
        template = made.get("event") if isinstance(made, dict) else None
        if version not in SUPPORTED_ROOM_VERSIONS or not isinstance(template, dict):
            raise PduError(f"make_{membership} answered with an unusable template")
        rv = get_room_version(version)
        raw_offered = template.get("content")
        offered: dict[str, Any] = raw_offered if isinstance(raw_offered, dict) else {}
        content = await self.membership.member_content(user_id, membership)
        content.update(extra or {})
        if membership == "join" and "join_authorised_via_users_server" in offered:
            content["join_authorised_via_users_server"] = offered["join_authorised_via_users_server"]
        if reason is not None:
            content["reason"] = reason
        event = {
            k: template[k] for k in ("type", "room_id", "sender", "state_key", "origin_server_ts", "depth",
                                      "prev_events", "auth_events") if k in template
        }
        if (
            event.get("sender") != user_id or event.get("state_key") != user_id
            or event.get("room_id") != room_id or event.get("type") != "m.room.member"
        ):
            raise PduError(f"make_{membership} answered with a template for someone else")
        event.update(content=content, origin_server_ts=self.clock.time_ms())
        if rv.event_id_in_pdu:
            # v1/v2: the joining server names its own event.
            event["event_id"] = f"${secrets.token_urlsafe(18)}:{self.server_name}"
        try:
            event = add_hashes_and_signature(event, rv, self.server_name, self.signing_key)
        except (EventFormatError, CanonicalJSONError) as e:
            raise PduError(f"Cannot sign the {membership}: {e}") from None
        event_id = compute_event_id(event, rv)
        api = "v1" if membership == "knock" else "v2"
        answer = await client.put_json(
            server, f"/_matrix/federation/{api}/send_{membership}/{room_q}/{quote_path_segment(event_id)}",
            pdu_json(event, rv),
        )
        if not isinstance(answer, dict):
            raise PduError(f"send_{membership} answered with something that is not an object")
        event["event_id"] = event_id
        return rv, event, answer

    async def _build_room(self, room_id: str, rv: Any, join: dict[str, Any], answer: dict[str, Any]) -> str:
        chain_pdus, state_pdus = (
            [p for p in answer.get(key, []) if isinstance(p, dict)] if isinstance(answer.get(key), list) else []
            for key in ("auth_chain", "state")
        )
        # Every event once, whether it came as state, in the auth chain or both.
        in_order = await self.checks.check_many([*chain_pdus, *state_pdus], rv)
        checked = {e["event_id"]: e for e in in_order}
        state_ids = {
            (e["type"], e["state_key"]): e["event_id"]
            for e in in_order[len(chain_pdus):]
            if isinstance(e.get("state_key"), str) and isinstance(e.get("type"), str)
        }
        create_id = state_ids.get(CREATE)
        if create_id is None or create_id not in checked:
            raise PduError("The room state has no create event")
        create = checked[create_id]
        if rv.room_id_is_create_event_id and room_id_from_create_event_id(create_id) != room_id:
            raise PduError("The create event does not belong to this room")
        content = create.get("content", {})
        creator = create.get("sender", "")
        federate = content.get("m.federate", True) is not False
        if not federate:
            raise PduError("The room does not federate")
        # Step 4 for every event of the answer: signed by its server is not enough, a
        # state event must also be allowed by its auth events (a resident server could
        # otherwise hand over power its users never had). A state that fails is
        # refused whole, and the join tries the next server; an unneeded auth-chain
        # event that fails is left out.
        failures = await self.checks.chain_failures(checked, create, rv)
        bad_state = sorted(i for i in state_ids.values() if i in failures)
        if bad_state:
            raise PduError(f"State event {bad_state[0]} fails the auth rules: {failures[bad_state[0]]}")
        checked = {i: e for i, e in checked.items() if i not in failures}
        received = self.received
        room = await received.ensure_room(room_id, rv.identifier, creator)
        async with self.room_service.lock(room_id):
            ordered = sorted(checked.values(), key=lambda e: e.get("depth", 0))
            await received.persist_outliers(room, ordered)
            outcome = await received.persist_joined(room, join, state_ids)
        if outcome.status != "accepted":
            raise PduError(f"Our join was not accepted here: {outcome.reason}")
        self.room_servers.invalidate(room.room_nid)
        for listener in self.on_joined:
            listener(room)
        return room_id

