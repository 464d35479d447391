"""Event filters (the spec's RoomEventFilter): which events match, shared by /messages,
/context and the sections of a /sync filter."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from federation.events.json_bounds import JSONBoundsError, loads_bounded
from homeserver.errors import MatrixError


def filter_json_error(e: JSONBoundsError) -> MatrixError:
    """The spec's error for a `filter` query parameter that is not JSON, or nests too deep."""
    if e.not_json:
        return MatrixError(400, "M_NOT_JSON", "Query parameter 'filter' is not valid JSON")
    return MatrixError(400, "M_BAD_JSON", f"Query parameter 'filter': {e}")


def _str_list(obj: dict[str, Any], key: str) -> list[str] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MatrixError(400, "M_BAD_JSON", f"Filter field '{key}' must be a list of strings")
    return value


def _type_matches(event_type: str, patterns: list[str]) -> bool:
    # Types allow a '*' wildcard; fnmatch also knows '?' and '[', which the spec does not.
    return any(
        fnmatch.fnmatchcase(event_type, p.replace("[", "[[]").replace("?", "[?]")) for p in patterns
    )


@dataclass(frozen=True)
class RoomEventFilter:
    limit: int | None = None
    types: list[str] | None = None
    not_types: list[str] | None = None
    senders: list[str] | None = None
    not_senders: list[str] | None = None
    rooms: list[str] | None = None
    not_rooms: list[str] | None = None
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False  # /sync only: counts split per thread
    # Synapse's MSC3440 fields: only events with a relation from one of these senders and
    # one of these types, each when given (checked against the relations index, not by
    # `matches`: homeserver/relations/service.py, related_by).
    related_by_senders: list[str] | None = None
    related_by_rel_types: list[str] | None = None

    @classmethod
    def parse(cls, obj: Any) -> RoomEventFilter:
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise MatrixError(400, "M_BAD_JSON", "A room event filter must be an object")
        limit = obj.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise MatrixError(400, "M_BAD_JSON", "Filter field 'limit' must be a non-negative integer")
        contains_url = obj.get("contains_url")
        if contains_url is not None and not isinstance(contains_url, bool):
            raise MatrixError(400, "M_BAD_JSON", "Filter field 'contains_url' must be a boolean")
        flags = {}
        for key in ("lazy_load_members", "include_redundant_members", "unread_thread_notifications"):
            v = obj.get(key, False)
            if not isinstance(v, bool):
                raise MatrixError(400, "M_BAD_JSON", f"Filter field '{key}' must be a boolean")
            flags[key] = v
        return cls(
            limit=limit,
            types=_str_list(obj, "types"),
            not_types=_str_list(obj, "not_types"),
            senders=_str_list(obj, "senders"),
            not_senders=_str_list(obj, "not_senders"),
            rooms=_str_list(obj, "rooms"),
            not_rooms=_str_list(obj, "not_rooms"),
            contains_url=contains_url,
            related_by_senders=_str_list(obj, "related_by_senders"),
            related_by_rel_types=_str_list(obj, "related_by_rel_types"),
            **flags,
        )

    @classmethod
    def from_query(cls, text: str | None) -> RoomEventFilter:
        if text is None:
            return cls()
        try:
            obj = loads_bounded(text)
        except JSONBoundsError as e:
            raise filter_json_error(e) from None
        return cls.parse(obj)

    @property
    def by_relations(self) -> bool:
        """Whether the filter asks about events' relations (related_by_*)."""
        return self.related_by_senders is not None or self.related_by_rel_types is not None

    @cached_property
    def matches_everything(self) -> bool:
        """Whether no field of the filter excludes any event (the usual /sync filter):
        `matches` then answers without looking, which an initial sync asks of every
        event of every room."""
        return (
            not self.not_types and self.types is None and not self.not_senders and self.senders is None
            and not self.not_rooms and self.rooms is None and self.contains_url is None
        )

    def matches(self, event: dict[str, Any], room_id: str | None = None) -> bool:
        if self.matches_everything:
            return True
        event_type = event.get("type", "")
        sender = event.get("sender", "")
        if self.not_types and _type_matches(event_type, self.not_types):
            return False
        if self.types is not None and not _type_matches(event_type, self.types):
            return False
        if self.not_senders and sender in self.not_senders:
            return False
        if self.senders is not None and sender not in self.senders:
            return False
        if room_id is not None:
            if self.not_rooms and room_id in self.not_rooms:
                return False
            if self.rooms is not None and room_id not in self.rooms:
                return False
        if self.contains_url is not None:
            has_url = isinstance(event.get("content", {}).get("url"), str)
            if has_url != self.contains_url:
                return False
        return True
