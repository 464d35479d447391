"""What the search index returns: matching events in the order asked."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchHit:
    """One indexed event matching a query, with where it sits in the result order."""

    event_nid: int
    rank: float  # higher is more relevant
    stream_ordering: int


@dataclass(frozen=True)
class SearchQuery:
    """A search over the rooms a user is or was joined to, in one order, from a key on.

    `terms` are plain words (never query syntax), all of which must match.
    `after` is the last key already returned, (rank, nid) or (stream ordering, nid).
    """

    user_id: str
    terms: tuple[str, ...]
    order: str  # "rank" or "recent"
    types: tuple[str, ...]
    after: tuple[float, int] | None = None
    room_ids: tuple[str, ...] | None = None
    not_room_ids: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
