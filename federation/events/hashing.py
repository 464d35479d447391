"""Content hashes, reference hashes, event IDs and v12 room IDs.

Two layers:

* ``compute_content_hash_of`` follows the server-server spec literally on
  whatever object it is given (used for the appendix test vectors, whose
  events are in the old format with an ``event_id`` field).
* The room-version-aware functions take an event in Accord's internal form,
  which may carry an ``event_id`` key for convenience. In every supported
  room version the event ID is *derived from* the PDU, never part of it, so
  these functions drop that key first; otherwise the hash would cover its
  own output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from .canonical import decode_base64, encode_base64, encode_canonical_json
from .redaction import redact_event
from .room_versions import RoomVersion, get_room_version

__all__ = [
    "compute_content_hash",
    "compute_content_hash_of",
    "compute_event_id",
    "compute_reference_hash",
    "content_hash_matches",
    "create_event_id_from_room_id",
    "pdu_json",
    "room_id_from_create_event_id",
]


def pdu_json(event: Mapping[str, Any]) -> dict[str, Any]:
    """The PDU as it goes over federation: without Accord's ``event_id`` convenience key."""
    return {k: v for k, v in event.items() if k != "event_id"}


def compute_content_hash_of(obj: Mapping[str, Any]) -> bytes:
    """SHA-256 of the object minus ``unsigned``, ``signatures`` and ``hashes``, per the spec."""
    stripped = {k: v for k, v in obj.items() if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(encode_canonical_json(stripped)).digest()


def compute_content_hash(event: Mapping[str, Any]) -> bytes:
    """The content hash of an event of any supported room version."""
    return compute_content_hash_of(pdu_json(event))


def content_hash_matches(event: Mapping[str, Any]) -> bool:
    """Whether ``hashes.sha256`` matches the event's actual content.

    A mismatch means the event must be treated as redacted (spec: "Passes hash
    checks, otherwise it is redacted"), not dropped, so this returns a bool
    rather than raising.
    """
    hashes = event.get("hashes")
    if not isinstance(hashes, Mapping):
        return False
    expected = hashes.get("sha256")
    if not isinstance(expected, str):
        return False
    try:
        expected_bytes = decode_base64(expected)
    except ValueError:
        return False
    return expected_bytes == compute_content_hash(event)


def compute_reference_hash(
    event: Mapping[str, Any], room_version: str | RoomVersion
) -> bytes:
    """Redact, drop ``signatures``/``unsigned``, canonicalise, SHA-256."""
    redacted = redact_event(pdu_json(event), room_version)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return hashlib.sha256(encode_canonical_json(redacted)).digest()


def compute_event_id(event: Mapping[str, Any], room_version: str | RoomVersion) -> str:
    """``$`` + URL-safe unpadded base64 of the reference hash (room versions 4+)."""
    get_room_version(room_version)
    return "$" + encode_base64(compute_reference_hash(event, room_version), urlsafe=True)


def room_id_from_create_event_id(create_event_id: str) -> str:
    """v12: a room's ID is its create event's ID with the ``!`` sigil."""
    if not create_event_id.startswith("$"):
        raise ValueError(f"Not an event ID: {create_event_id!r}")
    return "!" + create_event_id[1:]


def create_event_id_from_room_id(room_id: str) -> str:
    """v12: the create event ID implied by a room ID (the inverse of the above)."""
    if not room_id.startswith("!"):
        raise ValueError(f"Not a room ID: {room_id!r}")
    return "$" + room_id[1:]
