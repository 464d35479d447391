"""Events as clients see them (the spec's ClientEvent format).

The stored PDU carries federation fields clients do not need; redacted events
are served redacted, with the redaction under unsigned.redacted_because.
"""

from __future__ import annotations

from typing import Any

import orjson

from federation.events import redact_event
from homeserver.records.events import StoredEvent

_CLIENT_KEYS = ("content", "event_id", "origin_server_ts", "room_id", "sender", "type", "state_key")
_UNSIGNED_AGE = b',"unsigned":{"age":'


def client_event(
    stored: StoredEvent,
    room_id: str,
    room_version: str,
    now_ms: int,
    *,
    device_id: str | None = None,
    user_id: str | None = None,
    redaction: StoredEvent | None = None,
    prev_content: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Shape one event for a client; `user_id`'s `device_id` is the requesting device,
    which alone sees the transaction ID it sent the event with."""
    source = stored.event
    if stored.redacted_by is not None:
        source = redact_event(source, room_version)
    # A plain loop, not a comprehension: this runs for every event of every response
    # (11,000 in a 1,000-room initial sync), and a comprehension's own frame costs more
    # than its seven lookups.
    out = _client_fields(source, stored.event, stored.event_id, room_id)
    unsigned: dict[str, Any] = {"age": max(0, now_ms - int(source.get("origin_server_ts", now_ms)))}
    txn_id = stored.transaction_id_for(user_id, device_id)
    if txn_id is not None:
        unsigned["transaction_id"] = txn_id
    if redaction is not None and stored.redacted_by is not None:
        unsigned["redacted_because"] = client_event(redaction, room_id, room_version, now_ms)
    if prev_content is not None:
        unsigned["prev_content"] = prev_content
    out["unsigned"] = unsigned
    return out


def _client_fields(source: dict[str, Any], original: dict[str, Any], event_id: str, room_id: str) -> dict[str, Any]:
    """An event's top-level client fields (`source`: the event as the client sees it,
    redacted or not), before `unsigned`, which the callers add (whole, or as a prefix
    each reader ends with its own age)."""
    out: dict[str, Any] = {}
    for key in _CLIENT_KEYS:
        if key in source:
            out[key] = source[key]
    out["event_id"] = event_id
    out["room_id"] = room_id
    if original["type"] == "m.room.redaction":
        # v11 moved `redacts` into content; clients still look for it at the top level too.
        target = original.get("redacts") or original.get("content", {}).get("redacts")
        if isinstance(target, str):
            out["redacts"] = target
    return out


def client_json_prefix(stored: StoredEvent, room_id: str) -> bytes | None:
    """The encoded client JSON of an unredacted event as `client_event` shapes it for no
    device, up to the value of its `unsigned.age` (which the caller appends, then `}}`):
    kept by an initial sync's sections (sync/initial_sections.py), whose readers each
    add their own age. None for what orjson does not encode (the caller formats it)."""
    out = _client_fields(stored.event, stored.event, stored.event_id, room_id)
    try:
        encoded = orjson.dumps(out)
    except orjson.JSONEncodeError:
        return None
    return encoded[:-1] + _UNSIGNED_AGE
