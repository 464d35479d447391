"""The Matrix room protocol core as pure functions.

Event format, hashing, signing, redaction, authorisation rules and state
resolution for room versions 10, 11 and 12. Nothing here does I/O, reads a
clock or touches storage; the homeserver feeds in events and keys and gets
back decisions. Events are plain PDU dicts; where an algorithm needs an
event's ID it reads an ``event_id`` key, which never goes over federation
(see :func:`pdu_json`).
"""

from .auth import (
    AuthError,
    auth_types_for_event,
    check_auth,
    check_auth_events,
    check_event_auth,
    event_id_of,
    select_auth_event_ids,
    third_party_invite_signature_valid,
)
from .builder import (
    MAX_PDU_SIZE,
    EventFormatError,
    build_event,
    room_id_for_new_room,
    validate_pdu,
)
from .canonical import (
    CanonicalJSONError,
    check_canonical_json,
    decode_base64,
    encode_base64,
    encode_canonical_json,
    parse_json_strict,
)
from .hashing import (
    compute_content_hash,
    compute_content_hash_of,
    compute_event_id,
    compute_reference_hash,
    content_hash_matches,
    create_event_id_from_room_id,
    pdu_json,
    room_id_from_create_event_id,
)
from .identifiers import domain_of, is_strictly_valid_user_id, is_valid_user_id
from .power_levels import (
    CREATOR_POWER_LEVEL,
    get_named_level,
    get_required_power_level,
    get_user_power_level,
    room_creators,
)
from .redaction import (
    redact_content,
    redact_event,
    redaction_should_apply,
    redaction_target,
)
from .room_versions import (
    DEFAULT_ROOM_VERSION,
    KNOWN_ROOM_VERSION_IDS,
    SUPPORTED_ROOM_VERSIONS,
    RoomVersion,
    StateResolutionVersion,
    UnsupportedRoomVersionError,
    get_room_version,
)
from .signing import (
    SignatureError,
    add_hashes_and_signature,
    decode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    key_id_of,
    servers_required_to_sign,
    sign_event,
    sign_json,
    signing_key_from_seed,
    verify_event_signatures,
    verify_json_signature,
    verify_signed_by,
)
from .state_res import (
    compute_auth_chain,
    conflicted_state_subgraph,
    is_power_event,
    resolve_state,
    separate_state_sets,
)

__all__ = [
    "CREATOR_POWER_LEVEL",
    "DEFAULT_ROOM_VERSION",
    "KNOWN_ROOM_VERSION_IDS",
    "MAX_PDU_SIZE",
    "SUPPORTED_ROOM_VERSIONS",
    "AuthError",
    "CanonicalJSONError",
    "EventFormatError",
    "RoomVersion",
    "SignatureError",
    "StateResolutionVersion",
    "UnsupportedRoomVersionError",
    "add_hashes_and_signature",
    "auth_types_for_event",
    "build_event",
    "check_auth",
    "check_auth_events",
    "check_canonical_json",
    "check_event_auth",
    "compute_auth_chain",
    "compute_content_hash",
    "compute_content_hash_of",
    "compute_event_id",
    "compute_reference_hash",
    "conflicted_state_subgraph",
    "content_hash_matches",
    "create_event_id_from_room_id",
    "decode_base64",
    "decode_verify_key_base64",
    "domain_of",
    "encode_base64",
    "encode_canonical_json",
    "event_id_of",
    "generate_signing_key",
    "get_named_level",
    "get_required_power_level",
    "get_room_version",
    "get_user_power_level",
    "get_verify_key",
    "is_power_event",
    "is_strictly_valid_user_id",
    "is_valid_user_id",
    "key_id_of",
    "parse_json_strict",
    "pdu_json",
    "redact_content",
    "redact_event",
    "redaction_should_apply",
    "redaction_target",
    "resolve_state",
    "room_creators",
    "room_id_for_new_room",
    "room_id_from_create_event_id",
    "select_auth_event_ids",
    "separate_state_sets",
    "servers_required_to_sign",
    "sign_event",
    "sign_json",
    "signing_key_from_seed",
    "third_party_invite_signature_valid",
    "validate_pdu",
    "verify_event_signatures",
    "verify_json_signature",
    "verify_signed_by",
]
