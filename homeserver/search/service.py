"""POST /search: the room_events category over the full-text index.

A search reads the index (homeserver/storage/search.py) only in rooms the user is
joined to, or left or was banned from (up to that moment) without forgetting them,
then passes every match through history visibility (a `Viewer` per room), so no
event the user may not see is returned, counted or highlighted. Rooms with
end-to-end encryption are not searched (the spec). Matches are read in batches
in the order asked; a request reads at most MAX_SCAN of them, so a user who may
see none of many matches gets an empty page and a `next_batch` to go on.

`next_batch` is opaque to clients: the order and the last key returned ((rank, nid)
or (stream position, nid)), narrowed to one room or sender for a group's token.
The order is a total one over the index, so each page starts exactly where the
last ended, and a group's pages are the same results as the whole's, in a group.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from homeserver import base64url
from homeserver.errors import MatrixError
from homeserver.filters.event_filter import RoomEventFilter
from homeserver.params import in_int64
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.records.search import SearchHit, SearchQuery
from homeserver.rooms.history import RoomHistory
from homeserver.rooms.service import RoomService
from homeserver.rooms.tokens import room_token
from homeserver.rooms.visibility import RoomAccess, Viewer, VisibilityService
from homeserver.search.index import KEY_TYPES
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.search import SearchStore

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 100
MAX_TERMS = 16  # words of a search term used; the rest are ignored
MAX_TERM_CHARS = 100  # characters of one word used
_BATCH = 500  # matches read per query: each query ranks every match, so few and large
MAX_SCAN = 1000  # matches read per request, visible or not
COUNT_SCAN = 500  # matches read (at most) to count what the user may see
_ENCRYPTION = ("m.room.encryption", "")
_WORD = re.compile(r"\w+")
MAX_SQL_LIST = 500  # rooms or senders of a filter bound in the query; longer lists filter each match


def bad(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", message)


def parse_terms(term: str) -> tuple[str, ...]:
    """The words of a search term: runs of letters, digits and underscores, lower-cased.
    Everything else (quotes, FTS operators, control characters) only separates words,
    so nothing a user types is read as query syntax."""
    words: list[str] = []
    for w in _WORD.findall(term):
        w = w.lower()[:MAX_TERM_CHARS]
        if w not in words:
            words.append(w)
        if len(words) >= MAX_TERMS:
            break
    return tuple(words)


def _in_sql(values: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """A filter's list as SQL narrows the search by, or None when it is too long to
    bind (the filter still applies to each match, RoomEventFilter.matches)."""
    if values is None or len(values) > MAX_SQL_LIST:
        return None
    # No room or user ID holds NUL, which PostgreSQL cannot even take as text.
    return tuple(v for v in values if "\x00" not in v)


@dataclass(frozen=True)
class RoomEventsCriteria:
    terms: tuple[str, ...]
    types: tuple[str, ...]
    event_filter: RoomEventFilter
    order: str = "rank"
    limit: int = DEFAULT_LIMIT
    before_limit: int = 0
    after_limit: int = 0
    context: bool = False
    include_profile: bool = False
    include_state: bool = False
    group_by: tuple[str, ...] = ()


def _int(obj: dict[str, Any], name: str, default: int, maximum: int) -> int:
    v = obj.get(name, default)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise bad(f"Field '{name}' must be a non-negative integer")
    return min(v, maximum)


def parse_room_events(obj: Any) -> RoomEventsCriteria:
    """The room_events criteria of a search request, or M_BAD_JSON naming what is wrong."""
    if not isinstance(obj, dict):
        raise bad("search_categories.room_events must be an object")
    term = obj.get("search_term")
    if term is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing required field 'search_term'")
    if not isinstance(term, str):
        raise bad("Field 'search_term' must be a string")
    terms = parse_terms(term)
    if not terms:
        raise MatrixError(400, "M_INVALID_PARAM", "The search term has no words to search for")
    keys = obj.get("keys", list(KEY_TYPES))
    if keys is None:
        keys = list(KEY_TYPES)
    if not isinstance(keys, list) or not all(isinstance(k, str) and k in KEY_TYPES for k in keys):
        raise bad(f"Field 'keys' must be a list of {', '.join(KEY_TYPES)}")
    if not keys:
        raise bad("Field 'keys' must name at least one key")
    order = obj.get("order_by", "rank")
    if order is None:
        order = "rank"
    if order not in ("rank", "recent"):
        raise bad("Field 'order_by' must be 'rank' or 'recent'")
    event_filter = RoomEventFilter.parse(obj.get("filter"))
    limit = DEFAULT_LIMIT if not event_filter.limit else min(event_filter.limit, MAX_LIMIT)
    ctx = obj.get("event_context")
    before = after = 0
    include_profile = False
    if ctx is not None:
        if not isinstance(ctx, dict):
            raise bad("Field 'event_context' must be an object")
        before = _int(ctx, "before_limit", DEFAULT_CONTEXT, MAX_CONTEXT)
        after = _int(ctx, "after_limit", DEFAULT_CONTEXT, MAX_CONTEXT)
        include_profile = ctx.get("include_profile", False)
        if not isinstance(include_profile, bool):
            raise bad("Field 'include_profile' must be a boolean")
    include_state = obj.get("include_state", False)
    if include_state is None:
        include_state = False
    if not isinstance(include_state, bool):
        raise bad("Field 'include_state' must be a boolean")
    group_by: list[str] = []
    groupings = obj.get("groupings")
    if groupings is not None:
        groups = groupings.get("group_by") if isinstance(groupings, dict) else None
        if not isinstance(groupings, dict) or not isinstance(groups, list | None):
            raise bad("Field 'groupings' must be an object with a list 'group_by'")
        for g in groups or []:
            key = g.get("key") if isinstance(g, dict) else None
            if key not in ("room_id", "sender"):
                raise bad("Groupings can be by 'room_id' or 'sender' only")
            if key not in group_by:
                group_by.append(key)
    return RoomEventsCriteria(
        terms=terms, types=tuple(sorted({KEY_TYPES[k] for k in keys})), event_filter=event_filter,
        order=order, limit=limit, before_limit=before, after_limit=after, context=ctx is not None,
        include_profile=include_profile, include_state=include_state, group_by=tuple(group_by),
    )


@dataclass(frozen=True)
class Position:
    """Where a page starts: after `after` in the order, within one room or sender's group."""

    order: str
    after: tuple[float, int] | None = None
    room_id: str | None = None
    sender: str | None = None

    def encode(self) -> str:
        data: dict[str, Any] = {"o": self.order, "k": list(self.after) if self.after else None}
        if self.room_id is not None:
            data["r"] = self.room_id
        if self.sender is not None:
            data["s"] = self.sender
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64url.encode(raw)

    @classmethod
    def decode(cls, token: str, order: str) -> Position:
        invalid = MatrixError(400, "M_INVALID_PARAM", "Invalid next_batch token")
        try:
            data = json.loads(base64url.decode(token))
            key = data["k"]
            after = None if key is None else (float(key[0]), int(key[1]))
            room_id, sender = data.get("r"), data.get("s")
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError):
            raise invalid from None
        if after is not None and not (math.isfinite(after[0]) and in_int64(int(after[0])) and in_int64(after[1])):
            raise invalid
        if data.get("o") != order or not isinstance(room_id, str | None) or not isinstance(sender, str | None):
            raise invalid
        return cls(order, after, room_id, sender)


