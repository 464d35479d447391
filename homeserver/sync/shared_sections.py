"""One incremental timeline for all the readers of a room whose views coincide.

When an event lands in a room with hundreds of long-polling members, every one of
their /sync requests asks the same thing of the room: its visible events between the
same two stream positions, filtered the same way, in the same client format. Here
the first of them builds that section and the others take it, waiting on the same
future while it is built (`SharedTimelines.timeline`).

Whose view is the same: a reader is answered from a shared section only when
nothing in it can depend on who reads it:

* the reader has been joined since before the range (a member who joined or left
  inside it sees a different part) and ignores nobody (whose events it would hide);
* the section's timeline filter (its event types, senders, rooms, `contains_url`)
  and limit are the key's; filters by relation are never shared;
* every event of the range lay under shared or world_readable history visibility
  (`Viewer.saw_only_open_history`): any user joined now then sees all of them; under
  invited or joined visibility what a member sees hangs on their membership at each
  event: the section is shared only when its builder was joined at every state
  snapshot its events were judged at (`Viewer.snapshots_seen_joined`; a member sees
  every event), and with each reader who was joined at each of those too
  (`Viewer.joined_at_all`, a lookup per snapshot, usually one); the others build their own;
* no event carries bundled aggregations (a thread's summary says whether the
  reader took part in it): such a section is built by each reader.

Rooms with fewer than three local members (direct chats) are not shared: at most one
other reader could take a section there, and building one costs more than a reader's own.

What differs per reader is put back: the transaction ID of an event sent by the
reading device. The events' `unsigned.age` is as of the section's building, which is
at most `_LIFETIME_S` old. The rest of the room's entry (state, unread counts,
receipts, account data, summary) stays per reader.

The readers who see the section as it is (all but the sending device's) also share
its encoding: the room's `timeline` object is encoded to JSON bytes once
(`Section.encoded`) and embedded into each of their responses as is.

The section's builder also reads, for everyone, the room's notifications in the
range (`UnreadCounter.warm`): the readers waiting on the section then run, each in
one go, to their response, instead of all stopping again at the next shared read.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.records.encoded_json import EncodedJSON
from homeserver.records.events import StoredEvent

if TYPE_CHECKING:
    from homeserver.filters.event_filter import RoomEventFilter
    from homeserver.records.rooms import RoomRecord, UserMembership
    from homeserver.sync.streams.base import SyncRequest
    from homeserver.sync.streams.room_events import RoomEventsStream

_MAX_SECTIONS = 512
_LIFETIME_S = 1.0  # a section is rebuilt after this long (the events' age is as of building)


@dataclass
class Section:
    """A room's timeline in one range as its readers share it."""

    events: list[StoredEvent]
    limited: bool
    formatted: list[dict[str, Any]]  # client JSON of the events, without any transaction ID
    # Under history visible to members only: the state snapshots its events were
    # judged at, every reader must have been joined at (None: open history, anyone may).
    members_at: list[int] | None = None
    _encoded: EncodedJSON | None = field(default=None, repr=False)
    # The devices (user ID, device ID) that sent some of the events with a transaction
    # ID (each sees those events with it): every other reader takes the section as it
    # is, without a look at its events.
    txn_devices: frozenset[tuple[str, str]] = field(init=False)
    # Whether a membership event is among the events (the room's summary may have moved).
    has_membership: bool = field(init=False)

    def __post_init__(self) -> None:
        self.txn_devices = frozenset(
            (e.sender, e.txn_device) for e in self.events if e.txn_device is not None and e.txn_id is not None
        )
        self.has_membership = any(e.type == "m.room.member" for e in self.events)

    @property
    def encoded_timeline(self) -> EncodedJSON | None:
        """The encoding `encoded` made (None before): the readers after the first take
        it without building the timeline object again."""
        return self._encoded

    def encoded(self, timeline: dict[str, Any]) -> EncodedJSON:
        """The room's `timeline` object built from this section (the same for every
        reader who sees the section as is), encoded once."""
        if self._encoded is None:
            self._encoded = EncodedJSON.of(timeline)
        return self._encoded


@dataclass
class ReaderTimeline:
    """A section as one reader sees it: `formatted` carries the reading device's
    transaction IDs; `shared` is the section when that is all of it (its encoding
    then serves this reader too)."""

    events: list[StoredEvent]
    limited: bool
    formatted: list[dict[str, Any]]
    shared: Section | None


# Filter object's id -> (the filter, its key): a parsed filter is one object for all the
# requests that use it (homeserver/filters/service.py keeps them), so each woken reader
# looks its key up instead of building it. The entry holds the filter, so its id is
# not reused while it is here.
_FILTER_KEYS: dict[int, tuple[RoomEventFilter, tuple[Any, ...] | None]] = {}
_FILTER_KEYS_MAX = 1024


