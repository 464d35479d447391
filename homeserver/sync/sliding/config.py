"""The request body of simplified sliding sync (MSC4186), parsed and validated.

The wire format is Synapse 1.163's (the MSC's current text renames several
fields): `lists` of at most 100 keys of at most 64 characters, each with
`ranges`, `required_state`, `timeline_limit` (at most 1000) and `filters`;
`room_subscriptions` by room ID; `extensions`. Unknown keys are ignored (a newer
client talking to this server must keep working), so is `unsubscribe_rooms`,
which matrix-js-sdk sends and neither the MSC nor Synapse defines. A value of the
wrong type is 400 M_BAD_JSON naming the field.

`required_state` is kept as Synapse normalises it (`RoomConfig.required`): a map
from event type to state keys, where `["*", "*"]` swallows everything, a type
with the `*` key swallows that type's other keys, and a `*` type with a key
removes that key from the explicit types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import MatrixError

WILDCARD = "*"
LAZY = "$LAZY"
ME = "$ME"
MAX_LISTS = 100
MAX_LIST_KEY = 64
MAX_TO_DEVICE = 100  # to-device messages a response carries at most (as Synapse)
MAX_CONN_ID = 255  # kept in memory per connection: bounded like any other key
MAX_TIMELINE_LIMIT = 1000
# Above this many rooms in a window, or ranges in a list, a request is refused rather
# than answered slowly (clients ask for one range of tens of rooms).
MAX_RANGE_ROOMS = 10_000
MAX_RANGES = 10

RequiredState = Mapping[str, frozenset[str]]


def _bad(what: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", what)


@dataclass(frozen=True)
class RoomConfig:
    """What the client wants of each room of a list or subscription."""

    timeline_limit: int
    required: RequiredState

    def combine(self, other: RoomConfig) -> RoomConfig:
        """The union of two configs (a room in two lists, or in a list and subscribed)."""
        merged: dict[str, set[str]] = {t: set(k) for t, k in self.required.items()}
        for state_type, keys in other.required.items():
            for key in keys:
                _add(merged, state_type, key)
        return RoomConfig(max(self.timeline_limit, other.timeline_limit), _freeze(merged))

    def wants_all(self) -> bool:
        return WILDCARD in self.required.get(WILDCARD, frozenset())

    def lazy_members(self) -> bool:
        return LAZY in self.required.get("m.room.member", frozenset())


def _add(m: dict[str, set[str]], state_type: str, key: str) -> None:
    """Add one (type, key) pair to a normalised map, keeping it normalised."""
    if WILDCARD in m.get(WILDCARD, set()):
        return
    if key in m.get(WILDCARD, set()) or WILDCARD in m.get(state_type, set()):
        return
    if state_type == WILDCARD and key == WILDCARD:
        m.clear()
        m[WILDCARD] = {WILDCARD}
        return
    if state_type == WILDCARD:
        for existing_type, existing in list(m.items()):
            existing.discard(key)
            if not existing:
                del m[existing_type]
    if key == WILDCARD:
        m[state_type] = {WILDCARD}
    else:
        m.setdefault(state_type, set()).add(key)


def _freeze(m: dict[str, set[str]]) -> RequiredState:
    return {t: frozenset(k) for t, k in m.items()}


@dataclass(frozen=True)
class ListFilters:
    """A list's filters, ANDed; an absent filter filters nothing."""

    is_dm: bool | None = None
    spaces: list[str] | None = None
    is_encrypted: bool | None = None
    is_invite: bool | None = None
    room_types: list[str | None] | None = None
    not_room_types: list[str | None] | None = None
    tags: list[str] | None = None
    not_tags: list[str] | None = None


@dataclass(frozen=True)
class ListConfig:
    room: RoomConfig
    ranges: list[tuple[int, int]] | None
    filters: ListFilters | None


@dataclass(frozen=True)
class ScopedExtension:
    """An extension applied to the rooms of some lists and subscriptions
    (account_data, receipts, typing): `["*"]`, the default, means all."""

    lists: list[str] | None = field(default_factory=lambda: [WILDCARD])
    rooms: list[str] | None = field(default_factory=lambda: [WILDCARD])


@dataclass(frozen=True)
class Extensions:
    to_device: bool = False
    to_device_since: int | None = None
    to_device_limit: int = 100
    e2ee: bool = False
    account_data: ScopedExtension | None = None
    receipts: ScopedExtension | None = None
    typing: ScopedExtension | None = None


@dataclass(frozen=True)
class SlidingRequest:
    conn_id: str
    lists: dict[str, ListConfig]
    subscriptions: dict[str, RoomConfig]
    extensions: Extensions


