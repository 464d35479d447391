"""Building PDUs and validating the PDU format of each room version.

A locally created event and one received over federation must meet the
same format rules, or we would emit events other servers drop; so the
builder runs the validator on its own output.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from .canonical import (
    MAX_SAFE_INTEGER,
    CanonicalJSONError,
    encode_base64,
    encode_event_canonical_json,
    encode_plain_json,
    encode_strict_event_json,
    is_plain_event_json,
    json_copy,
)
from .hashing import (
    compute_content_hash,
    compute_event_id,
    is_v1_event_id,
    pdu_json,
    room_id_from_create_event_id,
)
from .identifiers import MAX_IDENTIFIER_BYTES, domain_of
from .json_bounds import MAX_EVENT_DEPTH, JSONBoundsError, check_depth
from .references import ReferenceHashes, event_refs, is_ref_list
from .room_versions import RoomVersion, get_room_version
from .signing import SigningKey, hash_and_sign_event

__all__ = [
    "MAX_AUTH_EVENTS",
    "MAX_PDU_SIZE",
    "MAX_PREV_EVENTS",
    "EventFormatError",
    "build_event",
    "room_id_for_new_room",
    "validate_pdu",
]

MAX_PDU_SIZE = 65536
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10


class EventFormatError(ValueError):
    """The PDU does not have the format its room version requires.

    Over federation such events are dropped; from clients this maps to
    ``M_BAD_JSON`` (or ``M_TOO_LARGE`` when ``too_large`` is set).
    """

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        self.too_large = too_large
        super().__init__(message)


def _byte_len(value: str) -> int:
    return len(value.encode("utf-8"))


def validate_pdu(event: Mapping[str, Any], room_version: str | RoomVersion) -> None:
    """Check a PDU against its room version's event format and the size limits.

    Accepts the internal form (with ``event_id``); the size limit is applied
    to the federation form, which is what the 64 KiB rule is about.
    """
    _validate_pdu(event, get_room_version(room_version), nesting_checked=False)


def _validate_pdu(
    event: Mapping[str, Any], rv: RoomVersion, *, nesting_checked: bool, plain: bool = False
) -> None:
    """`validate_pdu`; `nesting_checked`: the PDU is one `build_event` made, whose
    content was bounded one level below the PDU's bound, and whose other fields it
    wrote itself (a few levels at most), so its nesting needs no second walk; `plain`:
    the builder found it plain (`is_plain_event_json`), so it is encoded without a
    walk."""
    if not isinstance(event, Mapping):
        raise EventFormatError("PDU must be a JSON object")
    pdu = pdu_json(event, rv)

    if not nesting_checked:
        try:
            # The depth first: the checks below walk the value recursively.
            check_depth(pdu, MAX_EVENT_DEPTH, "PDU")
        except JSONBoundsError as exc:
            raise EventFormatError(str(exc)) from exc
    try:
        if plain:
            size = len(encode_plain_json(pdu))
        elif rv.strict_canonical_json:
            size = len(encode_strict_event_json(pdu))
        else:
            size = len(encode_event_canonical_json(pdu))
    except (CanonicalJSONError, UnicodeEncodeError) as exc:
        raise EventFormatError(f"PDU is not valid canonical JSON: {exc}") from exc
    if size > MAX_PDU_SIZE:
        raise EventFormatError(
            f"PDU is {size} bytes, over the {MAX_PDU_SIZE} byte limit", too_large=True
        )

    for key, kind in (
        ("type", str),
        ("sender", str),
        ("content", Mapping),
        ("origin_server_ts", int),
        ("depth", int),
        ("hashes", Mapping),
        ("signatures", Mapping),
        ("prev_events", list),
        ("auth_events", list),
    ):
        if key not in pdu:
            raise EventFormatError(f"PDU is missing {key!r}")
        if not isinstance(pdu[key], kind) or isinstance(pdu[key], bool):
            raise EventFormatError(f"PDU {key!r} has the wrong type")

    is_create = pdu["type"] == "m.room.create"
    if "room_id" in pdu:
        if not isinstance(pdu["room_id"], str) or not pdu["room_id"].startswith("!"):
            raise EventFormatError("PDU 'room_id' must be a room ID")
    elif not (rv.room_id_is_create_event_id and is_create):
        raise EventFormatError("PDU is missing 'room_id'")

    sender = pdu["sender"]
    if not sender.startswith("@") or ":" not in sender:
        raise EventFormatError("PDU 'sender' must be a user ID")
    if "state_key" in pdu and not isinstance(pdu["state_key"], str):
        raise EventFormatError("PDU 'state_key' must be a string")
    for key in ("type", "sender", "room_id", "state_key"):
        value = pdu.get(key)
        if isinstance(value, str) and _byte_len(value) > MAX_IDENTIFIER_BYTES:
            raise EventFormatError(
                f"PDU {key!r} is longer than {MAX_IDENTIFIER_BYTES} bytes", too_large=True
            )
    event_id = event.get("event_id")
    if isinstance(event_id, str) and _byte_len(event_id) > MAX_IDENTIFIER_BYTES:
        raise EventFormatError("event_id is longer than 255 bytes", too_large=True)
    if rv.event_id_in_pdu and not is_v1_event_id(pdu.get("event_id")):
        raise EventFormatError(f"Room version {rv.identifier} PDUs need an event_id '$id:server'")

    if not 0 <= pdu["depth"] <= MAX_SAFE_INTEGER:
        raise EventFormatError("PDU 'depth' out of range")
    if not isinstance(pdu["hashes"].get("sha256"), str):
        raise EventFormatError("PDU 'hashes' must contain a sha256 string")
    for key, limit in (("prev_events", MAX_PREV_EVENTS), ("auth_events", MAX_AUTH_EVENTS)):
        refs = pdu[key]
        if len(refs) > limit:
            raise EventFormatError(f"PDU has more than {limit} {key}")
        if not is_ref_list(refs, rv):
            shape = "[event ID, hashes] pairs" if rv.event_id_in_pdu else "event IDs"
            raise EventFormatError(f"PDU {key!r} must be a list of {shape}")
    if not rv.redacts_in_content and pdu["type"] == "m.room.redaction":
        if "redacts" in pdu and not isinstance(pdu["redacts"], str):
            raise EventFormatError("PDU 'redacts' must be an event ID")


def build_event(
    room_version: str | RoomVersion,
    *,
    room_id: str | None,
    sender: str,
    event_type: str,
    content: Mapping[str, Any],
    prev_events: Sequence[str],
    auth_events: Sequence[str],
    depth: int,
    origin_server_ts: int,
    state_key: str | None = None,
    redacts: str | None = None,
    signing_key: SigningKey | None = None,
    server_name: str | None = None,
    reference_hashes: ReferenceHashes | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Build a complete, hashed and signed PDU; returns it with ``event_id`` set.

    For a v12 ``m.room.create`` pass ``room_id=None``: the room ID is derived
    from the resulting event ID and is *not* added to the create event
    (use ``room_id_from_create_event_id``). ``redacts`` goes to the top level
    or into ``content`` as the room version requires. ``server_name``
    defaults to the sender's domain. Without ``signing_key`` the event is
    hashed but unsigned (useful for tests and for templates such as
    ``make_join`` responses).

    Room versions 1 and 2 cite events as ``[event_id, hashes]`` pairs, so
    they need ``reference_hashes`` (ID to base64 reference hash, see
    ``hashing.reference_hash_b64``) for every prev and auth event, and carry
    an ``event_id`` chosen by the server: ``event_id`` if given, else
    ``$<random>:<server_name>``.
    """
    rv = get_room_version(room_version)
    try:
        # Content sits one level down in the event; check before copying it.
        check_depth(dict(content), MAX_EVENT_DEPTH - 1, "Event content")
    except JSONBoundsError as exc:
        raise EventFormatError(str(exc)) from exc
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "content": json_copy(dict(content)),
        "prev_events": _refs(prev_events, rv, reference_hashes),
        "auth_events": _refs(auth_events, rv, reference_hashes),
        "depth": min(depth, MAX_SAFE_INTEGER),
        "origin_server_ts": origin_server_ts,
        "hashes": {},
        "signatures": {},
    }
    if event_type == "m.room.create" and rv.room_id_is_create_event_id:
        if room_id is not None:
            raise EventFormatError("A v12 m.room.create event must not have a room_id")
    else:
        if room_id is None:
            raise EventFormatError("room_id is required")
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    origin = server_name or domain_of(sender)
    if rv.event_id_in_pdu:
        pdu["event_id"] = event_id or f"${secrets.token_urlsafe(18)}:{origin}"
    if redacts is not None:
        if rv.redacts_in_content:
            pdu["content"]["redacts"] = redacts
        else:
            pdu["redacts"] = redacts

    # Walked once: the content hash, the bytes signed and the size check then encode
    # it (or parts of it) without a walk each.
    plain = is_plain_event_json(pdu)
    encode = encode_plain_json if plain else encode_event_canonical_json
    reference_hash = None
    if signing_key is not None:
        # The bytes signed are those the reference hash is taken over: hashed once.
        pdu, signed = hash_and_sign_event(pdu, rv, origin, signing_key, encode=encode)
        reference_hash = hashlib.sha256(signed).digest()
    else:
        pdu["hashes"] = {"sha256": encode_base64(compute_content_hash(pdu, rv, encode=encode))}
    _validate_pdu(pdu, rv, nesting_checked=True, plain=plain)
    pdu["event_id"] = compute_event_id(pdu, rv, reference_hash=reference_hash)
    return pdu


def _refs(ids: Sequence[str], rv: RoomVersion, hashes: ReferenceHashes | None) -> list[Any]:
    try:
        return event_refs(ids, rv, hashes)
    except ValueError as exc:
        raise EventFormatError(str(exc)) from exc


def room_id_for_new_room(create_event: Mapping[str, Any], room_version: str | RoomVersion) -> str:
    """The room ID of a room whose create event this is, for either ID scheme."""
    rv = get_room_version(room_version)
    if rv.room_id_is_create_event_id:
        event_id = create_event.get("event_id")
        if not isinstance(event_id, str):
            event_id = compute_event_id(create_event, rv)
        return room_id_from_create_event_id(event_id)
    room_id = create_event.get("room_id")
    if not isinstance(room_id, str):
        raise EventFormatError("create event has no room_id")
    return room_id
