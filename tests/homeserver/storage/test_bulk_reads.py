"""The reads an initial sync makes for many rooms at once answer exactly what the
one-room reads they replace do, on both engines: timeline pages, state snapshots
(from a cold cache and from a partly warm one), rooms, member lists, read receipts
and unread counts. And an initial sync over more rooms than one bulk batch sends
every room as the incremental path would see it."""

from __future__ import annotations

from typing import Any

from homeserver.rooms.heads import RoomHeads
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore
from tests.conftest import SERVER_NAME, Api, ClientFactory


async def _rooms(api: Api, owner: str, member: str, member_id: str, n: int) -> list[str]:
    """`n` rooms of `owner` joined by `member`, with a different number of messages
    each (some mentioning the member, so they notify and highlight), a name change in
    one (a state event between messages), and read receipts in some."""
    rooms = []
    for r in range(n):
        room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
        await api.post(f"rooms/{room}/join", {}, token=member)
        last = ""
        for i in range(r * 3):
            body = f"{member_id} look {i}" if i % 4 == 0 else f"message {i}"
            last = (await api.put(f"rooms/{room}/send/m.room.message/t{r}_{i}",
                                  {"msgtype": "m.text", "body": body}, token=owner))["event_id"]
            if i == 2:
                await api.put(f"rooms/{room}/state/m.room.name", {"name": f"room {r}"}, token=owner)
        if r % 2 and last:
            await api.post(f"rooms/{room}/receipt/m.read/{last}", {}, token=member)
        rooms.append(room)
    return rooms


