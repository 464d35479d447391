"""Events: stored once as JSON, addressed by compact integer IDs inside the server.

Events are kept in a cache keyed both ways (event ID and nid), bounded by an
estimate of their memory, least recently used first out, since auth checks, state
resolution and every read path look up the same events again and again (a big
account's initial sync, each of its rooms' state and newest page). A message written
here is kept parsed while it is among its room's newest (`_PARSED_PER_ROOM`), which is
what syncs, initial syncs and the next sends read; older, it is kept as its JSON
(about half the memory) and parsed again if read: a busy room's history is seldom
read again. At the bound, the least recently used parsed events are kept as JSON too,
before any event is dropped.
"""

from __future__ import annotations

import struct
import sys
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import orjson

from homeserver.records.events import StoredEvent
from homeserver.storage.database import Database, Row, Txn, in_chunks, marks

# The event cache is bounded by an estimate of the memory its events hold, fitted to
# tracemalloc's count of a cached mix of messages and state: a parsed event takes about
# three times its stored JSON plus 650 bytes (its record, the cache's entries, strings
# not shared); one kept as JSON its text plus 280 bytes. The default holds some 16,000
# events at most parsed, or 8,000 parsed and 20,000 as JSON (`_JSON_SHARE`): a
# 1,000-room account's initial sync reads about 19 events a room (state and a page of
# 11); `database.event_cache_mb` sets it.
DEFAULT_CACHE_BYTES = 40 << 20
_PARSED_PER_JSON_BYTE = 3
_RECORD_BYTES = 650
# A room's newest messages written here kept parsed: more than the timelines clients
# ask of initial syncs (10 to 20), whose kept sections hold those events parsed too.
_PARSED_PER_ROOM = 32
# Rooms whose newest messages are followed (the least recently written beyond are not).
_ROOMS_FOLLOWED = 2_000
# An event kept as its JSON: its packed bytes (`_freeze`), plus the bytes object's header,
# its ID and the cache's entries (measured: `test_event_cache_bound_is_honest`).
_FROZEN_RECORD_BYTES = 280
# The share of the bound that events kept as JSON may take. At the bound the least
# recently used parsed event is kept as its JSON instead (half the memory), and
# the least recently used of those is dropped once they pass this share.
_JSON_SHARE = 0.5
# A read of at most this many events (one event looked up: a reply's or a redaction's
# target, /event) parses an event kept as JSON back into the parsed part; a bigger read
# (a sync's pages and state, room after room) parses it for the caller only: with a
# working set bigger than the parsed part (a 1,000-room account's), putting each back
# would push another out to JSON, and every read would turn both parts over (measured:
# 1,000-room uncached syncs 350 -> 470 ms CPU).
_POINT_READ = 1
# Rooms per statement of `latest_in_rooms`: well under SQLite's limit of 500 terms in a
# compound SELECT and both engines' parameter limits.
_ROOMS_PER_STATEMENT = 100
_COLUMNS = (
    "event_nid, event_id, room_nid, stream_ordering, state_before, state_after, outlier, "
    "rejected, redacted_by, txn_device, txn_id, json"
)

# The columns that say where an event stands (`_still_current`): all a page read needs
# when the cache holds the page's events, without their JSON.
_PLACE_COLUMNS = "event_nid, event_id, room_nid, stream_ordering, state_before, state_after, outlier, rejected, redacted_by"


def _still_current(cached: StoredEvent | None, row: Row) -> bool:
    """Whether a cached event is what a fresh read of its row (`_COLUMNS` or
    `_PLACE_COLUMNS`) says: the same redaction, the same place (an outlier promoted into
    the timeline by a backfill has a stream position now, and a reader that cached the
    outlier meanwhile must not hand it back without one)."""
    return (
        cached is not None and cached.redacted_by == row[8] and cached.stream_ordering == row[3]
        and cached.outlier == bool(row[6]) and cached.rejected == row[7]
    )


def _weight(json_len: int) -> int:
    return _PARSED_PER_JSON_BYTE * json_len + _RECORD_BYTES


