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
    """Which variant of the state resolution v2 algorithm a room uses."""

    V2 = "2"
    #: Room version 12 (MSC4297): iterative auth checks start from an empty
    #: state map and the full conflicted set includes the conflicted state
    #: subgraph.
    V2_1 = "2.1"


@dataclass(frozen=True, slots=True)
class RoomVersion:
    """The protocol rules of one room version.

    Only versions 10 and later are modelled, so flags for behaviours that
    were settled before v10 (hash-based event IDs, strict canonical JSON,
    knocking, restricted joins) are constant across the supported versions
    but are kept explicit so the code reads as the spec does.
    """

    identifier: str
    #: Advertised as "stable" in /capabilities.
    stable: bool

    # --- Event format ---------------------------------------------------
    #: v12: the room ID is ``!`` + the create event's reference hash, and the
    #: create event has no ``room_id``.
    room_id_is_create_event_id: bool
    #: v10/v11 list the create event in ``auth_events``; v12 must not.
    create_event_in_auth_events: bool
    #: v11+: ``redacts`` moved from the top level into ``content``.
    redacts_in_content: bool
    #: v6+: an event whose JSON is not canonical JSON's value space (floats,
    #: integers beyond +-(2**53 - 1)) is rejected; older versions accept it.
    strict_canonical_json: bool

    # --- Redaction algorithm --------------------------------------------
    #: Up to v10 the top-level ``origin``, ``membership`` and ``prev_state``
    #: survive redaction.
    redaction_keeps_origin_membership_prev_state: bool
    #: v11+: the create event keeps its whole content (v10 only ``creator``).
    redaction_keeps_all_create_content: bool
    #: v11+: ``m.room.redaction`` keeps ``content.redacts``.
    redaction_keeps_redaction_redacts: bool
    #: v11+: ``m.room.power_levels`` keeps ``invite``.
    redaction_keeps_power_levels_invite: bool
    #: v11+: ``m.room.member`` keeps ``third_party_invite.signed``.
    redaction_keeps_third_party_invite_signed: bool

    # --- Authorisation rules --------------------------------------------
    #: v10: the create event must carry ``content.creator`` and that is the
    #: creator. v11+: the creator is the create event's ``sender``.
    create_requires_creator_field: bool
    #: v12 (MSC4289): creators (sender + ``additional_creators``) have an
    #: infinite power level and must not appear in ``users``.
    creators_have_infinite_power: bool
    #: v10+: power level values must be real integers, never strings.
    integer_power_levels: bool
    knock_join_rule: bool
    restricted_join_rule: bool
    knock_restricted_join_rule: bool

    # --- State resolution -----------------------------------------------
    state_resolution: StateResolutionVersion


_V10 = RoomVersion(
    identifier="10",
    stable=True,
    room_id_is_create_event_id=False,
    create_event_in_auth_events=True,
    redacts_in_content=False,
    strict_canonical_json=True,
    redaction_keeps_origin_membership_prev_state=True,
    redaction_keeps_all_create_content=False,
    redaction_keeps_redaction_redacts=False,
    redaction_keeps_power_levels_invite=False,
    redaction_keeps_third_party_invite_signed=False,
    create_requires_creator_field=True,
    creators_have_infinite_power=False,
    integer_power_levels=True,
    knock_join_rule=True,
    restricted_join_rule=True,
    knock_restricted_join_rule=True,
    state_resolution=StateResolutionVersion.V2,
)

_V11 = RoomVersion(
    identifier="11",
    stable=True,
    room_id_is_create_event_id=False,
    create_event_in_auth_events=True,
    redacts_in_content=True,
    strict_canonical_json=True,
    redaction_keeps_origin_membership_prev_state=False,
    redaction_keeps_all_create_content=True,
    redaction_keeps_redaction_redacts=True,
    redaction_keeps_power_levels_invite=True,
    redaction_keeps_third_party_invite_signed=True,
    create_requires_creator_field=False,
    creators_have_infinite_power=False,
    integer_power_levels=True,
    knock_join_rule=True,
    restricted_join_rule=True,
    knock_restricted_join_rule=True,
    state_resolution=StateResolutionVersion.V2,
)

_V12 = RoomVersion(
    identifier="12",
    stable=True,
    room_id_is_create_event_id=True,
    create_event_in_auth_events=False,
    redacts_in_content=True,
    strict_canonical_json=True,
    redaction_keeps_origin_membership_prev_state=False,
    redaction_keeps_all_create_content=True,
    redaction_keeps_redaction_redacts=True,
    redaction_keeps_power_levels_invite=True,
    redaction_keeps_third_party_invite_signed=True,
    create_requires_creator_field=False,
    creators_have_infinite_power=True,
    integer_power_levels=True,
    knock_join_rule=True,
    restricted_join_rule=True,
    knock_restricted_join_rule=True,
    state_resolution=StateResolutionVersion.V2_1,
)

#: The versions this server can create, join and authorise events in.
SUPPORTED_ROOM_VERSIONS: dict[str, RoomVersion] = {
    v.identifier: v for v in (_V10, _V11, _V12)
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
