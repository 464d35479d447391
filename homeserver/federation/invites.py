"""Invites across servers: PUT /invite (v2 and v1) from both ends, and rejecting
an invite to a room this server is not in.

An invite is the one membership event that needs the target's server before it
exists: the inviting server builds and signs it, the invitee's server checks it,
adds its own signature and keeps it (with the stripped state that says what the
room is) so the invitee can see it; only then does the inviting server persist
it and send it into the room. Rejecting an invite to a room nobody here is in
goes back through the inviting server (make_leave / send_leave); when that server
cannot be reached the invite is still rejected here, as users expect.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any, Protocol

from federation.client import (
    ConnectError,
    DestinationRefusedError,
    FederationError,
    RemoteError,
    quote_path_segment,
)
from federation.events import (
    CanonicalJSONError,
    EventFormatError,
    SignatureError,
    add_hashes_and_signature,
    compute_event_id,
    compute_reference_hash,
    encode_event_canonical_json,
    get_room_version,
    pdu_json,
    redact_event,
    reference_hash_b64,
    room_id_from_create_event_id,
    sign_event,
    verify_signed_by,
)
from federation.events.room_versions import SUPPORTED_ROOM_VERSIONS, RoomVersion
from homeserver.errors import MatrixError, forbidden
from homeserver.federation.access import federation_pdu, server_of
from homeserver.federation.pdu_checks import PduError
from homeserver.identifiers import parse_user_id
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.membership import STRIPPED_STATE_TYPES

if TYPE_CHECKING:
    from federation.client import FederationClient
    from homeserver.clock import Clock
    from homeserver.federation.keyring import KeyRing
    from homeserver.federation.pdu_checks import PduChecks
    from homeserver.rooms.membership import GlobalAccountData, MembershipService
    from homeserver.rooms.received import ReceivedEvents
    from homeserver.rooms.service import RoomService
    from homeserver.signing_key import SigningKey
    from homeserver.storage.rooms import RoomStore
    from homeserver.storage.users import UserStore

logger = logging.getLogger(__name__)

MAX_INVITE_STATE = 50  # entries kept from a remote server's invite_room_state


def strip(event: dict[str, Any]) -> dict[str, Any]:
    """The client-server stripped form of a state event."""
    return {k: event[k] for k in ("type", "state_key", "content", "sender") if k in event}


def _invite_refused(destination: str, e: RemoteError) -> MatrixError:
    """The invitee's server's error answer, as the inviting client is told it."""
    if e.status in (400, 403):
        return MatrixError(403, "M_FORBIDDEN", f"{destination} refused the invite: {e}")
    return MatrixError(502, "M_UNKNOWN", f"{destination} could not take the invite: {e}")


def _invited_event(destination: str, answer: Any) -> dict[str, Any]:
    signed = answer.get("event") if isinstance(answer, dict) else None
    if not isinstance(signed, dict):
        raise MatrixError(502, "M_UNKNOWN", f"{destination} answered the invite with no event")
    return dict(signed)


def invalid(message: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", message)


class RemoteMembership(Protocol):
    """A membership change through a server in the room (FederatedJoins)."""

    async def remote_membership(
        self, user_id: str, room_id: str, server: str, membership: str, *, reason: str | None = None
    ) -> tuple[Any, dict[str, Any], dict[str, Any]]: ...


class FederatedInvites:
    def __init__(
        self, *, server_name: str, signing_key: SigningKey, client: FederationClient | None,
        keyring: KeyRing, checks: PduChecks, received: ReceivedEvents, rooms: RoomStore,
        room_service: RoomService, membership: MembershipService, users: UserStore,
        account_data: GlobalAccountData, clock: Clock,
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.client = client  # None when federation is off
        self.keyring = keyring
        self.checks = checks
        self.received = received
        self.rooms = rooms
        self.room_service = room_service
        self.membership = membership
        self.users = users
        self.account_data = account_data
        self.clock = clock
        self._joins: RemoteMembership | None = None

    def connect(self, *, joins: RemoteMembership) -> None:
        """Federated joins, built after this service: they serve knocks with the
        stripped state from here, and rejections here leave through them."""
        self._joins = joins

    # --- the inviting server ---

    async def room_state_for_invite(self, room: RoomRecord) -> list[dict[str, Any]]:
        """The room's stripped-state events as full PDUs (what invite_room_state and
        knock_room_state carry over federation)."""
        rs = self.room_service
        state = await rs.state_events(await rs.current_state_ids(room), [(t, "") for t in STRIPPED_STATE_TYPES])
        ordered = sorted(state.values(), key=lambda e: STRIPPED_STATE_TYPES.index(e.type))
        return [federation_pdu(e, room.room_version) for e in ordered]

    async def send_invite(self, room: RoomRecord, event: dict[str, Any]) -> dict[str, Any]:
        """Have the invitee's server countersign an invite we built; returns the event
        with both signatures, which is what gets persisted and sent into the room.

        `PUT /v2/invite` first. In a room of version 1 or 2, a 400 or 404 answer (or
        any sign the endpoint is unknown there: `RemoteError.unknown_endpoint`) is
        retried with `PUT /v1/invite`, as the spec's v2 endpoint asks, since the server
        may be older; v1 carries no room version, and its receiver assumes 1 or 2. In a
        newer version a server without v2 cannot take the invite at all: 400
        M_UNSUPPORTED_ROOM_VERSION (Synapse's answer in that case)."""
        rv = get_room_version(room.room_version)
        destination = server_of(event["state_key"])
        room_state = await self.room_state_for_invite(room)
        path = f"/{quote_path_segment(room.room_id)}/{quote_path_segment(event['event_id'])}"
        body = {"room_version": rv.identifier, "event": pdu_json(event, rv), "invite_room_state": room_state}
        try:
            answer = await self._put_invite(destination, "/_matrix/federation/v2/invite" + path, body)
        except RemoteError as e:
            if rv.event_id_in_pdu and (e.unknown_endpoint or e.status in (400, 404)):
                return await self.send_invite_v1(room, event, room_state)
            if e.unknown_endpoint:
                raise MatrixError(
                    400, "M_UNSUPPORTED_ROOM_VERSION",
                    f"{destination} only takes invites to rooms of versions 1 and 2; this room is version {rv.identifier}",
                ) from None
            raise _invite_refused(destination, e) from None
        return await self._countersigned(rv, event, _invited_event(destination, answer), destination)

    async def send_invite_v1(
        self, room: RoomRecord, event: dict[str, Any], room_state: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """`PUT /v1/invite`: the event itself is the body, the stripped state rides in its
        `unsigned`, and the answer is `[200, {"event": ...}]` (the v1 API's historical
        shape, which servers still send)."""
        rv = get_room_version(room.room_version)
        destination = server_of(event["state_key"])
        if room_state is None:
            room_state = await self.room_state_for_invite(room)
        pdu = pdu_json(event, rv)
        pdu["unsigned"] = {**pdu.get("unsigned", {}), "invite_room_state": room_state}
        path = (
            f"/_matrix/federation/v1/invite/{quote_path_segment(room.room_id)}"
            f"/{quote_path_segment(event['event_id'])}"
        )
        try:
            answer = await self._put_invite(destination, path, pdu)
        except RemoteError as e:
            raise _invite_refused(destination, e) from None
        if isinstance(answer, list) and len(answer) == 2 and answer[0] == 200:
            answer = answer[1]
        signed = _invited_event(destination, answer)
        signed.pop("unsigned", None)  # the stripped state we sent, echoed back
        return await self._countersigned(rv, event, signed, destination)

    async def _put_invite(self, destination: str, path: str, body: Any) -> Any:
        """One invite request; our policy and the network's errors as the client API's
        answers, the peer's error answers (RemoteError) left to the caller."""
        client = self.client
        if client is None:
            raise MatrixError(403, "M_FORBIDDEN", "Federation is disabled on this server")
        try:
            return await client.put_json(destination, path, body)
        except DestinationRefusedError:
            # Our own policy (partners only, say): the spec's answer for an invite the
            # server will not make is 403, as for joins through such a server.
            raise MatrixError(
                403, "M_FORBIDDEN", f"This server's federation policy does not allow inviting users of {destination}"
            ) from None
        except RemoteError:
            raise
        except (ConnectError, OSError) as e:
            raise MatrixError(502, "M_UNKNOWN", f"Cannot reach {destination} to deliver the invite: {e}") from None
        except FederationError as e:  # a malformed answer
            raise MatrixError(502, "M_UNKNOWN", f"{destination} answered the invite badly: {e}") from None

    async def _countersigned(
        self, rv: RoomVersion, ours: dict[str, Any], theirs: dict[str, Any], destination: str
    ) -> dict[str, Any]:
        """Our event with the invitee server's signature: anything else it changed
        (which would change the event ID) is refused."""
        try:
            same = compute_event_id(pdu_json(theirs, rv), rv) == ours["event_id"]
            if rv.event_id_in_pdu:
                # v1/v2 IDs are names, not hashes: compare what the signatures cover.
                same = same and compute_reference_hash(theirs, rv) == compute_reference_hash(ours, rv)
        except (EventFormatError, CanonicalJSONError, KeyError, TypeError, ValueError):
            same = False
        sigs = theirs.get("signatures")
        their_sigs = sigs.get(destination) if isinstance(sigs, dict) else None
        if not same or not isinstance(their_sigs, dict):
            raise MatrixError(502, "M_UNKNOWN", f"{destination} returned a different or unsigned invite")
        keys = await self.keyring.get_verify_keys(
            destination, list(their_sigs), minimum_valid_until_ts=ours["origin_server_ts"]
        )
        merged = {**ours, "signatures": {**ours["signatures"], destination: their_sigs}}
        try:
            verify_signed_by(
                redact_event(pdu_json(merged, rv), rv), destination, keys, encode=encode_event_canonical_json
            )
        except SignatureError as e:
            raise MatrixError(502, "M_UNKNOWN", f"{destination} signed the invite badly: {e}") from None
        return merged

    # --- the invited server ---

    async def on_invite(self, origin: str, room_id: str, event_id: str, body: Any, *, v1: bool = False) -> dict[str, Any]:
        if v1:
            pdu, room_version, room_state = body, None, None
            if isinstance(body, dict):
                unsigned = body.get("unsigned")
                if isinstance(unsigned, dict):
                    room_state = unsigned.get("invite_room_state")
        else:
            if not isinstance(body, dict):
                raise MatrixError(400, "M_BAD_JSON", "The request body must be an object")
            pdu, room_version, room_state = body.get("event"), body.get("room_version"), body.get("invite_room_state")
        if not isinstance(pdu, dict):
            raise MatrixError(400, "M_BAD_JSON", "'event' must be an object")
        local_room = await self.rooms.get_room(room_id)
        if room_version is None:  # v1 carries no version: only rooms we know can be checked
            room_version = local_room.room_version if local_room is not None else "1"
        if not isinstance(room_version, str) or room_version not in SUPPORTED_ROOM_VERSIONS:
            raise MatrixError(
                400, "M_INCOMPATIBLE_ROOM_VERSION", f"Room version {room_version!r} is not supported here",
                room_version=room_version if isinstance(room_version, str) else None,
            )
        rv = get_room_version(room_version)
        user_id = pdu.get("state_key")
        content = pdu.get("content")
        if (
            pdu.get("type") != "m.room.member"
            or not isinstance(content, dict)
            or content.get("membership") != "invite"
            or pdu.get("room_id", room_id) != room_id
        ):
            raise MatrixError(400, "M_BAD_JSON", "Not an invite event for this room")
        sender = pdu.get("sender")
        if not isinstance(sender, str) or parse_user_id(sender) is None or server_of(sender) != origin:
            raise invalid("The inviting user does not belong to the requesting server")
        if not isinstance(user_id, str) or not self.membership.is_local(user_id):
            raise invalid("The invited user does not belong to this server")
        try:
            event = await self.checks.check(pdu, rv)
        except PduError as e:
            raise MatrixError(403, "M_FORBIDDEN", str(e)) from None
        if event["event_id"] != event_id:
            raise MatrixError(400, "M_BAD_JSON", "The event ID in the path does not match the event")
        if local_room is not None and not local_room.federate:
            raise forbidden("This room is internal to this server: remote users cannot be invited")
        await self._check_invitee(user_id, sender)
        stripped = await self.stripped_room_state(origin, room_id, rv, room_state)
        signed = sign_event(event, rv, self.server_name, self.signing_key)
        signed["event_id"] = event_id
        if not await self.membership.is_resident(local_room):
            # Nobody here is in the room: the invite lives outside its DAG until a join.
            room = await self.received.ensure_room(room_id, rv.identifier, sender)
            await self.received.persist_membership_outlier(room, signed, stripped)
        # In a room we are in, the inviting server's /send brings the event into the DAG.
        return {"event": pdu_json(signed, rv)}

    async def _check_invitee(self, user_id: str, sender: str) -> None:
        user = await self.users.get_user(user_id)
        if user is None:
            raise MatrixError(404, "M_NOT_FOUND", f"User {user_id} does not exist")
        if user.deactivated:
            raise forbidden(f"User {user_id} has been deactivated")
        config = await self.account_data.get_global(user_id, "m.invite_permission_config")
        if isinstance(config, dict) and config.get("default_action") == "block":
            raise MatrixError(403, "M_INVITE_BLOCKED", f"{user_id} does not accept invites")
        if sender in await self.room_service.ignored_users(user_id):
            raise forbidden(f"{user_id} does not accept invites from {sender}")

    async def stripped_room_state(
        self, origin: str, room_id: str, rv: RoomVersion, room_state: Any
    ) -> list[dict[str, Any]]:
        """Validate invite_room_state as the spec asks (a create event of this room
        must be there; entries must be events of this room) and keep its stripped form."""
        if room_state is None:
            room_state = []
        if not isinstance(room_state, list):
            raise invalid("'invite_room_state' must be an array")
        stripped: list[dict[str, Any]] = []
        has_create = False
        for entry in room_state[:MAX_INVITE_STATE]:
            if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
                raise invalid("Each invite_room_state entry must be an event")
            if not isinstance(entry.get("state_key"), str) or not isinstance(entry.get("content"), dict):
                raise invalid("Each invite_room_state entry must be a state event")
            if entry["type"] == "m.room.create" and entry["state_key"] == "":
                has_create = True
                if rv.room_id_is_create_event_id and "signatures" in entry:
                    try:
                        create_id = compute_event_id(pdu_json(entry, rv), rv)
                    except (EventFormatError, CanonicalJSONError, KeyError, TypeError, ValueError):
                        raise invalid("The room's create event is malformed") from None
                    if room_id_from_create_event_id(create_id) != room_id:
                        raise invalid("The create event in invite_room_state belongs to another room")
            if "room_id" in entry and entry["room_id"] != room_id:
                raise invalid("An invite_room_state event belongs to another room")
            stripped.append(strip(entry))
        if rv.room_id_is_create_event_id and not has_create:
            raise invalid("invite_room_state must contain the room's create event")
        return stripped

    # --- rejecting ---

    async def reject(self, room: RoomRecord, user_id: str, invite: StoredEvent, reason: str | None) -> StoredEvent:
        """Leave a room this server is not in, where the user holds an invite (or a
        knock): through a server in the room when one answers, else only here."""
        rv = get_room_version(room.room_version)
        servers = [server_of(invite.sender), server_of(room.room_id) if ":" in room.room_id else ""]
        leave: dict[str, Any] | None = None
        for server in dict.fromkeys(s for s in servers if s and s != self.server_name):
            try:
                assert self._joins is not None, "FederatedInvites.connect was not called"
                _, leave, _ = await self._joins.remote_membership(
                    user_id, room.room_id, server, "leave", reason=reason
                )
                break
            except Exception as e:  # unreachable or refusing: reject locally below
                logger.info("rejecting the invite to %s through %s failed: %s", room.room_id, server, e)
        if leave is None:
            leave = self._local_leave(rv, room, user_id, invite, reason)
        return await self.received.persist_membership_outlier(room, leave, None)

    def _local_leave(
        self, rv: RoomVersion, room: RoomRecord, user_id: str, invite: StoredEvent, reason: str | None
    ) -> dict[str, Any]:
        """A leave that only this server will ever hold: it records the rejection for
        the user's clients when the room's servers cannot be reached."""
        content: dict[str, Any] = {"membership": "leave"}
        if reason is not None:
            content["reason"] = reason
        event = {
            "type": "m.room.member", "room_id": room.room_id, "sender": user_id, "state_key": user_id,
            "content": content, "origin_server_ts": self.clock.time_ms(),
            "depth": int(invite.event.get("depth", 0)) + 1,
            "prev_events": [invite.event_id],
            "auth_events": [*invite.event.get("auth_events", []), invite.event_id],
        }
        if rv.event_id_in_pdu:
            # v1/v2: references carry hashes (the invite's own auth references
            # already do), and this server names the event.
            invite_ref = [invite.event_id, {"sha256": reference_hash_b64(invite.event, rv)}]
            event["prev_events"] = [invite_ref]
            event["auth_events"] = [*invite.event.get("auth_events", []), invite_ref]
            event["event_id"] = f"${secrets.token_urlsafe(18)}:{self.server_name}"
        event = add_hashes_and_signature(event, rv, self.server_name, self.signing_key)
        event["event_id"] = compute_event_id(event, rv)
        return event
