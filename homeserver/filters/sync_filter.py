"""A filter definition (the spec's Filter) as /sync applies it: which rooms, which
events of each section, and the event format. Parsing validates the definition
(M_BAD_JSON naming the field otherwise)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import bad_json
from homeserver.filters.event_filter import RoomEventFilter

EVENT_FORMATS = ("client", "federation")


def _id_list(obj: dict[str, Any], key: str, sigil: str, what: str) -> list[str] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith(sigil) for v in value):
        raise bad_json(f"Filter field '{key}' must be a list of {what}")
    return value


def _object(obj: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, dict):
        raise bad_json(f"Filter field '{key}' must be an object")
    return value


def _event_filter(obj: Any, *, room_fields: bool) -> RoomEventFilter:
    """An EventFilter or RoomEventFilter. RoomEventFilter.parse checks the field
    types; the spec's ID patterns (senders are user IDs, rooms room IDs) are
    checked here so a typo fails at upload rather than matching nothing."""
    parsed = RoomEventFilter.parse(obj)
    if obj is not None:
        _id_list(obj, "senders", "@", "user IDs")
        _id_list(obj, "not_senders", "@", "user IDs")
        if room_fields:
            _id_list(obj, "rooms", "!", "room IDs")
            _id_list(obj, "not_rooms", "!", "room IDs")
    return parsed


@dataclass(frozen=True)
class SyncFilter:
    """A parsed filter definition, as /sync applies it."""

    event_fields: list[str] | None = None
    event_format: str = "client"
    presence: RoomEventFilter = field(default_factory=RoomEventFilter)
    account_data: RoomEventFilter = field(default_factory=RoomEventFilter)
    rooms: list[str] | None = None  # RoomFilter.rooms: applied before the sections below
    not_rooms: list[str] | None = None
    include_leave: bool = False
    timeline: RoomEventFilter = field(default_factory=RoomEventFilter)
    state: RoomEventFilter = field(default_factory=RoomEventFilter)
    ephemeral: RoomEventFilter = field(default_factory=RoomEventFilter)
    room_account_data: RoomEventFilter = field(default_factory=RoomEventFilter)

    @classmethod
    def parse(cls, obj: Any) -> SyncFilter:
        """Validate a filter definition (M_BAD_JSON naming the field otherwise).
        Unknown keys are ignored, as everywhere in the spec's JSON."""
        if not isinstance(obj, dict):
            raise bad_json("A filter must be a JSON object")
        event_fields = obj.get("event_fields")
        if event_fields is not None and (
            not isinstance(event_fields, list) or not all(isinstance(f, str) for f in event_fields)
        ):
            raise bad_json("Filter field 'event_fields' must be a list of strings")
        event_format = obj.get("event_format", "client")
        if event_format not in EVENT_FORMATS:
            raise bad_json("Filter field 'event_format' must be 'client' or 'federation'")
        room = _object(obj, "room") or {}
        include_leave = room.get("include_leave", False)
        if not isinstance(include_leave, bool):
            raise bad_json("Filter field 'include_leave' must be a boolean")
        sections = {}
        for key in ("timeline", "state", "ephemeral", "account_data"):
            sections[key] = _event_filter(_object(room, key), room_fields=True)
        return cls(
            event_fields=event_fields,
            event_format=event_format,
            presence=_event_filter(_object(obj, "presence"), room_fields=False),
            account_data=_event_filter(_object(obj, "account_data"), room_fields=False),
            rooms=_id_list(room, "rooms", "!", "room IDs"),
            not_rooms=_id_list(room, "not_rooms", "!", "room IDs"),
            include_leave=include_leave,
            timeline=sections["timeline"],
            state=sections["state"],
            ephemeral=sections["ephemeral"],
            room_account_data=sections["account_data"],
        )

    def includes_room(self, room_id: str) -> bool:
        """The RoomFilter's rooms/not_rooms (not_rooms wins)."""
        if self.not_rooms and room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


