"""A joined room's initial-sync section, built once and reused by every joined reader.

An initial sync (and a user's first sync on each new device) asks the same of each of
the user's rooms as any other member's initial sync asks of it: the newest page of the
timeline, the state at its start, and the member summary. Computing that is most of an
initial sync's work (visibility of each event, the state snapshots, the member list,
each event's client JSON); here it is done once per room and state of the room, and
kept as the encoded client JSON of each event, for the next initial sync of any of its
members until the room changes.

When a section is valid: its key is what the room is now: its newest stream position
(`RoomService.last_position`), its state snapshot at the head, and the room's
generation in `RecentEvents`, which moves with every event the writer places in the
room (backfilled history at positions at or below zero too, which a small room's
initial timeline can show) and when the room is purged. Any event that could change a
section (a message, a membership or any state change, a redaction or an edit, which
are events of the room themselves, a state reset by an event received over federation)
moves the key; a reader compares keys and rebuilds on a mismatch. A section is stored
only if the key is the same after it was built as before (nothing landed meanwhile).
In memory only: a restart starts empty.

Whose view is the same (checked by `RoomEventsStream._initial_cacheable` and when a
section is stored):

* the reader is joined now (so has not forgotten the room) and ignores nobody;
* the request's filters leave every event in (no timeline or state filter fields, no
  lazy-loaded members, no filter by relations, no `state_after`); the timeline limit
  is part of the key;
* every event of the timeline lay under shared or world_readable history visibility
  (`Viewer.saw_only_open_history`), so any user joined now sees all of them.

What stays per reader is put back on every use: `unsigned.age` (spliced into each
event's encoded JSON, which ends with it), the transaction ID of events the reading
device sent, redacted events (formatted with their redaction) and events that a
relation targets (bundled aggregations depend on the reader), which are formatted as
usual. The summary's heroes leave out the reader (the section keeps the first six
members in order). Unread counts, receipts, typing and account data are not in a
section at all.

Kept lazily: the first initial sync that computes a room as it is only notes the room's
key (`computed_before`), and computes its entry as if sections did not exist; the second
one (another member, or the same user's next device) builds and keeps the section. A room
that changes between every initial sync of its members (most rooms of a busy
organization) so costs its readers nothing more than computing it, and a room read
again while unchanged is computed twice at most.

A room that only got new messages since its section was kept has it extended rather than
computed again (`RoomEventsStream._derive_section`, which says when that gives exactly what
a fresh computation gives): a busy room's initial syncs then cost little more than one
that finds the section current.

Bounded by the bytes of encoded JSON kept (`max_bytes`), least recently used first; the
noted keys by their number (`max_noted`), oldest first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from homeserver.records.events import StoredEvent
from homeserver.rooms.client_format import client_json_prefix

# Enough for the sections of a few thousand rooms of ordinary size.
DEFAULT_MAX_BYTES = 12 << 20
# Rooms whose key an initial sync noted without keeping a section (a few hundred bytes each).
DEFAULT_MAX_NOTED = 20_000

SectionKey = tuple[int, int, int | None, int]  # (last position, generation, head snapshot, limit)


@dataclass(slots=True)
class SectionEvent:
    """One event of a section: `prefix` is its client JSON (for no device) up to its age,
    which `render` appends; None when it is formatted per reader (redacted, or bundled:
    `related`, some relation targets it), and then only is the event itself held
    (`event`). Otherwise a section holds what its readers and `_extended` ask of the
    event: its nid (the event is read by it from the event cache when its sending
    device reads it, to put back its transaction ID), place, state before it, whether
    it is a state event and the device it was sent from. Holding every event too kept
    it parsed when the event cache had let it go to JSON (measured: after the 1,000-room
    benchmark, the 900 events of the 50 small rooms' sections, 1.8 MB)."""

    prefix: bytes | None
    origin_ts: int
    related: bool
    nid: int
    stream_ordering: int | None
    state_before: int | None
    is_state: bool
    txn_device: str | None
    event: StoredEvent | None


@dataclass(slots=True)
class Summary:
    """What a room's summary is made of, for any reader: the counts, whether the room
    has a name or alias, and the first six joined or invited (and left or banned)
    members in order, from which each reader's five heroes other than themselves come."""

    joined: int
    invited: int
    named: bool
    members: list[str]
    departed: list[str]

    def for_user(self, user_id: str) -> dict[str, object]:
        out: dict[str, object] = {"m.joined_member_count": self.joined, "m.invited_member_count": self.invited}
        if not self.named:
            heroes = [u for u in self.members if u != user_id][:5]
            if not heroes:
                heroes = [u for u in self.departed if u != user_id][:5]
            out["m.heroes"] = heroes
        return out


@dataclass(slots=True)
class InitialSection:
    key: SectionKey
    timeline: list[SectionEvent]
    limited: bool
    prev_batch: str | None  # None: the timeline is empty (the response's own token then)
    state: list[SectionEvent]
    summary: Summary
    size: int


def section_event(event: StoredEvent, room_id: str, related: bool) -> SectionEvent:
    """`related`: a relation targets the event (its aggregations are bundled per reader).
    Redacted events, related ones and those without an integer timestamp are formatted
    per reader."""
    ts = event.event.get("origin_server_ts")
    prefix = None
    origin_ts = 0
    if type(ts) is int and not related and event.redacted_by is None:
        prefix = client_json_prefix(event, room_id)
        origin_ts = ts
    return SectionEvent(
        prefix, origin_ts, related, event.nid, event.stream_ordering, event.state_before,
        event.event.get("state_key") is not None,
        event.txn_device if event.txn_id is not None else None, event if prefix is None else None,
    )


def render(ev: SectionEvent, now_ms: int) -> bytes:
    """The event's client JSON with its age as of `now_ms` (as `client_event` computes it);
    `RoomEventsStream._render_section` does the same inline, event after event."""
    assert ev.prefix is not None
    return b"%b%d}}" % (ev.prefix, max(0, now_ms - ev.origin_ts))


class InitialSections:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_noted: int = DEFAULT_MAX_NOTED) -> None:
        self.max_bytes = max_bytes
        self.max_noted = max_noted
        self._sections: OrderedDict[int, InitialSection] = OrderedDict()
        # room -> the key an initial sync computed the room under, without keeping it.
        self._noted: dict[int, SectionKey] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.derived = 0  # sections made from the room's previous one and its new messages

    def stats(self) -> dict[str, int]:
        return {
            "hits": self.hits, "misses": self.misses, "derived": self.derived, "rooms": len(self._sections),
            "bytes": self._bytes,
        }

    def get(self, room_nid: int, key: SectionKey) -> InitialSection | None:
        section = self._sections.get(room_nid)
        if section is None or section.key != key:
            return None
        self._sections.move_to_end(room_nid)
        return section

    def kept(self, room_nid: int) -> InitialSection | None:
        """The room's section under whatever key it was kept (not counted, not moved):
        what a section for the room's present may be derived from."""
        return self._sections.get(room_nid)

    def peek(self, room_nid: int, key: SectionKey) -> bool:
        """Whether a section for the key is kept (not counted, not moved)."""
        section = self._sections.get(room_nid)
        return section is not None and section.key == key

    def computed_before(self, room_nid: int, key: SectionKey) -> bool:
        """Whether an initial sync computed the room under `key` before (so this one
        should build and keep its section); if not, this one is noted for the next."""
        noted = self._noted
        if noted.get(room_nid) == key:
            return True
        noted.pop(room_nid, None)  # re-noted as the newest
        noted[room_nid] = key
        if len(noted) > self.max_noted:
            del noted[next(iter(noted))]
        return False

    def put(self, room_nid: int, section: InitialSection) -> None:
        self.forget(room_nid)
        self._noted.pop(room_nid, None)
        if section.size > self.max_bytes:
            return
        self._sections[room_nid] = section
        self._bytes += section.size
        while self._bytes > self.max_bytes:
            _, dropped = self._sections.popitem(last=False)
            self._bytes -= dropped.size

    def forget(self, room_nid: int) -> None:
        old = self._sections.pop(room_nid, None)
        if old is not None:
            self._bytes -= old.size


def section_size(events: list[SectionEvent]) -> int:
    """An estimate of what a section's events hold beyond the events themselves (which
    the event cache holds): their encoded JSON and records."""
    return sum(len(e.prefix) if e.prefix is not None else 0 for e in events) + 96 * len(events)
