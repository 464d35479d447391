"""The parsed-event cache: bounded by the estimated memory of its events (not their
number), the oldest dropped first, hits and misses counted and shown in /metrics, and
what it answers always what the database holds: an outlier that a backfill promotes
into the timeline (it gets a stream position) while a reader had cached its outlier
row is read afresh by timeline reads, and dropped from the cache rather than kept
stale (a /messages during the backfill right after a join answered 500 on the stale
copy). Real database, both engines."""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc
from typing import Any

import orjson

from homeserver.records.events import StoredEvent
from homeserver.storage.events import (
    _COLUMNS,
    _JSON_SHARE,
    _PARSED_PER_ROOM,
    EventStore,
    _freeze,
    _from_row,
    _thaw,
)
from tests.conftest import ClientFactory


async def test_event_cache_bounded_by_bytes(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    api = await make_api(**{**db_overrides, "database": {**db_overrides.get("database", {}), "event_cache_mb": 1}})
    hs = api.hs
    assert hs.event_store.cache_bytes == 1 << 20
    alice = (await api.register("alice"))["access_token"]
    room = (await api.post("createRoom", {}, token=alice))["room_id"]
    big = "x" * 20_000  # each message's parse counts some 60 kB, its JSON some 21 kB
    sent = [
        (await api.put(f"rooms/{room}/send/m.room.message/t{i}", {"msgtype": "m.text", "body": f"{i} {big}"},
                       token=alice))["event_id"]
        for i in range(60)
    ]
    stats = hs.event_store.cache_stats()
    assert 0 < stats["bytes"] <= 1 << 20
    assert 20 <= stats["entries"] < 60  # small events (the room's creation) count little

    # A fresh store on the same database: at the bound the least recently used parsed
    # events are kept as their JSON, and the least recently used of those dropped once
    # they pass their share of the bound.
    store = EventStore(hs.db, cache_bytes=1 << 20)
    found = {e: ev for e in sent if (ev := await store.get_event(e)) is not None}  # read in this order
    assert [found[e].event["content"]["body"].split()[0] for e in sent] == [str(i) for i in range(60)]
    assert store.cache_stats()["misses"] == 60 and store.cache_stats()["hits"] == 0
    assert store.cache_stats()["bytes"] <= 1 << 20
    parsed = [e for e in sent if e in store._by_id]
    as_json = [e for e in sent if e in store._frozen]
    dropped = [e for e in sent if e not in store._by_id and e not in store._frozen]
    assert parsed == sent[-len(parsed):] and as_json == sent[len(dropped):-len(parsed)]
    assert parsed and as_json and dropped
    assert store._frozen_bytes < (1 << 20) * _JSON_SHARE + 30_000  # by one entry at most
    by_nid = await store.get_events_by_nid([found[e].nid for e in sent[-5:]])
    assert [by_nid[found[e].nid].event_id for e in sent[-5:]] == sent[-5:]
    assert store.cache_stats()["hits"] == 5  # the newest are still cached
    assert await store.get_events(sent[:1]) == {sent[0]: found[sent[0]]}
    assert store.cache_stats()["misses"] == 61  # the oldest was dropped to make room
    assert store.cache_stats()["bytes"] <= 1 << 20

    # Forgetting gives its memory back.
    before = store.cache_stats()
    store.forget(sent[-1])
    after = store.cache_stats()
    assert after["entries"] == before["entries"] - 1 and after["bytes"] < before["bytes"]
    assert (await store.get_events_by_nid([found[sent[-1]].nid]))[found[sent[-1]].nid].event_id == sent[-1]

    async with api.client.get("/metrics") as r:
        text = await r.text()
    assert 'accord_cache_bytes{cache="events"}' in text and 'accord_cache_hits_total{cache="events"}' in text


async def test_event_cache_keeps_what_is_read_again(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    """A hit refreshes an event (least recently used first, not first in, first out); an
    event kept as JSON that a big read finds is parsed for that read only and stays JSON
    (a working set bigger than the parsed part would otherwise turn both over on every
    read), one looked up alone is parsed back into the parsed part; either way what is
    handed back is what the database holds."""
    api = await make_api(**db_overrides)
    hs = api.hs
    alice = (await api.register("alice"))["access_token"]
    room = (await api.post("createRoom", {}, token=alice))["room_id"]
    big = "y" * 20_000
    sent = [
        (await api.put(f"rooms/{room}/send/m.room.message/l{i}", {"msgtype": "m.text", "body": f"{i} {big}"},
                       token=alice))["event_id"]
        for i in range(40)
    ]
    fresh = await EventStore(hs.db).get_events(sent)

    store = EventStore(hs.db, cache_bytes=1 << 20)
    await store.get_events(sent[:5])
    for e in sent[5:]:
        await store.get_events([sent[0]])  # read again and again: never the least recently used
        await store.get_event(e)
    assert sent[0] in store._by_id
    assert all(e not in store._by_id for e in sent[1:5])  # read once, long ago

    kept = next(e for e in sent if e in store._frozen)
    thawed = store.cache_stats()["thawed"]
    assert (await store.get_events([kept, sent[0]]))[kept] == fresh[kept]
    assert kept in store._frozen and kept not in store._by_id
    assert store.cache_stats()["thawed"] == thawed + 1
    entries, size = store.cache_stats()["entries"], store.cache_stats()["bytes"]
    assert await store.get_event(kept) == fresh[kept]
    assert kept in store._by_id and kept not in store._frozen
    assert store.cache_stats()["entries"] == entries and store.cache_stats()["bytes"] <= 1 << 20
    assert store.cache_stats()["bytes"] != size


async def test_event_cache_bound_is_honest(make_api: ClientFactory) -> None:
    """The bytes the cache counts are within a fifth of what its events really take
    (tracemalloc), parsed and kept as JSON: the bound is the memory it says."""
    api = await make_api()
    hs = api.hs
    owner = (await api.register("owner"))["access_token"]
    member = (await api.register("member"))["access_token"]
    for r in range(20):  # enough events that the cache's own tables count as they do at scale
        rid = (await api.post("createRoom", {"preset": "public_chat", "name": f"room {r}"}, token=owner))["room_id"]
        await api.post(f"rooms/{rid}/join", {}, token=member)
        for i in range(20):
            await api.put(f"rooms/{rid}/send/m.room.message/h{r}_{i}",
                          {"msgtype": "m.text", "body": f"message {i} in room {r}"}, token=owner)
    rows = await hs.db.fetchall(f"SELECT {_COLUMNS} FROM events")
    store = EventStore(hs.db, cache_bytes=1 << 30)

    def allocated(since: tracemalloc.Snapshot) -> int:
        gc.collect()
        return sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(since, "filename"))

    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.take_snapshot()
        # The rows' own copy made while traced (what a read makes: the IDs and numbers
        # the events keep), cached as reads cache them, without the database's buffers.
        for row in orjson.loads(orjson.dumps([list(r) for r in rows])):
            store._cache(_from_row(row), len(row[11].encode()))
        parsed = allocated(start)
        assert 0.85 < parsed / store.cache_stats()["bytes"] < 1.15, (parsed, store.cache_stats())
        for row in rows:
            store._keep_as_json(row[1])
        as_json = allocated(start)
        assert 0.85 < as_json / store.cache_stats()["bytes"] < 1.15, (as_json, store.cache_stats())
    finally:
        tracemalloc.stop()


async def test_timeline_reads_replace_a_stale_outlier_copy(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    api = await make_api(**db_overrides)
    hs = api.hs
    owner = (await api.register("owner"))["access_token"]
    room_id = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
    event_id = (await api.put(f"rooms/{room_id}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"},
                              token=owner))["event_id"]
    room = await hs.room_store.get_room(room_id)
    assert room is not None
    stored = await hs.event_store.get_event(event_id)
    assert stored is not None and stored.stream_ordering is not None
    # What a reader that read the row before the promotion committed left behind.
    hs.event_store.remember(dataclasses.replace(stored, stream_ordering=None, outlier=True))

    page = await hs.event_store.room_stream(
        room.room_nid, from_pos=hs.room_service.stream.current, to_pos=None, backwards=True, limit=5
    )
    found = next(e for e in page if e.event_id == event_id)
    assert found.stream_ordering == stored.stream_ordering and not found.outlier
    again = await hs.event_store.get_event(event_id)
    assert again is not None and again.stream_ordering == stored.stream_ordering
    # And /messages shows it.
    messages = await api.get(f"rooms/{room_id}/messages?dir=b&limit=5", token=owner)
    assert event_id in [e["event_id"] for e in messages["chunk"]]


async def test_cached_events_share_repeated_strings(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    """Events read from the database hold one copy of the strings they repeat (room,
    sender, type, msgtype, the IDs of their auth events), and read back exactly as
    stored: the sharing replaces strings by equal ones only."""
    api = await make_api(**db_overrides)
    hs = api.hs
    owner = (await api.register("owner"))["access_token"]
    room_id = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
    ids = [
        (await api.put(f"rooms/{room_id}/send/m.room.message/s{i}", {"msgtype": "m.text", "body": f"ü {i}"},
                       token=owner))["event_id"]
        for i in range(3)
    ]
    rows = await hs.db.fetchall(
        f"SELECT event_id, json FROM events WHERE event_id IN ({', '.join('?' * len(ids))})", ids
    )
    stored = {r[0]: orjson.loads(r[1]) for r in rows}

    store = EventStore(hs.db)  # nothing cached: every event parsed from its row
    auth = await store.get_events(stored[ids[0]]["auth_events"])
    read = await store.get_events(ids[:2])
    read |= await store.get_events(ids[2:])  # its prev event is cached by then
    assert {e: ev.event for e, ev in read.items()} == stored
    a, b = read[ids[1]].event, read[ids[2]].event
    for key in ("room_id", "sender", "type"):
        assert a[key] is b[key]
    assert a["content"]["msgtype"] is b["content"]["msgtype"]
    assert all(x is y for x, y in zip(a["auth_events"], b["auth_events"], strict=True))
    assert all(ref is auth[ref].event_id for ref in a["auth_events"])
    assert b["prev_events"][0] is read[ids[1]].event_id and a["event_id"] is read[ids[1]].event_id


async def test_older_messages_kept_as_json_read_back_as_stored(
    db_overrides: dict[str, Any], make_api: ClientFactory
) -> None:
    """A room's messages older than its newest `_PARSED_PER_ROOM` are kept as their
    JSON, not dropped, and come back with their place, redaction and transaction as a
    fresh read finds them; a stale copy so kept is not handed back by timeline reads."""
    api = await make_api(**db_overrides)
    hs = api.hs
    store = hs.event_store
    owner = (await api.register("owner"))["access_token"]
    room_id = (await api.post("createRoom", {"preset": "public_chat", "name": "kept"}, token=owner))["room_id"]
    count = _PARSED_PER_ROOM + 8
    ids = [
        (await api.put(f"rooms/{room_id}/send/m.room.message/k{i}", {"msgtype": "m.text", "body": f"é {i}"},
                       token=owner))["event_id"]
        for i in range(count)
    ]
    assert all(e in store._frozen for e in ids[:7]) and not any(e in store._frozen for e in ids[-_PARSED_PER_ROOM:])
    thawed = store.cache_stats()["thawed"]
    await api.put(f"rooms/{room_id}/redact/{ids[1]}/r1", {"reason": "gone"}, token=owner)
    await store.get_events([ids[1]])  # cached parsed again with its redaction, then kept as JSON
    store._keep_as_json(ids[1])
    assert ids[0] in store._frozen and ids[1] in store._frozen

    fresh = await EventStore(hs.db).get_events(ids)
    assert fresh[ids[1]].redacted_by is not None and fresh[ids[0]].txn_id == "k0"
    assert await store.get_events(ids) == fresh
    assert store.cache_stats()["thawed"] > thawed
    by_nid = await store.get_events_by_nid(e.nid for e in fresh.values())
    assert {e.event_id: e for e in by_nid.values()} == fresh
    messages = await api.get(f"rooms/{room_id}/messages?dir=b&limit={count + 10}", token=owner)
    bodies = [e["content"].get("body") for e in messages["chunk"] if e["type"] == "m.room.message"]
    assert bodies == [None if i == 1 else f"é {i}" for i in reversed(range(count))]

    # A stale copy (an outlier row read before its promotion) kept as its JSON is read afresh.
    store.remember(dataclasses.replace(fresh[ids[2]], stream_ordering=None, outlier=True))
    store._keep_as_json(ids[2])
    assert ids[2] in store._frozen
    room = await hs.room_store.get_room(room_id)
    assert room is not None
    page = await store.room_stream(
        room.room_nid, from_pos=hs.room_service.stream.current, to_pos=None, backwards=True, limit=count + 10
    )
    assert next(e for e in page if e.event_id == ids[2]) == fresh[ids[2]]


def test_kept_as_json_packed_in_one_bytes_object() -> None:
    """An event kept as its JSON is one bytes object of exactly its size (no tuple of
    fields, no int objects, no spare buffer beside it) and thaws to the very record
    it was, every field: absent (None) and present, non-ASCII, negative and large."""
    event = {"type": "m.room.message", "content": {"body": "é ☃ \u0000"}, "sender": "@a:b"}
    records = [
        StoredEvent(7, "$e", 3, None, None, None, True, None, None, None, None, dict(event)),
        StoredEvent(1 << 40, "$f", 2, -5, 11, 12, False, "rejected: é", "$redaction", "DÉVICE", "txn ☃", dict(event)),
        StoredEvent(2, "$g", 1, 0, 0, 1 << 62, False, None, "$r", None, "", {}),
    ]
    for ev in records:
        frozen = _freeze(ev)
        assert type(frozen) is bytes and len(frozen) < 200
        assert _thaw(ev.event_id, frozen) == ev