async def test_pages_from_any_cache_are_the_stored_events(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    """`latest_in_rooms` reads the pages' places alone and the events' JSON only where
    the cache lacks them or holds them as they no longer are: from a cold cache, a partly
    warm one and one holding an event from before its redaction, each page is the
    stored events as a fresh read gives them."""
    api = await make_api(**db_overrides)
    hs = api.hs
    owner = (await api.register("owner"))["access_token"]
    reg = await api.register("member")
    room_ids = await _rooms(api, owner, reg["access_token"], reg["user_id"], 4)
    nids = [r.room_nid for r in [await hs.room_store.get_room(rid) for rid in room_ids] if r is not None]
    now = hs.room_service.stream.current

    def shown(events: list[Any]) -> list[tuple[str, int | None, str | None, dict[str, Any]]]:
        return [(e.event_id, e.stream_ordering, e.redacted_by, e.event) for e in events]

    async def expected(upto: int) -> dict[int, list[Any]]:
        fresh = EventStore(hs.db)
        return {
            nid: shown(await fresh.room_stream(nid, from_pos=upto, to_pos=None, backwards=True, limit=6))
            for nid in nids
        }

    cold, warm = EventStore(hs.db), EventStore(hs.db)
    for nid in nids[::2]:
        await warm.room_stream(nid, from_pos=now, to_pos=None, backwards=True, limit=3)
    for store in (cold, warm):
        pages = await store.latest_in_rooms(nids, now, 6)
        assert {nid: shown(page) for nid, page in pages.items()} == await expected(now)
        assert store.misses > 0
    assert warm.hits > 0

    # A message redacted after `warm` cached it: its page has it redacted.
    target = (await warm.latest_in_rooms([nids[-1]], now, 1))[nids[-1]][0]
    assert target.redacted_by is None and target.event["content"]
    await api.put(f"rooms/{room_ids[-1]}/redact/{target.event_id}/r1", {}, token=owner)
    now = hs.room_service.stream.current
    pages = await warm.latest_in_rooms(nids, now, 6)
    assert {nid: shown(page) for nid, page in pages.items()} == await expected(now)
    redacted = next(e for e in pages[nids[-1]] if e.event_id == target.event_id)
    assert redacted.redacted_by is not None


async def test_bulk_reads_match_one_room_reads(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    api = await make_api(**db_overrides)
    hs = api.hs
    owner = (await api.register("owner"))["access_token"]
    reg = await api.register("member")
    member, member_id = reg["access_token"], reg["user_id"]
    room_ids = await _rooms(api, owner, member, member_id, 6)
    rooms = [r for r in [await hs.room_store.get_room(rid) for rid in room_ids] if r is not None]
    nids = [r.room_nid for r in rooms]
    now = hs.room_service.stream.current

    # Timeline pages, at the present and in the past, for several limits.
    for upto in (now, now - 7):
        for limit in (1, 4, 11, 50):
            pages = await hs.event_store.latest_in_rooms(nids, upto, limit)
            for nid in nids:
                one = await hs.event_store.room_stream(nid, from_pos=upto, to_pos=None, backwards=True, limit=limit)
                assert [e.event_id for e in pages[nid]] == [e.event_id for e in one], (upto, limit, nid)

    # Snapshots: every event's state before and after, from a cold store, then from one
    # that already holds some of them (ancestors of the others among them).
    snapshots: set[int] = set()
    for nid in nids:
        for e in await hs.event_store.room_stream(nid, from_pos=now, to_pos=None, backwards=True, limit=100):
            snapshots.update(s for s in (e.state_before, e.state_after) if s is not None)
    reference = StateStore(hs.db)
    want = {s: await reference.get_state(s) for s in snapshots}
    cold = StateStore(hs.db)
    assert await cold.preload(snapshots) == want
    assert {s: await cold.get_state(s) for s in snapshots} == want
    warm = StateStore(hs.db)
    for s in sorted(snapshots)[::3]:
        await warm.get_state(s)
    assert await warm.preload(snapshots) == want

    # Rooms, member lists, read receipts and unread counts.
    fresh_rooms = (await hs.room_store.rooms_by_nids(nids))
    assert {nid: fresh_rooms[nid].room_id for nid in nids} == {r.room_nid: r.room_id for r in rooms}
    members = await hs.room_store.members_of_rooms(nids)
    for nid in nids:
        assert sorted(members[nid]) == sorted(await hs.room_store.members(nid))

    # Heads, newest positions and local joined members, as the per-room reads give them.
    heads = await hs.room_store.heads_of_rooms(nids)
    positions = await hs.event_positions.last_positions(nids)
    for nid in nids:
        extremities, snapshot = heads[nid]
        assert sorted(extremities) == sorted(await hs.room_store.forward_extremities(nid))
        assert snapshot == await hs.room_store.head_snapshot(nid)
        assert positions[nid] == await hs.event_positions.last_position(nid) > 0
    cold_heads = RoomHeads(hs.room_store, hs.event_store)
    await cold_heads.preload(rooms)
    for room in rooms:
        want_head = await RoomHeads(hs.room_store, hs.event_store).get(room)
        assert (await cold_heads.get(room)) == want_head and want_head.snapshot is not None
    hs.room_activity._joined_local.clear()
    hs.room_activity._members.clear()
    await hs.room_activity.preload_members(rooms)
    for room in rooms:
        assert hs.room_activity._joined_local[room.room_nid] == {
            u for u, _, _ in await hs.room_store.members(room.room_nid, "join")
        } == {f"@owner:{SERVER_NAME}", member_id}
    receipts = await hs.receipts.store.user_receipts_in_rooms(member_id, room_ids)
    for rid in room_ids:
        assert receipts[rid] == await hs.receipts.store.user_receipts(rid, member_id)
    assert any(receipts.values())
    store = hs.push_actions.store
    starts = {nid: i for i, nid in enumerate(nids)}
    counts = await store.counts_in_rooms(member_id, starts, now)
    for nid in nids:
        assert counts[nid] == await store.counts_for(member_id, nid, starts[nid], now)
    assert any(n for n, _ in counts.values()) and any(h for _, h in counts.values())


async def test_initial_sync_in_batches(make_api: ClientFactory, monkeypatch: Any) -> None:
    """An initial sync reads its rooms in bulk batches, each batch's pages read while the
    batch before it is computed: with batches of two rooms, every room's entry is what
    the room's own reads, without the bulk ones, give."""
    from homeserver.sync.streams import room_events

    api = await make_api()
    owner = (await api.register("owner"))["access_token"]
    reg = await api.register("member")
    member, member_id = reg["access_token"], reg["user_id"]
    await _rooms(api, owner, member, member_id, 5)
    filters = ["", "&filter=" + '{"room":{"timeline":{"limit":12},"state":{"lazy_load_members":true}}}']

    async def no_bulk_reads(self: Any, req: Any, batch: Any, pages: Any) -> None:
        return None  # the pages read ahead are left unused: each room reads its own

    with monkeypatch.context() as m:
        m.setattr(room_events.RoomEventsStream, "_preload", no_bulk_reads)
        alone = [_without_age(await api.get(f"sync?timeout=0{f}", token=member)) for f in filters]
    monkeypatch.setattr(room_events, "_PRELOAD_ROOMS", 2)
    for f, want in zip(filters, alone, strict=True):
        body = _without_age(await api.get(f"sync?timeout=0{f}", token=member))
        assert body["rooms"] == want["rooms"]
        assert len(body["rooms"]["join"]) == 5
    limited = [e["timeline"]["limited"] for e in alone[1]["rooms"]["join"].values()]
    assert any(limited) and not all(limited)


def _without_age(value: Any) -> Any:
    """A response without `unsigned.age` (it moves with the clock between requests)."""
    if isinstance(value, dict):
        return {k: _without_age(v) for k, v in value.items() if k != "age"}
    if isinstance(value, list):
        return [_without_age(v) for v in value]
    return value
