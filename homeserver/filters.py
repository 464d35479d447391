"""Sync filters (the spec's Filtering): validated, stored per user, loaded by /sync.

A filter is stored as uploaded, so GET returns what the client sent; it is
validated first, so a stored filter always parses. Clients upload the same
filter at every start, so an identical definition returns the ID it already
has. /sync loads a filter on every request, so stored ones are cached (they
never change once stored).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from federation.json_bounds import JSONBoundsError, loads_bounded
from homeserver.errors import bad_json, not_found
from homeserver.filtering import RoomEventFilter, filter_json_error
from homeserver.storage.database import Txn

if TYPE_CHECKING:
    from homeserver.server import HomeServer

_CACHE_SIZE = 10_000
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


class FilterService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self._cache: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    async def create(self, user_id: str, definition: dict[str, Any]) -> str:
        """Store a validated filter; returns its ID (the existing one for a
        definition this user already stored)."""
        SyncFilter.parse(definition)
        data = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS).decode()
        digest = hashlib.sha256(data.encode()).hexdigest()

        async def fn(txn: Txn) -> int:
            await txn.execute(
                "INSERT INTO user_filters (user_id, filter_hash, filter_json) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, filter_hash) DO NOTHING",
                (user_id, digest, data),
            )
            row = await txn.fetchone(
                "SELECT filter_id FROM user_filters WHERE user_id = ? AND filter_hash = ?",
                (user_id, digest),
            )
            assert row is not None
            return int(row[0])

        return str(await self.hs.db.write(fn))

    async def get(self, user_id: str, filter_id: str) -> dict[str, Any]:
        """A stored filter of this user; M_NOT_FOUND for any other ID."""
        key = (user_id, filter_id)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        # isascii: str.isdigit admits "²", which int() refuses.
        if not filter_id.isascii() or not filter_id.isdigit() or len(filter_id) > 18:  # beyond a BIGINT
            raise not_found("No such filter")
        row = await self.hs.db.fetchone(
            "SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?",
            (user_id, int(filter_id)),
        )
        if row is None:
            raise not_found("No such filter")
        definition: dict[str, Any] = orjson.loads(row[0])
        self._cache[key] = definition
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return definition

    async def load_filter(self, user_id: str, filter_param: str | None) -> dict[str, Any]:
        """What /sync's `filter` parameter names: inline JSON (it starts with "{",
        which no filter ID does) or the ID of one of the user's stored filters.
        None means no filter ({}). Parse the result with `SyncFilter.parse`."""
        if filter_param is None or filter_param == "":
            return {}
        if filter_param.lstrip().startswith("{"):
            try:
                definition: Any = loads_bounded(filter_param)
            except JSONBoundsError as e:
                raise filter_json_error(e) from None
            SyncFilter.parse(definition)
            return definition
        return await self.get(user_id, filter_param)