# A cached event kept as its JSON: one bytes object, StoredEvent's fields but the event
# ID (its key) and the parsed event packed in front of the event's JSON. A tuple of the
# fields and the JSON as text took some 290 bytes more per event (the tuple, an int
# object for each position and snapshot, the text's header): a megabyte of the 3,400
# messages the 50 x 100 benchmark keeps so. Packed by copying, so it holds no spare room
# (orjson's bytes keep the buffer they were written into, 4 KiB for most events).
_Frozen = bytes
# nid, room nid, stream position, state before and after (`_NONE` for None), outlier,
# then the lengths of rejected, redacted_by, txn_device and txn_id (`_ABSENT`: None).
_HEADER = struct.Struct("<qqqqq?HHHH")
_NONE = -(1 << 63)
_ABSENT = 0xFFFF
_NO_FIELDS = (None, None, None, None)
_NO_LENGTHS = [_ABSENT] * 4


def _opt_int(v: int | None) -> int:
    return _NONE if v is None else v


def _freeze(ev: StoredEvent) -> _Frozen:
    fields = (ev.rejected, ev.redacted_by, ev.txn_device, ev.txn_id)
    so, before, after = ev.stream_ordering, ev.state_before, ev.state_after
    if fields == _NO_FIELDS:
        # Most events: no optional text. One concatenation of two bytes objects gives
        # the exact-size result (the event cache freezes one event per send at its bound,
        # so this path is kept short).
        return _HEADER.pack(
            ev.nid, ev.room_nid, _NONE if so is None else so, _NONE if before is None else before,
            _NONE if after is None else after, ev.outlier, _ABSENT, _ABSENT, _ABSENT, _ABSENT,
        ) + orjson.dumps(ev.event)
    strings = [b"" if v is None else v.encode() for v in fields]
    if any(len(b) >= _ABSENT for b in strings):
        raise ValueError("a field too long to pack")
    header = _HEADER.pack(
        ev.nid, ev.room_nid, _opt_int(so), _opt_int(before), _opt_int(after),
        ev.outlier, *(_ABSENT if v is None else len(b) for v, b in zip(fields, strings, strict=True)),
    )
    return b"".join((header, *strings, orjson.dumps(ev.event)))


def _json_start(f: _Frozen) -> int:
    return _HEADER.size + sum(n for n in _HEADER.unpack_from(f)[6:] if n != _ABSENT)


def _frozen_nid(f: _Frozen) -> int:
    return int.from_bytes(f[:8], "little", signed=True)


def _thaw(event_id: str, f: _Frozen) -> StoredEvent:
    nid, room_nid, pos, before, after, outlier, *lengths = _HEADER.unpack_from(f)
    at = _HEADER.size
    strings: list[str | None] = [None, None, None, None]
    if lengths != _NO_LENGTHS:
        for i, n in enumerate(lengths):
            if n != _ABSENT:
                strings[i] = f[at:at + n].decode()
                at += n
    return StoredEvent(
        nid, event_id, room_nid, None if pos == _NONE else pos, None if before == _NONE else before,
        None if after == _NONE else after, outlier, strings[0], strings[1], strings[2], strings[3],
        orjson.loads(memoryview(f)[at:]),
    )


def _frozen_weight(f: _Frozen) -> int:
    return len(f) + _FROZEN_RECORD_BYTES


def _from_row(row: Row) -> StoredEvent:
    event = orjson.loads(row[11])
    event_id = row[1]
    if event.get("event_id") == event_id:
        event["event_id"] = event_id  # one copy of the ID, not two
    return StoredEvent(
        nid=int(row[0]), event_id=event_id, room_nid=int(row[2]),
        stream_ordering=None if row[3] is None else int(row[3]),
        state_before=row[4], state_after=row[5], outlier=bool(row[6]), rejected=row[7],
        redacted_by=row[8], txn_device=row[9], txn_id=row[10], event=event,
    )


# Strings most cached events repeat, each parse or build making its own copy: the room,
# the sender, the type and state key, a message's msgtype, a member's membership.
_SHARED_FIELDS = ("room_id", "sender", "type", "state_key")
_SHARED_CONTENT = ("msgtype", "membership")
_intern = sys.intern


