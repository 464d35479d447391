"""Event relationships (the spec's "Event relationships", threading, event
replacements and references).

`RelationsIndex` is an `EventIndex` of the event writer (homeserver/rooms/persist.py):
every timeline event whose content has `m.relates_to` with a `rel_type` is recorded in
the writing transaction, and removed when it is redacted, so a redacted edit, reply
or reference stops counting at once.

`RelationsService` reads it: the child events of an event (/relations, with
recursion), a room's threads (/threads), and the aggregations bundled under
`unsigned.m.relations` of events served to clients, computed per page with a
fixed number of queries whatever the page's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import MatrixError
from homeserver.records.events import StoredEvent
from homeserver.records.relations import Aggregation, Relation
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.client_format import client_event
from homeserver.storage.relations import RelationStore

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.rooms.visibility import RoomAccess, Viewer, VisibilityService
    from homeserver.storage.database import Txn
    from homeserver.storage.events import EventStore

THREAD = "m.thread"
REPLACE = "m.replace"
REFERENCE = "m.reference"
ANNOTATION = "m.annotation"
# /relations with recurse: how many levels of relations below the event are followed
# (the spec asks for at least 3), and how many events those levels may hold.
RECURSION_DEPTH = 3
MAX_RECURSION_EVENTS = 1000
# Relation rows one page may read, visible or not (a reader who may see little of a
# long thread gets a short page and a token to go on, not a request reading it all).
MAX_SCAN = 1000
# Newest thread replies looked at for one the reader may see (latest_event).
_LATEST_CANDIDATES = 20
# Targets of relations written since start-up that RelatedTargets keeps in memory.
_RELATED_TARGETS_LIMIT = 200_000


def relation_of(stored: StoredEvent) -> Relation | None:
    """The relation an event declares, if it is one the index keeps."""
    content = stored.event.get("content")
    if not isinstance(content, dict) or stored.stream_ordering is None or stored.redacted_by is not None:
        return None
    rel = content.get("m.relates_to")
    if not isinstance(rel, dict):
        return None
    rel_type, parent = rel.get("rel_type"), rel.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent, str) or not rel_type or not parent:
        return None
    if parent == stored.event_id or "\x00" in parent or "\x00" in rel_type or "\x00" in stored.type:
        return None  # NUL cannot be text in PostgreSQL, and is in no valid event ID
    return Relation(
        stored.event_id, stored.room_nid, parent, rel_type, stored.type, stored.sender, stored.stream_ordering
    )


def _declared_rel_type(ev: StoredEvent) -> str | None:
    rel = ev.event.get("content", {}).get("m.relates_to")
    return rel.get("rel_type") if isinstance(rel, dict) and isinstance(rel.get("rel_type"), str) else None


def valid_edit(original: StoredEvent, edit: StoredEvent) -> bool:
    """The spec's validity rules for an m.replace: same room, sender and type; neither
    a state event; the original not itself an edit; the edit carries m.new_content."""
    if original.redacted_by is not None or edit.redacted_by is not None or edit.rejected is not None:
        return False
    if edit.room_nid != original.room_nid or edit.sender != original.sender or edit.type != original.type:
        return False
    if original.state_key is not None or edit.state_key is not None:
        return False
    if _declared_rel_type(original) == REPLACE:
        return False
    return isinstance(edit.event.get("content", {}).get("m.new_content"), dict)


class RelatedTargets:
    """Which events written since start-up may have relations, known without a query.

    Bundling aggregations asks the database of every timeline page, though most
    events, new ones above all, have no relation at all. Every relation is written
    by the index below, which adds its target here (in the write, so before any
    reader can see the row); relations already stored whose target was not yet an
    event are loaded at start-up. So an event written after start-up (nid above the
    start-up maximum) that is not here has no relations. Only grows, up to a bound
    past which it gives up (every page asks the database again, as before).
    """

    def __init__(self, limit: int = _RELATED_TARGETS_LIMIT) -> None:
        self.limit = limit
        self._targets: set[str] = set()
        self._fresh_above: int | None = None  # None: not started, or past the bound
        self.hits = 0  # pages answered "no relations" without a query
        self.misses = 0

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._targets)}

    def start(self, max_nid: int, orphan_targets: set[str]) -> None:
        self._targets |= orphan_targets
        self._fresh_above = max_nid

    def add(self, target: str) -> None:
        self._targets.add(target)  # in the writer's transaction, maybe on its thread
        if len(self._targets) > self.limit:
            self._fresh_above = None
            self._targets = set()  # a reader still holding the old set finds its entries

    def may_be_related(self, events: list[StoredEvent]) -> list[StoredEvent]:
        """Those of `events` this cannot vouch have no relation (no tally: a sorting
        ahead of reads, not a page answered)."""
        fresh, targets = self._fresh_above, self._targets
        if fresh is None:
            return list(events)
        return [ev for ev in events if ev.nid <= fresh or ev.event_id in targets]

    def none_related(self, events: list[StoredEvent]) -> bool:
        """True only if none of these events can have a relation."""
        fresh, targets = self._fresh_above, self._targets
        if fresh is not None and all(ev.nid > fresh and ev.event_id not in targets for ev in events):
            self.hits += 1
            return True
        self.misses += 1
        return False


class RelationsIndex:
    """The relations index kept by the event writer (an EventIndex)."""

    def __init__(self, targets: RelatedTargets) -> None:
        self.targets = targets

    async def event_written(self, txn: Txn, room: RoomRecord, stored: StoredEvent) -> None:
        rel = relation_of(stored)
        if rel is not None:
            self.targets.add(rel.relates_to_id)
            await RelationStore.add(txn, rel)

    async def event_redacted(self, txn: Txn, room: RoomRecord, redacted_event_id: str) -> None:
        await RelationStore.remove(txn, redacted_event_id)


@dataclass
class RelationsPage:
    events: list[StoredEvent]
    next_pos: int | None  # where the next page starts; None: nothing further
    depth: int


@dataclass
class ThreadsPage:
    roots: list[StoredEvent]
    next_pos: int | None


class RelationsService:
    def __init__(
        self, *, store: RelationStore, events: EventStore, visibility: VisibilityService, clock: Clock
    ) -> None:
        self.store = store
        self.events = events
        self.visibility = visibility
        self.clock = clock
        self.targets = RelatedTargets()
        self.index = RelationsIndex(self.targets)

    async def start(self) -> None:
        """Learn what `RelatedTargets` starts from (before any event is written)."""
        self.targets.start(*await self.store.unrelated_since())

    # --- sending ---

    async def check_send(
        self, room: RoomRecord, sender: str, device_id: str | None, txn_id: str, event_type: str,
        content: dict[str, Any],
    ) -> None:
        """The spec's checks of a client's new relation: no thread started off an event
        that itself relates to another (400 M_UNKNOWN), and no second annotation with
        the same type and key of one event by one user unless the first was redacted
        (400 M_DUPLICATE_ANNOTATION). A retransmission of the first passes."""
        rel = content.get("m.relates_to")
        if not isinstance(rel, dict) or not isinstance(rel.get("event_id"), str):
            return
        if "\x00" in rel["event_id"] or "\x00" in event_type:
            return  # no event has such an ID or type (and PostgreSQL text cannot hold NUL)
        parent_id: str = rel["event_id"]
        if rel.get("rel_type") == THREAD:
            parent = await self.events.get_event(parent_id)
            if parent is not None and parent.room_nid == room.room_nid and _declared_rel_type(parent) is not None:
                raise MatrixError(400, "M_UNKNOWN", "Cannot start a thread from an event with a relation")
        elif rel.get("rel_type") == ANNOTATION and isinstance(rel.get("key"), str):
            rows = await self.store.sent_by(room.room_nid, parent_id, ANNOTATION, event_type, sender)
            found = await self.events.get_events(r.event_id for r in rows)
            for ev in found.values():
                same = ev.event.get("content", {}).get("m.relates_to", {}).get("key") == rel["key"]
                retry = ev.txn_id == txn_id and ev.txn_device == device_id
                if same and not retry and ev.redacted_by is None:
                    raise MatrixError(400, "M_DUPLICATE_ANNOTATION", "You already sent this annotation")

    # --- /relations ---

    async def children(
        self,
        room: RoomRecord,
        viewer: Viewer,
        access: RoomAccess,
        parent: StoredEvent,
        *,
        rel_type: str | None,
        event_type: str | None,
        from_pos: int | None,
        to_pos: int | None,
        backwards: bool,
        limit: int,
        recurse: bool,
        current: int,
    ) -> RelationsPage:
        """The events relating to `parent` that the viewer may see, newest first
        going back (the default), oldest first going forward."""
        parents = {parent.event_id}
        depth = 1
        if recurse:
            frontier = {parent.event_id}
            for depth in range(1, RECURSION_DEPTH + 1):
                if depth == RECURSION_DEPTH or not frontier or len(parents) >= MAX_RECURSION_EVENTS:
                    break
                rows = await self.store.children(
                    room.room_nid, frontier, rel_type=None, event_type=None, from_pos=None, to_pos=None,
                    backwards=False, limit=MAX_RECURSION_EVENTS,
                )
                frontier = {r.event_id for r in rows} - parents
                parents |= frontier
            depth = RECURSION_DEPTH
        bound = access.stream_bound(current)
        if backwards:
            pos = bound if from_pos is None else min(from_pos, bound)
            stop = to_pos
        else:
            pos = from_pos if from_pos is not None else -(2**62)
            stop = bound if to_pos is None else min(to_pos, bound)
        chunk: list[StoredEvent] = []
        scanned = 0
        while len(chunk) < limit:
            if stop is not None and ((backwards and pos <= stop) or (not backwards and pos >= stop)):
                return RelationsPage(chunk, None, depth)
            if scanned >= MAX_SCAN:
                return RelationsPage(chunk, pos, depth)
            want = min(100, limit - len(chunk) + 10)
            rows = await self.store.children(
                room.room_nid, parents, rel_type=rel_type, event_type=event_type, from_pos=pos, to_pos=stop,
                backwards=backwards, limit=want,
            )
            scanned += len(rows)
            found = await self.events.get_events(r.event_id for r in rows)
            visible = {ev.event_id for ev in await viewer.filter([found[r.event_id] for r in rows if r.event_id in found])}
            consumed = 0
            for r in rows:
                consumed += 1
                pos = r.stream_ordering - 1 if backwards else r.stream_ordering
                if r.event_id in visible:
                    chunk.append(found[r.event_id])
                    if len(chunk) >= limit:
                        break
            if len(rows) < want and consumed == len(rows):
                return RelationsPage(chunk, None, depth)
        return RelationsPage(chunk, pos, depth)

    # --- /threads ---

    async def threads(
        self, room: RoomRecord, viewer: Viewer, user_id: str, *, participated: bool, before: int | None, limit: int
    ) -> ThreadsPage:
        """The room's thread roots the viewer may see, by latest activity, newest first."""
        roots: list[StoredEvent] = []
        scanned = 0
        while len(roots) < limit and scanned < MAX_SCAN:
            want = min(100, limit - len(roots) + 10)
            found = await self.store.threads(
                room.room_nid, participant=user_id if participated else None, before=before, limit=want
            )
            scanned += len(found)
            events = await self.events.get_events(t.root_id for t in found)
            candidates = [events[t.root_id] for t in found if t.root_id in events]
            visible = {ev.event_id for ev in await viewer.filter(
                [ev for ev in candidates if ev.room_nid == room.room_nid and ev.stream_ordering is not None]
            )}
            consumed = 0
            for t in found:
                consumed += 1
                before = t.latest_ordering
                if t.root_id in visible:
                    roots.append(events[t.root_id])
                    if len(roots) >= limit:
                        break
            if len(found) < want and consumed == len(found):
                return ThreadsPage(roots, None)
        return ThreadsPage(roots, before)

    # --- filters ---

    async def related_by(
        self, room: RoomRecord, events: list[StoredEvent], senders: list[str] | None, rel_types: list[str] | None
    ) -> list[StoredEvent]:
        """The events with a relation from one of `senders` and one of type `rel_types`
        (each condition only if given): Synapse's related_by_* filter fields (MSC3440)."""
        kinds = await self.store.kinds(room.room_nid, {ev.event_id for ev in events})
        out = []
        for ev in events:
            found = kinds.get(ev.event_id, set())
            if senders is not None and not any(sender in senders for _, sender in found):
                continue
            if rel_types is not None and not any(rel_type in rel_types for rel_type, _ in found):
                continue
            out.append(ev)
        return out

    # --- bundled aggregations ---

    async def related_among(self, events: list[StoredEvent]) -> set[str]:
        """The IDs of those `events` that some relation targets, for many rooms' pages at
        once (an initial sync's batch), so that pages whose events none targets skip
        `bundle`'s per-page queries: events written since start-up are known without
        a read, older ones in one indexed statement per chunk."""
        unknown = self.targets.may_be_related(events)
        return await self.store.targets_among([ev.event_id for ev in unknown]) if unknown else set()

    async def aggregations(
        self, room: RoomRecord, user_id: str, events: list[StoredEvent], *, threads: bool = True
    ) -> dict[str, Aggregation]:
        """What to bundle with each of a page's events, in a fixed number of queries
        (`threads` False: edits and references only)."""
        ids = {ev.event_id for ev in events}
        if not ids or self.targets.none_related(events):
            return {}
        by_id = {ev.event_id: ev for ev in events}
        out: dict[str, Aggregation] = {}

        def agg(event_id: str) -> Aggregation:
            return out.setdefault(event_id, Aggregation())

        summaries = await self.store.thread_summaries(room.room_nid, ids, user_id) if threads else {}
        if summaries:
            latest = await self.events.get_events(s[1] for s in summaries.values())
            viewer = self.visibility.viewer(user_id, room)
            for root_id, (count, latest_id, participated) in summaries.items():
                reply = latest.get(latest_id)
                if reply is None or not await viewer.can_see(reply):
                    reply = await self._latest_visible(room, viewer, root_id)
                if reply is None:
                    continue
                a = agg(root_id)
                a.thread_latest = reply
                a.thread_count = count
                a.thread_participated = participated or by_id[root_id].sender == user_id
        rows = await self.store.of_types(room.room_nid, ids, (REPLACE, REFERENCE))
        edit_rows = [
            r for r in rows if r.rel_type == REPLACE
            and r.sender == by_id[r.relates_to_id].sender and r.event_type == by_id[r.relates_to_id].type
        ]
        edits = await self.events.get_events(r.event_id for r in edit_rows) if edit_rows else {}
        for r in rows:
            if r.rel_type == REFERENCE:
                agg(r.relates_to_id).references.append(r.event_id)
                continue
            edit = edits.get(r.event_id)
            original = by_id[r.relates_to_id]
            if edit is None or not valid_edit(original, edit):
                continue
            a = agg(r.relates_to_id)
            if a.edit is None or _edit_order(edit) > _edit_order(a.edit):
                a.edit = edit
        return {k: v for k, v in out.items() if not v.empty}

    async def _latest_visible(self, room: RoomRecord, viewer: Viewer, root_id: str) -> StoredEvent | None:
        rows = await self.store.latest_thread_replies(room.room_nid, root_id, _LATEST_CANDIDATES)
        found = await self.events.get_events(r.event_id for r in rows)
        for r in rows:
            ev = found.get(r.event_id)
            if ev is not None and await viewer.can_see(ev):
                return ev
        return None

    async def bundle(
        self,
        room: RoomRecord,
        user_id: str,
        events: list[StoredEvent],
        formatted: list[dict[str, Any]],
        device_id: str | None = None,
    ) -> None:
        """Add unsigned.m.relations to the client JSON of `events` (same order)."""
        aggs = await self.aggregations(room, user_id, events)
        if not aggs:
            return
        # A thread's newest reply is shown as it reads now: its own edit bundled with it.
        latest = [a.thread_latest for a in aggs.values() if a.thread_latest is not None]
        inner = await self.aggregations(room, user_id, latest, threads=False) if latest else {}
        now = self.clock.time_ms()
        for ev, out in zip(events, formatted, strict=True):
            a = aggs.get(ev.event_id)
            if a is not None:
                out.setdefault("unsigned", {})["m.relations"] = self._relations(room, a, inner, now, (user_id, device_id))

    def _relations(
        self, room: RoomRecord, a: Aggregation, inner: dict[str, Aggregation], now: int,
        reader: tuple[str, str | None]
    ) -> dict[str, Any]:
        rel: dict[str, Any] = {}
        if a.thread_latest is not None:
            latest = self._client(room, a.thread_latest, now, reader)
            own = inner.get(a.thread_latest.event_id)
            if own is not None:
                latest["unsigned"]["m.relations"] = self._relations(room, own, {}, now, reader)
            rel[THREAD] = {
                "latest_event": latest,
                "count": a.thread_count,
                "current_user_participated": a.thread_participated,
            }
        if a.edit is not None:
            rel[REPLACE] = self._client(room, a.edit, now, reader)
        if a.references:
            rel[REFERENCE] = {"chunk": [{"event_id": e} for e in a.references]}
        return rel

    @staticmethod
    def _client(room: RoomRecord, ev: StoredEvent, now: int, reader: tuple[str, str | None]) -> dict[str, Any]:
        """`reader`: the reading user and device (which alone sees its own transaction IDs)."""
        return client_event(ev, room.room_id, room.room_version, now, device_id=reader[1], user_id=reader[0])


def _edit_order(ev: StoredEvent) -> tuple[int, str]:
    # The spec: the edit with the highest origin_server_ts, ties to the greatest event ID.
    ts = ev.event.get("origin_server_ts")
    return (ts if isinstance(ts, int) else 0, ev.event_id)