def _filter_key(tf: RoomEventFilter) -> tuple[Any, ...] | None:
    """What of a timeline filter decides which events a timeline holds; None for a
    filter by relations (answered from the relations index, never shared)."""
    found = _FILTER_KEYS.get(id(tf))
    if found is not None and found[0] is tf:
        return found[1]
    key = None if tf.by_relations else tuple(
        tuple(v) if isinstance(v, list) else v
        for v in (tf.types, tf.not_types, tf.senders, tf.not_senders, tf.rooms, tf.not_rooms, tf.contains_url)
    )
    if len(_FILTER_KEYS) >= _FILTER_KEYS_MAX:
        _FILTER_KEYS.clear()
    _FILTER_KEYS[id(tf)] = (tf, key)
    return key


class SharedTimelines:
    def __init__(self, max_sections: int = _MAX_SECTIONS, lifetime_s: float = _LIFETIME_S) -> None:
        self.max_sections = max_sections
        self.lifetime_s = lifetime_s
        # key -> (built at, the section; None when it is personal and each reader builds theirs)
        self._sections: OrderedDict[tuple[Any, ...], tuple[float, asyncio.Future[Section | None]]] = OrderedDict()
        self.hits = 0  # readers answered from a section another built
        self.misses = 0  # sections built
        self.personal = 0  # readers who built their own (their view is not the others')

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "personal": self.personal, "entries": len(self._sections)}

    async def timeline(
        self, stream: RoomEventsStream, req: SyncRequest, room: RoomRecord, after: int, limit: int,
        m: UserMembership,
    ) -> ReaderTimeline | None:
        """The room's incremental timeline in (after, req.now.events] for this reader,
        shared with the readers whose view is the same; None when the reader's view is
        its own (the caller builds it)."""
        filter_key = _filter_key(req.filter.timeline)
        if filter_key is None or m.membership != "join" or m.stream_ordering > after or await stream.ignored(req):
            self.personal += 1
            return None
        key = (room.room_nid, after, req.now.events, limit, filter_key)
        loop = asyncio.get_running_loop()
        now = loop.time()
        found = self._sections.get(key)
        if found is not None and now - found[0] <= self.lifetime_s:
            self.hits += 1
            self._sections.move_to_end(key)
            built = found[1]
            # Built already (the usual case once its builder ran): taken as is, without
            # a shield and its own future for each of the room's readers.
            section = built.result() if built.done() else await asyncio.shield(built)
        else:
            self.misses += 1
            future: asyncio.Future[Section | None] = loop.create_future()
            self._sections[key] = (now, future)
            self._sections.move_to_end(key)
            while len(self._sections) > self.max_sections:
                self._sections.popitem(last=False)
            try:
                section = await self._build(stream, req, room, after, limit, m)
            except BaseException:
                future.set_result(None)  # the readers waiting build their own
                self._sections.pop(key, None)
                raise
            future.set_result(section)
        if section is not None and section.members_at and not await stream.visibility.viewer(
            req.user_id, room, membership=(m.membership, m.event_nid)
        ).joined_at_all(section.members_at):
            section = None  # this reader was not a member at some of the events
        if section is None:
            self.personal += 1
            return None
        return _for_device(section, req.user_id, req.requester.device_id)

    async def _build(
        self, stream: RoomEventsStream, req: SyncRequest, room: RoomRecord, after: int, limit: int,
        m: UserMembership,
    ) -> Section | None:
        viewer = stream.visibility.viewer(req.user_id, room, membership=(m.membership, m.event_nid))
        events, limited = await stream.timeline(req, room, after, req.now.events, limit, m, viewer=viewer)
        # The readers waiting on this section next count their unread notifications of
        # the same range: read the room's tally for them now, so that, woken once, each
        # runs to its response without another wait (and, with nothing to wait on, the
        # readers answer one after another instead of all advancing step by step).
        await stream.unread.warm(room.room_nid, after, req.now.events)
        members_at = None
        if not viewer.saw_only_open_history():
            members_at = viewer.snapshots_seen_joined()
            if members_at is None:  # not joined at some event: what the builder saw is its own
                return None
        formatted = await stream.format_events(req, room, events, bundle=True, for_device=False)
        if any("m.relations" in e.get("unsigned", {}) for e in formatted):
            return None
        return Section(events, limited, formatted, members_at)


def _for_device(section: Section, user_id: str, device_id: str | None) -> ReaderTimeline:
    """The section as the reading device sees it: its own events carry the transaction
    ID it sent them with (a copy of those events' JSON; the rest is shared)."""
    events = section.events
    if device_id is None or (user_id, device_id) not in section.txn_devices:
        return ReaderTimeline(events, section.limited, section.formatted, section)
    out = list(section.formatted)
    for i, e in enumerate(events):
        txn_id = e.transaction_id_for(user_id, device_id)
        if txn_id is not None:
            out[i] = {**out[i], "unsigned": {**out[i]["unsigned"], "transaction_id": txn_id}}
    return ReaderTimeline(events, section.limited, out, None)