def parse_request(body: dict[str, Any]) -> SlidingRequest:
    conn_id = body.get("conn_id")
    if conn_id is not None and not isinstance(conn_id, str):
        raise _bad("conn_id must be a string")
    if conn_id is not None and len(conn_id) > MAX_CONN_ID:
        raise MatrixError(400, "M_INVALID_PARAM", f"conn_id is at most {MAX_CONN_ID} characters")
    lists_obj = _obj(body, "lists")
    if len(lists_obj) > MAX_LISTS:
        raise _bad(f"At most {MAX_LISTS} lists")
    lists: dict[str, ListConfig] = {}
    for key, value in lists_obj.items():
        if len(key) > MAX_LIST_KEY:
            raise _bad(f"List keys are at most {MAX_LIST_KEY} characters")
        if not isinstance(value, dict):
            raise _bad(f"lists.{key} must be an object")
        lists[key] = ListConfig(
            room=_room_config(value, f"lists.{key}"),
            ranges=_ranges(value.get("ranges"), f"lists.{key}.ranges"),
            filters=_filters(value.get("filters"), f"lists.{key}.filters"),
        )
    subscriptions: dict[str, RoomConfig] = {}
    for room_id, value in _obj(body, "room_subscriptions").items():
        if not isinstance(value, dict):
            raise _bad(f"room_subscriptions.{room_id} must be an object")
        subscriptions[room_id] = _room_config(value, f"room_subscriptions.{room_id}")
    return SlidingRequest(conn_id or "", lists, subscriptions, _extensions(_obj(body, "extensions")))


def _obj(parent: dict[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"{name} must be an object")
    return value


def _room_config(obj: dict[str, Any], where: str) -> RoomConfig:
    limit = obj.get("timeline_limit")
    if type(limit) is not int or not 0 <= limit <= MAX_TIMELINE_LIMIT:
        raise _bad(f"{where}.timeline_limit must be an integer from 0 to {MAX_TIMELINE_LIMIT}")
    pairs = obj.get("required_state")
    if not isinstance(pairs, list):
        raise _bad(f"{where}.required_state must be a list of [type, state_key] pairs")
    required: dict[str, set[str]] = {}
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise _bad(f"{where}.required_state must be a list of [type, state_key] pairs")
        _add(required, pair[0], pair[1])
    return RoomConfig(limit, _freeze(required))


def _ranges(value: Any, where: str) -> list[tuple[int, int]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _bad(f"{where} must be a list of [start, end] pairs")
    if len(value) > MAX_RANGES:
        raise MatrixError(400, "M_INVALID_PARAM", f"{where}: at most {MAX_RANGES} ranges")
    out = []
    for r in value:
        if not (isinstance(r, list) and len(r) == 2 and all(type(i) is int and i >= 0 for i in r)):
            raise _bad(f"{where} must be a list of [start, end] pairs of non-negative integers")
        if r[1] < r[0] or r[1] - r[0] >= MAX_RANGE_ROOMS:
            raise MatrixError(400, "M_INVALID_PARAM", f"{where}: each range is [start, end], start <= end")
        out.append((r[0], r[1]))
    return out


def _opt_bool(obj: dict[str, Any], name: str, where: str) -> bool | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, bool):
        raise _bad(f"{where}.{name} must be a boolean")
    return value


def _opt_strings(obj: dict[str, Any], name: str, where: str, *, nullable: bool = False) -> Any:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) or (nullable and v is None) for v in value):
        raise _bad(f"{where}.{name} must be a list of strings")
    return value


def _filters(value: Any, where: str) -> ListFilters | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object")
    return ListFilters(
        is_dm=_opt_bool(value, "is_dm", where),
        spaces=_opt_strings(value, "spaces", where),
        is_encrypted=_opt_bool(value, "is_encrypted", where),
        is_invite=_opt_bool(value, "is_invite", where),
        room_types=_opt_strings(value, "room_types", where, nullable=True),
        not_room_types=_opt_strings(value, "not_room_types", where, nullable=True),
        tags=_opt_strings(value, "tags", where),
        not_tags=_opt_strings(value, "not_tags", where),
    )


def _enabled(obj: dict[str, Any], name: str) -> dict[str, Any] | None:
    ext = obj.get(name)
    if ext is None:
        return None
    if not isinstance(ext, dict):
        raise _bad(f"extensions.{name} must be an object")
    enabled = ext.get("enabled", False)
    if enabled is not None and not isinstance(enabled, bool):
        raise _bad(f"extensions.{name}.enabled must be a boolean")
    return ext if enabled else None


def _scoped(obj: dict[str, Any], name: str) -> ScopedExtension | None:
    ext = _enabled(obj, name)
    if ext is None:
        return None
    where = f"extensions.{name}"
    lists = _opt_strings(ext, "lists", where) if "lists" in ext else [WILDCARD]
    rooms = _opt_strings(ext, "rooms", where) if "rooms" in ext else [WILDCARD]
    return ScopedExtension(lists=lists, rooms=rooms)


def _extensions(obj: dict[str, Any]) -> Extensions:
    to_device = _enabled(obj, "to_device")
    since: int | None = None
    if to_device is not None and to_device.get("since") is not None:
        raw = to_device["since"]
        if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 19:
            raise _bad("extensions.to_device.since is invalid (should look like an int)")
        since = int(raw)
    limit = to_device.get("limit", 100) if to_device is not None else 100
    if type(limit) is not int:
        raise _bad("extensions.to_device.limit must be an integer")
    return Extensions(
        to_device_limit=max(1, min(limit, MAX_TO_DEVICE)),
        to_device=to_device is not None,
        to_device_since=since,
        e2ee=_enabled(obj, "e2ee") is not None,
        account_data=_scoped(obj, "account_data"),
        receipts=_scoped(obj, "receipts"),
        typing=_scoped(obj, "typing"),
    )