@dataclass
class _RoomView:
    room: RoomRecord
    viewer: Viewer | None  # None: the room is not searched for this user
    access: RoomAccess | None = None


@dataclass
class _Scan:
    found: list[tuple[SearchHit, StoredEvent]] = field(default_factory=list)
    page_key: tuple[float, int] | None = None
    more: bool = False
    count: int = 0


class SearchService:
    def __init__(
        self, *, store: SearchStore, events: EventStore, rooms: RoomStore, room_service: RoomService,
        visibility: VisibilityService, history: RoomHistory,
    ) -> None:
        self.store = store
        self.events = events
        self.rooms = rooms
        self.room_service = room_service
        self.visibility = visibility
        self.history = history

    async def search(
        self, user_id: str, device_id: str | None, criteria: RoomEventsCriteria, next_batch: str | None
    ) -> dict[str, Any]:
        """The room_events part of a /search answer."""
        c = criteria
        pos = Position.decode(next_batch, c.order) if next_batch is not None else Position(c.order)
        f = c.event_filter
        room_ids = tuple(f.rooms) if f.rooms is not None else None
        if pos.room_id is not None:
            room_ids = (pos.room_id,) if room_ids is None or pos.room_id in room_ids else ()
        senders = tuple(f.senders) if f.senders is not None else None
        if pos.sender is not None:
            senders = (pos.sender,) if senders is None or pos.sender in senders else ()
        query = SearchQuery(
            user_id=user_id, terms=c.terms, order=c.order, types=c.types, after=pos.after,
            room_ids=_in_sql(room_ids), not_room_ids=_in_sql(tuple(f.not_rooms or ())) or (),
            senders=_in_sql(senders), not_senders=_in_sql(tuple(f.not_senders or ())) or (),
        )
        views: dict[int, _RoomView] = {}
        ignored = await self.history.ignored_senders(user_id)
        scan = await self._scan(user_id, query, c, views, ignored)
        out: dict[str, Any] = {"count": scan.count, "highlights": self._highlights(c.terms, scan.found)}
        if scan.more and scan.page_key is not None:
            out["next_batch"] = replace(pos, after=scan.page_key).encode()
        results: list[dict[str, Any]] = []
        oldest = await self.history.oldest_position() if c.context else 0
        # One formatting pass per room (bundled aggregations need the reader and are
        # looked up for a whole batch at once), then the results in the scan's order.
        by_room: dict[int, list[StoredEvent]] = {}
        for _, ev in scan.found:
            by_room.setdefault(ev.room_nid, []).append(ev)
        formatted: dict[str, dict[str, Any]] = {}
        for room_nid, events in by_room.items():
            client = await self.history.format_client_events(
                views[room_nid].room, events, device_id, user_id=user_id
            )
            formatted.update((ev.event_id, one) for ev, one in zip(events, client, strict=True))
        for hit, ev in scan.found:
            view = views[ev.room_nid]
            result: dict[str, Any] = {"rank": hit.rank, "result": formatted[ev.event_id]}
            if c.context:
                result["context"] = await self._context(view, ev, c, user_id, device_id, oldest, ignored)
            results.append(result)
        out["results"] = results
        if c.include_state:
            state: dict[str, list[dict[str, Any]]] = {}
            for _, ev in scan.found:
                view = views[ev.room_nid]
                if view.room.room_id in state or view.access is None:
                    continue
                ids = await self.history.readable_state_ids(view.room, view.access)
                events = list((await self.room_service.state_events(ids)).values())
                state[view.room.room_id] = await self.history.format_client_events(
                    view.room, events, with_prev_content=False
                )
            out["state"] = state
        if c.group_by:
            out["groups"] = self._groups(c.group_by, scan, pos, views)
        return out

    async def _view(self, user_id: str, room_nid: int, views: dict[int, _RoomView]) -> _RoomView | None:
        view = views.get(room_nid)
        if view is None:
            room = await self.rooms.get_room_by_nid(room_nid)
            if room is None:
                return None
            view = _RoomView(room, None)
            if await self.room_service.current_state_event(room, _ENCRYPTION) is None:
                try:
                    view.access = await self.visibility.room_access(user_id, room)
                    view.viewer = self.visibility.viewer(user_id, room)
                except MatrixError:
                    pass
            views[room_nid] = view
        return view

    async def _visible(
        self, user_id: str, ev: StoredEvent, c: RoomEventsCriteria, views: dict[int, _RoomView], ignored: set[str]
    ) -> bool:
        view = await self._view(user_id, ev.room_nid, views)
        if view is None or view.viewer is None or view.access is None:
            return False
        if ev.sender in ignored or ev.redacted_by is not None:
            return False
        if view.access.until is not None and (ev.stream_ordering or 0) > (view.access.until.stream_ordering or 0):
            return False
        if not c.event_filter.matches(ev.event, view.room.room_id):
            return False
        return await view.viewer.can_see(ev)

    async def _scan(
        self, user_id: str, query: SearchQuery, c: RoomEventsCriteria, views: dict[int, _RoomView], ignored: set[str]
    ) -> _Scan:
        scan = _Scan()
        after = query.after
        scanned = 0
        exhausted = False
        while scanned < MAX_SCAN:
            hits = await self.store.search(replace(query, after=after), _BATCH)
            found = await self.events.get_events_by_nid([h.event_nid for h in hits])
            for hit in hits:
                scanned += 1
                key = (hit.rank if c.order == "rank" else float(hit.stream_ordering), hit.event_nid)
                after = key
                ev = found.get(hit.event_nid)
                visible = ev is not None and await self._visible(user_id, ev, c, views, ignored)
                if visible:
                    scan.count += 1
                if len(scan.found) < c.limit:
                    scan.page_key = key
                    if visible:
                        assert ev is not None
                        scan.found.append((hit, ev))
                elif visible:
                    scan.more = True
            if len(hits) < _BATCH:
                exhausted = True
                break
            if len(scan.found) >= c.limit and scanned >= COUNT_SCAN:
                break
        if not exhausted:
            scan.more = True  # matches are left unread (visible or not)
        return scan

    async def _context(
        self, view: _RoomView, ev: StoredEvent, c: RoomEventsCriteria, c_user: str, device_id: str | None,
        oldest: int, ignored: set[str],
    ) -> dict[str, Any]:
        assert view.viewer is not None and view.access is not None and ev.stream_ordering is not None
        before = await self.history.paginate(
            view.room, view.viewer, view.access, from_pos=ev.stream_ordering - 1, backwards=True,
            limit=c.before_limit, to_pos=oldest, ignored=ignored,
        )
        after = await self.history.paginate(
            view.room, view.viewer, view.access, from_pos=ev.stream_ordering, backwards=False,
            limit=c.after_limit, ignored=ignored,
        )
        ctx: dict[str, Any] = {
            "events_before": await self.history.format_client_events(
                view.room, before.events, device_id, user_id=c_user
            ),
            "events_after": await self.history.format_client_events(
                view.room, after.events, device_id, user_id=c_user
            ),
            "start": room_token(before.next_pos),
            "end": room_token(after.next_pos),
        }
        if c.include_profile:
            shown = [*before.events, ev, *after.events]
            members = await self.history.member_events_for(shown, (e.sender for e in shown))
            profiles: dict[str, dict[str, Any]] = {}
            for m in members:
                content = m.event.get("content", {})
                profile = {k: content[k] for k in ("displayname", "avatar_url") if isinstance(content.get(k), str)}
                profiles[m.state_key or ""] = profile
            ctx["profile_info"] = profiles
        return ctx

    @staticmethod
    def _highlights(terms: tuple[str, ...], found: list[tuple[SearchHit, StoredEvent]]) -> list[str]:
        """The words to highlight: the search's words and the words of the results
        that begin with one (the stemmed forms the index matched, "martians" for "martian")."""
        words = set(terms)
        for _, ev in found:
            content = ev.event.get("content")
            if not isinstance(content, dict):
                continue
            for value in (content.get("body"), content.get("name"), content.get("topic")):
                if isinstance(value, str):
                    for w in _WORD.findall(value):
                        if w.lower().startswith(terms):
                            words.add(w)
        return sorted(words)

    @staticmethod
    def _groups(group_by: tuple[str, ...], scan: _Scan, pos: Position, views: dict[int, _RoomView]) -> dict[str, Any]:
        groups: dict[str, Any] = {}
        for key in group_by:
            group: dict[str, dict[str, Any]] = {}
            for _, ev in scan.found:
                value = views[ev.room_nid].room.room_id if key == "room_id" else ev.sender
                entry = group.get(value)
                if entry is None:
                    entry = group[value] = {"order": len(group) + 1, "results": []}
                    if scan.more and scan.page_key is not None:
                        narrowed = replace(
                            pos, after=scan.page_key, room_id=value if key == "room_id" else pos.room_id,
                            sender=value if key == "sender" else pos.sender,
                        )
                        entry["next_batch"] = narrowed.encode()
                entry["results"].append(ev.event_id)
            groups[key] = group
        return groups