class EventStore:
    def __init__(self, db: Database, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.db = db
        self.cache_bytes = cache_bytes
        # event ID -> (event, its estimated memory), least recently used first
        self._by_id: OrderedDict[str, tuple[StoredEvent, int]] = OrderedDict()
        # event ID -> the event as its JSON, least recently used first
        self._frozen: OrderedDict[str, _Frozen] = OrderedDict()
        self._id_by_nid: dict[int, str] = {}
        self._bytes = 0  # of both
        self._frozen_bytes = 0  # of those kept as JSON
        # room nid -> the nids of its newest messages written here, oldest first (nids:
        # they outlive an event the bound drops, and an int is a third of an ID)
        self._newest: OrderedDict[int, list[int]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.thawed = 0  # hits on an event kept as its JSON

    def cache_stats(self) -> dict[str, int]:
        return {
            "hits": self.hits, "misses": self.misses, "thawed": self.thawed,
            "entries": len(self._by_id) + len(self._frozen), "bytes": self._bytes,
        }

    def _cached(self, event_id: str, promote: bool = False) -> StoredEvent | None:
        entry = self._by_id.get(event_id)
        if entry is not None:
            self._by_id.move_to_end(event_id)
            return entry[0]
        frozen = self._frozen.get(event_id)
        if frozen is None:
            return None
        self.thawed += 1
        ev = _thaw(event_id, frozen)
        if promote:
            del self._frozen[event_id]
            self._unfreeze_bytes(frozen)
            self._cache(ev, len(frozen) - _json_start(frozen))
        else:
            self._frozen.move_to_end(event_id)
        return ev

    def _share_strings(self, event: dict[str, Any]) -> None:
        """Make a cached event hold one shared copy of the strings events repeat (some
        370 of the 2,870 bytes a message parsed from its row takes, for about a
        microsecond): the fields of `_SHARED_FIELDS` and `_SHARED_CONTENT`, interned,
        and the IDs of its auth and prev events, taken from those events where cached.
        Replaced by equal strings, so no reader can tell; interned strings go when
        nothing holds them."""
        for key in _SHARED_FIELDS:
            value = event.get(key)
            if type(value) is str:
                event[key] = _intern(value)
        content = event.get("content")
        if type(content) is dict:
            for key in _SHARED_CONTENT:
                value = content.get(key)
                if type(value) is str:
                    content[key] = _intern(value)
        by_id = self._by_id
        for key in ("auth_events", "prev_events"):
            refs = event.get(key)
            if type(refs) is list:
                for i, ref in enumerate(refs):
                    if type(ref) is str and (entry := by_id.get(ref)) is not None:
                        refs[i] = entry[0].event_id

    def _cache(self, ev: StoredEvent, json_len: int) -> None:
        self._share_strings(ev.event)
        weight = _weight(json_len)
        old = self._by_id.pop(ev.event_id, None)
        if old is not None:
            self._bytes -= old[1]
        frozen = self._frozen.pop(ev.event_id, None)
        if frozen is not None:
            self._unfreeze_bytes(frozen)
        self._by_id[ev.event_id] = (ev, weight)
        self._id_by_nid[ev.nid] = ev.event_id
        self._bytes += weight
        json_bound = self.cache_bytes * _JSON_SHARE
        while self._bytes > self.cache_bytes:
            if self._frozen and (self._frozen_bytes > json_bound or len(self._by_id) <= 1):
                event_id, frozen = self._frozen.popitem(last=False)
                self._unfreeze_bytes(frozen)
                nid = _frozen_nid(frozen)
                if self._id_by_nid.get(nid) == event_id:
                    del self._id_by_nid[nid]
            elif len(self._by_id) > 1:
                self._keep_as_json(next(iter(self._by_id)))
            else:
                break

    def _keep_as_json(self, event_id: str) -> None:
        """Keep a parsed event as its JSON instead (if it is still cached parsed)."""
        entry = self._by_id.pop(event_id, None)
        if entry is None:
            return
        self._bytes -= entry[1]
        try:
            frozen = _freeze(entry[0])
        except (orjson.JSONEncodeError, ValueError):  # stored as JSON, so never; dropped if it were
            self._id_by_nid.pop(entry[0].nid, None)
            return
        self._frozen[event_id] = frozen
        frozen_weight = _frozen_weight(frozen)
        self._bytes += frozen_weight
        self._frozen_bytes += frozen_weight

    def _unfreeze_bytes(self, frozen: _Frozen) -> None:
        """Take an entry kept as JSON, just removed from `_frozen`, off both counts."""
        frozen_weight = _frozen_weight(frozen)
        self._bytes -= frozen_weight
        self._frozen_bytes -= frozen_weight

    def _cache_read(self, ev: StoredEvent, json_len: int) -> None:
        """Cache what a read found, unless the event was cached while the read was
        under way: that entry came from a write committed meanwhile (`remember`) or a
        later read, and is at least as new as this one."""
        if ev.event_id not in self._by_id and ev.event_id not in self._frozen:
            self._cache(ev, json_len)

    def remember(self, ev: StoredEvent) -> None:
        """Cache an event the caller has just committed. A message (a timeline event
        without a state key) pushes its room's oldest followed message, if it has
        `_PARSED_PER_ROOM` newer ones, to be kept as its JSON."""
        self._cache(ev, len(orjson.dumps(ev.event)))
        if ev.stream_ordering is None or ev.stream_ordering <= 0 or ev.outlier or "state_key" in ev.event:
            return
        newest = self._newest.get(ev.room_nid)
        if newest is None:
            newest = self._newest[ev.room_nid] = []
            if len(self._newest) > _ROOMS_FOLLOWED:
                self._newest.popitem(last=False)
        else:
            self._newest.move_to_end(ev.room_nid)
        newest.append(ev.nid)
        if len(newest) > _PARSED_PER_ROOM and (older := self._id_by_nid.get(newest.pop(0))) is not None:
            self._keep_as_json(older)

    def forget(self, event_id: str) -> None:
        entry = self._by_id.pop(event_id, None)
        if entry is not None:
            self._bytes -= entry[1]
            self._id_by_nid.pop(entry[0].nid, None)
        frozen = self._frozen.pop(event_id, None)
        if frozen is not None:
            self._unfreeze_bytes(frozen)
            self._id_by_nid.pop(_frozen_nid(frozen), None)

    async def get_event(self, event_id: str) -> StoredEvent | None:
        return (await self.get_events([event_id])).get(event_id)

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
        out: dict[str, StoredEvent] = {}
        missing: list[str] = []
        wanted = list(event_ids)
        promote = len(wanted) <= _POINT_READ
        for eid in wanted:
            ev = self._cached(eid, promote)
            if ev is not None:
                out[eid] = ev
            else:
                missing.append(eid)
        self.hits += len(out)
        self.misses += len(missing)
        for ev in await self._load("event_id", missing):
            out[ev.event_id] = ev
        return out

    async def get_events_by_nid(self, nids: Iterable[int]) -> dict[int, StoredEvent]:
        out: dict[int, StoredEvent] = {}
        missing: list[int] = []
        wanted = list(nids)
        promote = len(wanted) <= _POINT_READ
        for nid in wanted:
            eid = self._id_by_nid.get(nid)
            ev = self._cached(eid, promote) if eid is not None else None
            if ev is not None:
                out[nid] = ev
            else:
                missing.append(nid)
        self.hits += len(out)
        self.misses += len(missing)
        for ev in await self._load("event_nid", missing):
            out[ev.nid] = ev
        return out

    async def _load(self, column: str, keys: list[Any]) -> list[StoredEvent]:
        """Read uncached events by one of the two ID columns, in chunks, and cache them."""
        loaded = []
        for chunk in in_chunks(keys):
            rows = await self.db.fetchall(f"SELECT {_COLUMNS} FROM events WHERE {column} IN ({marks(chunk)})", chunk)
            for row in rows:
                ev = _from_row(row)
                self._cache_read(ev, len(row[11]))
                loaded.append(ev)
        return loaded

    @staticmethod
    async def insert(
        txn: Txn,
        event: dict[str, Any],
        *,
        room_nid: int,
        stream_ordering: int | None,
        state_key_nid: int | None,
        state_before: int | None,
        state_after: int | None,
        outlier: bool = False,
        rejected: str | None = None,
        txn_device: str | None = None,
        txn_id: str | None = None,
    ) -> StoredEvent:
        row = await txn.fetchone(
            "INSERT INTO events (event_id, room_nid, stream_ordering, depth, event_type, state_key_nid,"
            " sender, origin_server_ts, state_before, state_after, outlier, rejected, txn_device,"
            " txn_id, json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING event_nid",
            (
                event["event_id"], room_nid, stream_ordering, event["depth"], event["type"],
                state_key_nid, event["sender"], event["origin_server_ts"], state_before,
                state_after, int(outlier), rejected, txn_device, txn_id, orjson.dumps(event).decode(),
            ),
        )
        assert row is not None
        return StoredEvent(
            int(row[0]), event["event_id"], room_nid, stream_ordering, state_before, state_after,
            outlier, rejected, None, txn_device, txn_id, event,
        )

    @staticmethod
    async def insert_outliers(
        txn: Txn, events: Sequence[dict[str, Any]], *, room_nid: int, key_nids: Mapping[tuple[str, str], int]
    ) -> list[StoredEvent]:
        """`insert` for many outliers at once (a joined room's state and auth chain):
        one batched insert and a read of their nids per chunk instead of a statement
        per event. `key_nids` has the state key of every state event."""
        out: list[StoredEvent] = []
        for chunk in in_chunks(events):
            await txn.executemany(
                "INSERT INTO events (event_id, room_nid, stream_ordering, depth, event_type, state_key_nid,"
                " sender, origin_server_ts, state_before, state_after, outlier, rejected, txn_device,"
                " txn_id, json) VALUES (?, ?, NULL, ?, ?, ?, ?, ?, NULL, NULL, 1, NULL, NULL, NULL, ?)",
                [
                    (
                        e["event_id"], room_nid, e["depth"], e["type"],
                        key_nids[(e["type"], e["state_key"])] if "state_key" in e else None,
                        e["sender"], e["origin_server_ts"], orjson.dumps(e).decode(),
                    )
                    for e in chunk
                ],
            )
            ids = [e["event_id"] for e in chunk]
            rows = await txn.fetchall(
                f"SELECT event_id, event_nid FROM events WHERE event_id IN ({marks(ids)})", ids
            )
            nids = {str(event_id): int(nid) for event_id, nid in rows}
            out.extend(
                StoredEvent(nids[e["event_id"]], e["event_id"], room_nid, None, None, None, True, None, None,
                            None, None, e)
                for e in chunk
            )
        return out

    @staticmethod
    async def promote_outlier(
        txn: Txn, outlier: StoredEvent, *, stream_ordering: int | None, state_before: int | None,
        state_after: int | None,
    ) -> StoredEvent:
        """Give an event known only as an outlier (auth or state of others) its place
        in the timeline, once backfill has found where it sits in the DAG."""
        await txn.execute(
            "UPDATE events SET stream_ordering = ?, state_before = ?, state_after = ?, outlier = 0"
            " WHERE event_nid = ? AND outlier = 1",
            (stream_ordering, state_before, state_after, outlier.nid),
        )
        return StoredEvent(
            outlier.nid, outlier.event_id, outlier.room_nid, stream_ordering, state_before, state_after,
            False, None, outlier.redacted_by, outlier.txn_device, outlier.txn_id, outlier.event,
        )

    @staticmethod
    async def set_state_after(txn: Txn, event_nid: int, snapshot: int) -> None:
        await txn.execute("UPDATE events SET state_after = ? WHERE event_nid = ?", (snapshot, event_nid))

    @staticmethod
    async def mark_redacted(txn: Txn, target_event_id: str, redaction_event_id: str) -> None:
        await txn.execute(
            "UPDATE events SET redacted_by = ? WHERE event_id = ? AND redacted_by IS NULL",
            (redaction_event_id, target_event_id),
        )

    @staticmethod
    async def place_in_timeline(txn: Txn, event_nid: int, stream_ordering: int) -> None:
        """Give an event held out of the timeline (a redaction waiting to apply) its place."""
        await txn.execute(
            "UPDATE events SET stream_ordering = ? WHERE event_nid = ? AND stream_ordering IS NULL",
            (stream_ordering, event_nid),
        )

    # --- redactions whose target has not arrived ---

    async def pending_redactions(self, target_event_id: str, room_nid: int) -> list[int]:
        rows = await self.db.fetchall(
            "SELECT redaction_nid FROM pending_redactions WHERE target_event_id = ? AND room_nid = ?",
            (target_event_id, room_nid),
        )
        return [int(r[0]) for r in rows]

    @staticmethod
    async def add_pending_redaction(txn: Txn, target_event_id: str, redaction_nid: int, room_nid: int) -> None:
        await txn.execute(
            "INSERT INTO pending_redactions (target_event_id, redaction_nid, room_nid) VALUES (?, ?, ?)"
            " ON CONFLICT (target_event_id, redaction_nid) DO NOTHING",
            (target_event_id, redaction_nid, room_nid),
        )

    @staticmethod
    async def clear_pending_redactions(txn: Txn, target_event_id: str) -> None:
        await txn.execute("DELETE FROM pending_redactions WHERE target_event_id = ?", (target_event_id,))

    async def max_stream_ordering(self) -> int:
        """The newest stream position in use. Memberships in rooms this server is not
        in (a remote invite, our knock) hold positions of their own, with no timeline
        event: counting them keeps a restart from handing those positions out again."""
        row = await self.db.fetchone(
            "SELECT MAX(p) FROM (SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM events"
            " UNION ALL SELECT COALESCE(MAX(stream_ordering), 0) AS p FROM memberships) AS positions"
        )
        return int(row[0]) if row and row[0] is not None else 0

    async def min_stream_ordering(self) -> int:
        """The lowest position in use: backfilled history is numbered downwards from it."""
        row = await self.db.fetchone("SELECT COALESCE(MIN(stream_ordering), 0) FROM events")
        return int(row[0]) if row else 0

    async def oldest_in_room(self, room_nid: int, limit: int) -> list[StoredEvent]:
        """A room's first timeline events by stream order (where backfill looks for
        prev events this server does not have)."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM events WHERE room_nid = ? AND stream_ordering IS NOT NULL"
            " ORDER BY stream_ordering ASC LIMIT ?",
            (room_nid, limit),
        )
        return self._current(rows)

    async def room_stream(
        self,
        room_nid: int,
        *,
        from_pos: int,
        to_pos: int | None,
        backwards: bool,
        limit: int,
    ) -> list[StoredEvent]:
        """Events of a room by stream order: (to, from] going back, (from, to] going forward."""
        if backwards:
            sql = (
                f"SELECT {_COLUMNS} FROM events WHERE room_nid = ? AND stream_ordering <= ?"
                + (" AND stream_ordering > ?" if to_pos is not None else "")
                + " ORDER BY stream_ordering DESC LIMIT ?"
            )
        else:
            sql = (
                f"SELECT {_COLUMNS} FROM events WHERE room_nid = ? AND stream_ordering > ?"
                + (" AND stream_ordering <= ?" if to_pos is not None else "")
                + " ORDER BY stream_ordering ASC LIMIT ?"
            )
        args: list[Any] = [room_nid, from_pos]
        if to_pos is not None:
            args.append(to_pos)
        args.append(limit)
        return self._current(await self.db.fetchall(sql, args))

    def _current(self, rows: list[Row]) -> list[StoredEvent]:
        """Events of freshly read rows: the cached parse where it is still current
        (`_still_current`), else a new one, cached."""
        out = []
        hits = 0
        for row in rows:
            cached = self._cached(row[1])
            if cached is not None and _still_current(cached, row):
                out.append(cached)
                hits += 1
            else:
                ev = _from_row(row)
                if cached is None:
                    self._cache(ev, len(row[11]))
                else:  # which of the two is newer is unknown here: the next read decides
                    self.forget(ev.event_id)
                out.append(ev)
        self.hits += hits
        self.misses += len(rows) - hits
        return out

    async def latest_in_rooms(self, room_nids: Collection[int], upto: int, limit: int) -> dict[int, list[StoredEvent]]:
        """Each room's newest `limit` timeline events at or before `upto`, newest first.

        An initial sync's first timeline page of every room, read in a few statements
        rather than one per room: each room's page is its own indexed `ORDER BY ... LIMIT`
        (a window function would read every event of every room), glued with UNION ALL,
        which both engines run as written. The pages are read without the events' JSON:
        the cache usually holds them (a client's later syncs, its other devices), and
        only those it lacks, or holds as they no longer are, are read whole after.
        """
        out: dict[int, list[StoredEvent]] = {nid: [] for nid in room_nids}
        for chunk in in_chunks(out, _ROOMS_PER_STATEMENT):
            sql = " UNION ALL ".join(
                f"SELECT * FROM (SELECT {_PLACE_COLUMNS} FROM events WHERE room_nid = ? AND stream_ordering <= ?"
                f" ORDER BY stream_ordering DESC LIMIT ?) AS page{n}"
                for n in range(len(chunk))
            )
            args = [a for nid in chunk for a in (nid, upto, limit)]
            reread: list[int] = []
            hits = 0
            for row in await self.db.fetchall(sql, args):
                cached = self._cached(row[1])
                if cached is not None and _still_current(cached, row):
                    out[cached.room_nid].append(cached)
                    hits += 1
                else:
                    reread.append(int(row[0]))
            self.hits += hits
            for nids in in_chunks(reread):
                rows = await self.db.fetchall(f"SELECT {_COLUMNS} FROM events WHERE event_nid IN ({marks(nids)})", nids)
                for ev in self._current(rows):
                    out[ev.room_nid].append(ev)
        for page in out.values():
            page.sort(key=lambda e: -(e.stream_ordering or 0))
        return out

    async def stream_ordering_at_or_before_ts(self, room_nid: int, ts: int, backwards: bool) -> str | None:
        if backwards:
            row = await self.db.fetchone(
                "SELECT event_id FROM events WHERE room_nid = ? AND stream_ordering IS NOT NULL"
                " AND origin_server_ts <= ? ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT 1",
                (room_nid, ts),
            )
        else:
            row = await self.db.fetchone(
                "SELECT event_id FROM events WHERE room_nid = ? AND stream_ordering IS NOT NULL"
                " AND origin_server_ts >= ? ORDER BY origin_server_ts ASC, stream_ordering ASC LIMIT 1",
                (room_nid, ts),
            )
        return row[0] if row else None

    async def events_by_timestamp(
        self, room_nid: int, ts: int, *, backwards: bool, after: tuple[int, int] | None, limit: int
    ) -> list[StoredEvent]:
        """A room's events ordered by distance in time from `ts` in one direction:
        at or before it going back, at or after it going forward, ties by stream
        order. `after` is the (origin_server_ts, stream_ordering) of the last event
        of the previous batch, so callers can skip events they may not see."""
        op, order = ("<", "DESC") if backwards else (">", "ASC")
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE room_nid = ? AND stream_ordering IS NOT NULL"
            f" AND origin_server_ts {op}= ?"
        )
        args: list[Any] = [room_nid, ts]
        if after is not None:
            sql += f" AND (origin_server_ts {op} ? OR (origin_server_ts = ? AND stream_ordering {op} ?))"
            args += [after[0], after[0], after[1]]
        sql += f" ORDER BY origin_server_ts {order}, stream_ordering {order} LIMIT ?"
        args.append(limit)
        return self._current(await self.db.fetchall(sql, args))


class EventPositions:
    """Stream-position lookups for /sync: the last event of a room up to a position."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def last_event_at_or_before(self, room_nid: int, pos: int) -> tuple[int, int | None] | None:
        """(stream ordering, state snapshot after) of the room's last event at or before pos."""
        row = await self.db.fetchone(
            "SELECT stream_ordering, state_after FROM events WHERE room_nid = ? AND stream_ordering <= ?"
            " ORDER BY stream_ordering DESC LIMIT 1",
            (room_nid, pos),
        )
        return (int(row[0]), row[1]) if row else None

    async def last_of_types_at_or_before(self, room_nid: int, pos: int, types: Collection[str]) -> int | None:
        """Stream ordering of the room's last event of one of `types` at or before pos
        (sliding sync's bump stamp: the last event that counts as activity)."""
        row = await self.db.fetchone(
            "SELECT stream_ordering FROM events WHERE room_nid = ? AND stream_ordering <= ?"
            f" AND stream_ordering > 0 AND event_type IN ({marks(types)})"
            " ORDER BY stream_ordering DESC LIMIT 1",  # walks the room's index back from pos
            (room_nid, pos, *types),
        )
        return int(row[0]) if row and row[0] is not None else None

    async def last_positions(self, room_nids: Collection[int]) -> dict[int, int]:
        """`last_position` of many rooms, one statement per chunk of rooms."""
        out = dict.fromkeys(room_nids, 0)
        for chunk in in_chunks(out):
            rows = await self.db.fetchall(
                f"SELECT room_nid, MAX(stream_ordering) FROM events WHERE room_nid IN ({marks(chunk)})"
                " GROUP BY room_nid",
                chunk,
            )
            for r in rows:
                out[int(r[0])] = int(r[1] or 0)
        return out

    async def last_position(self, room_nid: int) -> int:
        row = await self.db.fetchone(
            "SELECT COALESCE(MAX(stream_ordering), 0) FROM events WHERE room_nid = ?", (room_nid,)
        )
        return int(row[0]) if row else 0
