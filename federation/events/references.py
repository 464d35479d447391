"""Reading and writing an event's references to other events.

``prev_events`` and ``auth_events`` hold event IDs from room version 3 on;
in versions 1 and 2 each entry is an ``[event_id, {"sha256": reference
hash}]`` pair. Everything that follows the DAG reads the IDs through
:func:`prev_event_ids` and :func:`auth_event_ids`, so no code outside this
module needs to know which form a room uses; :func:`event_refs` writes the
form a room version requires. The format itself (which form is allowed in
which version) is checked once, by ``builder.validate_pdu``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .room_versions import RoomVersion, get_room_version

__all__ = ["auth_event_ids", "event_refs", "is_ref_list", "prev_event_ids", "ref_ids"]


def ref_ids(value: Any) -> list[str]:
    """The event IDs of a ``prev_events``/``auth_events`` value in either form.

    Entries that are neither an ID nor a pair starting with one are skipped:
    a malformed event is refused by format validation, and code that reads a
    stored or half-checked event must not fail on it.
    """
    if not isinstance(value, (list, tuple)):
        return []
    ids: list[str] = []
    for entry in value:
        if isinstance(entry, str):
            ids.append(entry)
        elif isinstance(entry, (list, tuple)) and entry and isinstance(entry[0], str):
            ids.append(entry[0])
    return ids


def prev_event_ids(event: Mapping[str, Any]) -> list[str]:
    """The IDs of the event's ``prev_events``, in order."""
    return ref_ids(event.get("prev_events"))


def auth_event_ids(event: Mapping[str, Any]) -> list[str]:
    """The IDs of the event's ``auth_events``, in order."""
    return ref_ids(event.get("auth_events"))


ReferenceHashes = Mapping[str, str] | Callable[[str], str]


def event_refs(
    event_ids: Iterable[str],
    room_version: str | RoomVersion,
    reference_hashes: ReferenceHashes | None = None,
) -> list[Any]:
    """``prev_events``/``auth_events`` for a new event in the room version's form.

    v1/v2 need each cited event's reference hash (base64, see
    ``hashing.reference_hash_b64``): a mapping or a function from ID to it.
    ``ValueError`` if one is missing.
    """
    rv = get_room_version(room_version)
    ids = list(event_ids)
    if not rv.event_id_in_pdu or not ids:
        return ids
    if reference_hashes is None:
        raise ValueError(f"Room version {rv.identifier} needs the reference hashes of cited events")
    lookup = reference_hashes.get if isinstance(reference_hashes, Mapping) else reference_hashes
    refs: list[Any] = []
    for event_id in ids:
        digest = lookup(event_id)
        if not isinstance(digest, str):
            raise ValueError(f"No reference hash for {event_id}")
        refs.append([event_id, {"sha256": digest}])
    return refs


def is_ref_list(value: Any, room_version: str | RoomVersion) -> bool:
    """Whether ``value`` is a well-formed reference list for the room version."""
    rv = get_room_version(room_version)
    if not isinstance(value, list):
        return False
    if not rv.event_id_in_pdu:
        return all(isinstance(i, str) and i.startswith("$") for i in value)
    return all(_is_pair(entry) for entry in value)


def _is_pair(entry: Any) -> bool:
    if not isinstance(entry, list) or len(entry) != 2:
        return False
    event_id, hashes = entry
    return (
        isinstance(event_id, str)
        and event_id.startswith("$")
        and isinstance(hashes, Mapping)
    )


