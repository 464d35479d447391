"""Room versions as data.

Every behaviour that differs between the room versions Accord supports is a
flag on :class:`RoomVersion`, so the algorithms in this package branch on
named capabilities rather than on version strings. Adding a version should
mean adding one entry to :data:`SUPPORTED_ROOM_VERSIONS`, not editing the
algorithms.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ROOM_VERSION",
    "EventIdFormat",
    "KNOWN_ROOM_VERSION_IDS",
    "SUPPORTED_ROOM_VERSIONS",
    "RoomVersion",
    "StateResolutionVersion",
    "UnsupportedRoomVersionError",
    "get_room_version",
]


class UnsupportedRoomVersionError(ValueError):
    """Raised for a room version Accord cannot handle.

    The homeserver maps this to ``M_UNSUPPORTED_ROOM_VERSION`` (or
    ``M_INCOMPATIBLE_ROOM_VERSION`` on federation joins), so it carries the
    offending identifier for the error message.
    """

    def __init__(self, room_version: object) -> None:
        self.room_version = room_version
        super().__init__(f"Unsupported room version: {room_version!r}")


class StateResolutionVersion(enum.Enum):
    """Which state resolution algorithm a room uses."""

    #: Room version 1: the original algorithm (conflicts settled by depth and
    #: SHA-1 of the event ID, power levels, join rules and members first).
    V1 = "1"
    V2 = "2"
    #: Room version 12 (MSC4297): iterative auth checks start from an empty
    #: state map and the full conflicted set includes the conflicted state
    #: subgraph.
    V2_1 = "2.1"


class EventIdFormat(enum.Enum):
    """How an event's ID is made (the room versions' "Event IDs" sections)."""

    #: v1, v2: ``$opaque:domain`` chosen by the sending server and carried in
    #: the PDU; ``prev_events``/``auth_events`` are ``[event_id, hashes]`` pairs.
    IN_EVENT = "in_event"
    #: v3: ``$`` + standard unpadded base64 of the reference hash.
    REFERENCE_HASH = "reference_hash"
    #: v4+: ``$`` + URL-safe unpadded base64 of the reference hash.
    REFERENCE_HASH_URLSAFE = "reference_hash_urlsafe"


@dataclass(frozen=True, slots=True)
class RoomVersion:
    """The protocol rules of one room version.

    Every difference between the versions is one named flag, so the
    algorithms read as the spec does ("if the room version limits
    notifications power levels...") and a version is one entry below.
    """

    identifier: str
    #: Advertised as "stable" in /capabilities.
    stable: bool

    # --- Event format ---------------------------------------------------
    event_id_format: EventIdFormat
    #: v12: the room ID is ``!`` + the create event's reference hash, and the
    #: create event has no ``room_id``.
    room_id_is_create_event_id: bool
    #: v1-v11 list the create event in ``auth_events``; v12 must not.
    create_event_in_auth_events: bool
    #: v11+: ``redacts`` moved from the top level into ``content``.
    redacts_in_content: bool
    #: v6+: an event whose JSON is not canonical JSON's value space (floats,
    #: integers beyond +-(2**53 - 1)) is rejected; older versions accept it.
    strict_canonical_json: bool
    #: v5+: a signing key only verifies events up to its ``valid_until_ts``.
    enforce_key_validity: bool

    # --- Redaction algorithm --------------------------------------------
    #: Up to v10 the top-level ``origin``, ``membership`` and ``prev_state``
    #: survive redaction.
    redaction_keeps_origin_membership_prev_state: bool
    #: v1-v5: ``m.room.aliases`` keeps ``aliases``.
    redaction_keeps_aliases: bool
    #: v8+: ``m.room.join_rules`` keeps ``allow``.
    redaction_keeps_join_rules_allow: bool
    #: v9+: ``m.room.member`` keeps ``join_authorised_via_users_server``.
    redaction_keeps_join_authorised_via: bool
    #: v11+: the create event keeps its whole content (v10 only ``creator``).
    redaction_keeps_all_create_content: bool
    #: v11+: ``m.room.redaction`` keeps ``content.redacts``.
    redaction_keeps_redaction_redacts: bool
    #: v11+: ``m.room.power_levels`` keeps ``invite``.
    redaction_keeps_power_levels_invite: bool
    #: v11+: ``m.room.member`` keeps ``third_party_invite.signed``.
    redaction_keeps_third_party_invite_signed: bool

    # --- Authorisation rules --------------------------------------------
    #: v1-v10: the create event must carry ``content.creator`` and that is the
    #: creator. v11+: the creator is the create event's ``sender``.
    create_requires_creator_field: bool
    #: v12 (MSC4289): creators (sender + ``additional_creators``) have an
    #: infinite power level and must not appear in ``users``.
    creators_have_infinite_power: bool
    #: v10+: power level values must be real integers; before, strings
    #: holding an integer and floats (truncated) are levels too.
    integer_power_levels: bool
    #: v1-v5: the ``m.room.aliases`` rule (state key must be the sender's server).
    special_case_aliases_auth: bool
    #: v1-v2: the ``m.room.redaction`` auth rule (redact level, or the same
    #: event ID domain); from v3 redactions are checked when applied instead.
    redaction_auth_rule: bool
    #: v6+: changes to ``notifications`` levels are checked like ``events``.
    limit_notifications_power_levels: bool
    knock_join_rule: bool
    restricted_join_rule: bool
    knock_restricted_join_rule: bool

    # --- State resolution -----------------------------------------------
    state_resolution: StateResolutionVersion

    @property
    def event_id_in_pdu(self) -> bool:
        """v1/v2: the ``event_id`` is part of the PDU (hashed, signed, sent)."""
        return self.event_id_format is EventIdFormat.IN_EVENT


def _version(n: int) -> RoomVersion:
    """The rules of stable room version ``n``, from the spec's changelog of versions."""
    if n <= 2:
        id_format = EventIdFormat.IN_EVENT
    elif n == 3:
        id_format = EventIdFormat.REFERENCE_HASH
    else:
        id_format = EventIdFormat.REFERENCE_HASH_URLSAFE
    if n == 1:
        state_res = StateResolutionVersion.V1
    elif n >= 12:
        state_res = StateResolutionVersion.V2_1
    else:
        state_res = StateResolutionVersion.V2
    return RoomVersion(
        identifier=str(n),
        stable=True,
        event_id_format=id_format,
        room_id_is_create_event_id=n >= 12,
        create_event_in_auth_events=n < 12,
        redacts_in_content=n >= 11,
        strict_canonical_json=n >= 6,
        enforce_key_validity=n >= 5,
        redaction_keeps_origin_membership_prev_state=n <= 10,
        redaction_keeps_aliases=n <= 5,
        redaction_keeps_join_rules_allow=n >= 8,
        redaction_keeps_join_authorised_via=n >= 9,
        redaction_keeps_all_create_content=n >= 11,
        redaction_keeps_redaction_redacts=n >= 11,
        redaction_keeps_power_levels_invite=n >= 11,
        redaction_keeps_third_party_invite_signed=n >= 11,
        create_requires_creator_field=n <= 10,
        creators_have_infinite_power=n >= 12,
        integer_power_levels=n >= 10,
        special_case_aliases_auth=n <= 5,
        redaction_auth_rule=n <= 2,
        limit_notifications_power_levels=n >= 6,
        knock_join_rule=n >= 7,
        restricted_join_rule=n >= 8,
        knock_restricted_join_rule=n >= 10,
        state_resolution=state_res,
    )


#: The versions this server can create, join and authorise events in.
SUPPORTED_ROOM_VERSIONS: dict[str, RoomVersion] = {
    v.identifier: v for v in (_version(n) for n in range(1, 13))
}

#: Every version the spec defines. The create-event auth rule rejects only a
#: ``content.room_version`` the spec does not know, which is a different
#: question from whether *this* server supports it.
KNOWN_ROOM_VERSION_IDS: frozenset[str] = frozenset(str(i) for i in range(1, 13))

DEFAULT_ROOM_VERSION = "12"


def get_room_version(room_version: str | RoomVersion) -> RoomVersion:
    """Look up a supported room version, accepting an already-resolved one.

    Accepting a :class:`RoomVersion` lets every public function take either
    form without each one repeating the conversion.
    """
    if isinstance(room_version, RoomVersion):
        return room_version
    if isinstance(room_version, str):
        found = SUPPORTED_ROOM_VERSIONS.get(room_version)
        if found is not None:
            return found
    raise UnsupportedRoomVersionError(room_version)
