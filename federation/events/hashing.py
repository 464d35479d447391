"""Content hashes, reference hashes, event IDs and v12 room IDs.

Two layers:

* ``compute_content_hash_of`` follows the server-server spec literally on
  whatever object it is given (used for the appendix test vectors, whose
  events are in the old format with an ``event_id`` field).
* The room-version-aware functions take an event in Accord's internal form,
  which may carry an ``event_id`` key for convenience. From room version 3
  the event ID is *derived from* the PDU, never part of it, so these
  functions drop that key first (otherwise the hash would cover its own
  output). In versions 1 and 2 the sending server chose the ID and it is a
  field of the PDU like any other: hashed, signed and sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from .canonical import decode_base64, encode_base64, encode_event_canonical_json
from .redaction import redact_event
from .room_versions import EventIdFormat, RoomVersion, get_room_version

__all__ = [
    "compute_content_hash",
    "compute_content_hash_of",
    "compute_event_id",
    "compute_reference_hash",
    "reference_hash_b64",
    "content_hash_matches",
    "create_event_id_from_room_id",
    "has_event_id_in_pdu",
    "is_v1_event_id",
    "pdu_json",
    "room_id_from_create_event_id",
]


def pdu_json(
    event: Mapping[str, Any], room_version: str | RoomVersion | None = None
) -> dict[str, Any]:
    """The PDU as it goes over federation.

    From v3 that is the event without Accord's ``event_id`` convenience key;
    in v1/v2 the ``event_id`` is part of the PDU and stays. Without
    ``room_version`` the format is read from the event itself (see
    :func:`has_event_id_in_pdu`), which is sound for any event that passed
    format validation.
    """
    if room_version is not None:
        keep = get_room_version(room_version).event_id_in_pdu
    else:
        keep = has_event_id_in_pdu(event)
    if keep:
        return dict(event)
    return {k: v for k, v in event.items() if k != "event_id"}


def has_event_id_in_pdu(event: Mapping[str, Any]) -> bool:
    """Whether a valid event is of room version 1 or 2, from its shape alone.

    Their references are ``[id, hashes]`` pairs where later versions have
    strings; a create event cites nothing, but names its version (absent
    means "1"). Lets code that holds a stored event but not its room (the
    federation sender) send it in the right form.
    """
    for key in ("prev_events", "auth_events"):
        refs = event.get(key)
        if isinstance(refs, list) and refs:
            return isinstance(refs[0], list)
    if event.get("type") == "m.room.create":
        content = event.get("content")
        version = content.get("room_version", "1") if isinstance(content, Mapping) else "1"
        return version in ("1", "2")
    return False


def compute_content_hash_of(
    obj: Mapping[str, Any], *, encode: Callable[[Any], bytes] = encode_event_canonical_json
) -> bytes:
    """SHA-256 of the object minus ``unsigned``, ``signatures`` and ``hashes``, per the spec.
    ``encode``: the canonical form (``encode_plain_json`` for an object known plain)."""
    stripped = {k: v for k, v in obj.items() if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(encode(stripped)).digest()


def compute_content_hash(
    event: Mapping[str, Any], room_version: str | RoomVersion | None = None,
    *, encode: Callable[[Any], bytes] = encode_event_canonical_json,
) -> bytes:
    """The content hash of an event (over its PDU form, see :func:`pdu_json`)."""
    return compute_content_hash_of(pdu_json(event, room_version), encode=encode)


def content_hash_matches(
    event: Mapping[str, Any], room_version: str | RoomVersion | None = None
) -> bool:
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
    return expected_bytes == compute_content_hash(event, room_version)


def compute_reference_hash(
    event: Mapping[str, Any], room_version: str | RoomVersion
) -> bytes:
    """Redact, drop ``signatures``/``unsigned``, canonicalise, SHA-256."""
    redacted = redact_event(pdu_json(event, room_version), room_version)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return hashlib.sha256(encode_event_canonical_json(redacted)).digest()


def reference_hash_b64(event: Mapping[str, Any], room_version: str | RoomVersion) -> str:
    """The reference hash as v1/v2 ``prev_events``/``auth_events`` pairs cite it
    (``{"sha256": <this>}``): standard unpadded base64."""
    return encode_base64(compute_reference_hash(event, room_version))


def compute_event_id(
    event: Mapping[str, Any], room_version: str | RoomVersion, *, reference_hash: bytes | None = None
) -> str:
    """The event's ID as its room version defines it.

    v3: ``$`` + base64 of the reference hash; v4+: the same in URL-safe
    base64. v1/v2: the ``event_id`` the sending server put in the PDU (there
    is nothing to compute); ``ValueError`` if it is missing or malformed.
    ``reference_hash``: the event's, when the caller already has it (the builder
    takes it from the bytes it signed).
    """
    rv = get_room_version(room_version)
    if rv.event_id_format is EventIdFormat.IN_EVENT:
        event_id = event.get("event_id")
        if not is_v1_event_id(event_id):
            raise ValueError(f"Not a room version {rv.identifier} event ID: {event_id!r}")
        return event_id  # type: ignore[return-value]
    urlsafe = rv.event_id_format is EventIdFormat.REFERENCE_HASH_URLSAFE
    digest = reference_hash if reference_hash is not None else compute_reference_hash(event, rv)
    return "$" + encode_base64(digest, urlsafe=urlsafe)


def is_v1_event_id(value: object) -> bool:
    """``$opaque:domain`` with a non-empty opaque part and domain, at most 255 bytes."""
    if not isinstance(value, str) or not value.startswith("$") or ":" not in value:
        return False
    opaque, _, domain = value[1:].partition(":")
    return bool(opaque) and bool(domain) and len(value.encode("utf-8")) <= 255


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
