"""Power levels and room creators, shared by the auth rules, state resolution and redaction.

All functions take a *state map* (``(type, state_key) -> event dict``) rather
than a power levels event, because the answer also depends on the create
event: who the creator is when there is no power levels event, and in v12
who has infinite power.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .room_versions import RoomVersion, get_room_version

__all__ = [
    "CREATOR_POWER_LEVEL",
    "NAMED_LEVEL_DEFAULTS",
    "Event",
    "StateKey",
    "StateMap",
    "get_named_level",
    "get_required_power_level",
    "get_user_power_level",
    "parse_power_level",
    "room_creators",
]

Event = Mapping[str, Any]
StateKey = tuple[str, str]
StateMap = Mapping[StateKey, Event]

CREATE_KEY: StateKey = ("m.room.create", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")

#: v12 creators outrank every integer level. ``math.inf`` compares correctly
#: against ints, and ``inf < inf`` is false, which is exactly why one
#: creator can never kick or ban another.
CREATOR_POWER_LEVEL: float = math.inf

#: Defaults for the top-level levels when the key (or the whole event) is absent.
NAMED_LEVEL_DEFAULTS: Mapping[str, int] = {
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
}


_INTEGER_STRING = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)


def parse_power_level(value: Any) -> int | None:
    """A power level value as an integer, or None if it is not one.

    From v10 only JSON integers are levels (the auth rules reject anything
    else). Before v10 the spec also accepts a string holding a base 10
    integer (signs, leading zeros and surrounding whitespace allowed) and a
    float, truncated. Accepted v10+ events hold only integers, so reading
    every version this way changes nothing there.
    """
    if type(value) is int:
        return value
    if isinstance(value, str) and _INTEGER_STRING.fullmatch(value):
        return int(value)
    if type(value) is float and math.isfinite(value):
        return int(value)
    return None


def _as_int(value: Any, default: int) -> int:
    # Events seen during state resolution may not have passed auth, so a
    # value that is not a level falls back to the default rather than raising.
    parsed = parse_power_level(value)
    return default if parsed is None else parsed


def _content(event: Event | None) -> Mapping[str, Any]:
    if event is None:
        return {}
    content = event.get("content")
    return content if isinstance(content, Mapping) else {}


def room_creators(create_event: Event | None, room_version: str | RoomVersion) -> frozenset[str]:
    """The user IDs that count as the room's creator(s).

    v10: ``content.creator``. v11: the create event's ``sender``. v12: the
    sender plus any ``additional_creators``.
    """
    rv = get_room_version(room_version)
    if create_event is None:
        return frozenset()
    if rv.create_requires_creator_field:
        creator = _content(create_event).get("creator")
        return frozenset([creator]) if isinstance(creator, str) else frozenset()
    creators = {create_event.get("sender")}
    if rv.creators_have_infinite_power:
        extra = _content(create_event).get("additional_creators")
        if isinstance(extra, list):
            creators.update(u for u in extra if isinstance(u, str))
    return frozenset(c for c in creators if isinstance(c, str))


def get_user_power_level(
    user_id: str, state: StateMap, room_version: str | RoomVersion
) -> int | float:
    """A user's power level given the room state (or an event's auth events).

    Returns :data:`CREATOR_POWER_LEVEL` for v12 creators. Without a power
    levels event the creator has 100 and everyone else 0.
    """
    rv = get_room_version(room_version)
    create_event = state.get(CREATE_KEY)
    if rv.creators_have_infinite_power and user_id in room_creators(create_event, rv):
        return CREATOR_POWER_LEVEL
    power_levels = state.get(POWER_LEVELS_KEY)
    if power_levels is None:
        return 100 if user_id in room_creators(create_event, rv) else 0
    content = _content(power_levels)
    users_default = _as_int(content.get("users_default"), 0)
    users = content.get("users")
    if isinstance(users, Mapping) and user_id in users:
        return _as_int(users[user_id], users_default)
    return users_default


def get_named_level(state: StateMap, name: str) -> int:
    """``ban``/``kick``/``redact``/``invite``/``*_default`` with the spec's defaults."""
    default = NAMED_LEVEL_DEFAULTS[name]
    return _as_int(_content(state.get(POWER_LEVELS_KEY)).get(name), default)


def get_required_power_level(state: StateMap, event_type: str, state_key: str | None) -> int:
    """The level needed to send ``event_type`` (the spec's "required power level").

    ``state_key`` is ``None`` for message events; any string, even empty,
    makes it a state event and selects ``state_default``.
    """
    content = _content(state.get(POWER_LEVELS_KEY))
    default = (
        get_named_level(state, "state_default")
        if state_key is not None
        else get_named_level(state, "events_default")
    )
    events = content.get("events")
    if isinstance(events, Mapping) and event_type in events:
        return _as_int(events[event_type], default)
    return default
