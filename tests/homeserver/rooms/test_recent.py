"""The window of rooms' newest events (rooms/recent.py) answers exactly what the
database does, for every range, on both engines; and many readers of one room
cost one read per event, not one per reader."""

from __future__ import annotations

from typing import Any

from homeserver.records.events import StoredEvent
from homeserver.rooms.creation import create_room
from homeserver.rooms.recent import RecentEvents
from homeserver.server import HomeServer
from tests.conftest import Api, HsFactory

ALICE = "@alice:test.local"


async def _from_db(hs: HomeServer, room_nid: int, after: int, upto: int) -> list[StoredEvent]:
    return await hs.event_store.room_stream(room_nid, from_pos=after, to_pos=upto, backwards=False, limit=10_000)


def _ids(events: list[StoredEvent] | None) -> list[tuple[str, str | None]] | None:
    return None if events is None else [(e.event_id, e.redacted_by) for e in events]


async def test_every_range_matches_the_database(db_overrides: dict[str, Any], make_hs: HsFactory) -> None:
    hs = await make_hs(**db_overrides)
    await hs.registration.create_account(ALICE, "password-1234", login=False)
    room = await hs.room_store.get_room(await create_room(hs, ALICE, {}))
    other = await hs.room_store.get_room(await create_room(hs, ALICE, {}))
    assert room is not None and other is not None
    rs = hs.room_service
    sent = []
    for i in range(30):
        sent.append(await rs.create_event(room, ALICE, "m.room.message", {"msgtype": "m.text", "body": str(i)}))
        # Another room's events interleave on the same stream.
        await rs.create_event(other, ALICE, "m.room.message", {"msgtype": "m.text", "body": str(i)})
    # A redaction after the event was read into the window shows in what it answers.
    recent = RecentEvents(hs.event_store, per_room=12)
    now = rs.stream.current
    start = sent[0].stream_ordering or 0
    assert _ids(await recent.between(room.room_nid, now - 3, now)) == _ids(await _from_db(hs, room.room_nid, now - 3, now))
    await rs.create_event(room, ALICE, "m.room.redaction", {}, redacts=sent[-1].event_id)
    now = rs.stream.current
    for after, upto in [(now - 5, now), (now - 20, now - 2), (start, now), (start + 7, now - 1), (now, now)]:
        got = await recent.between(room.room_nid, after, upto)
        want = await _from_db(hs, room.room_nid, after, upto)
        if got is not None:  # None: beyond what the window keeps, read by the caller
            assert _ids(got) == _ids(want), (after, upto)
    # A range read once is answered again from memory.
    hits = recent.stats()["hits"]
    assert _ids(await recent.between(room.room_nid, now - 2, now)) == _ids(await _from_db(hs, room.room_nid, now - 2, now))
    assert recent.stats()["hits"] == hits + 1
    assert await recent.between(room.room_nid, 0, now) is None  # an initial sync's range
    recent.forget_room(room.room_nid)
    assert recent.stats()["rooms"] == 0


async def test_many_readers_share_one_read(api: Api) -> None:
    hs = api.hs
    owner = (await api.register("owner"))["access_token"]
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
    tokens = []
    for i in range(6):
        token = (await api.register(f"reader{i}"))["access_token"]
        await api.post(f"rooms/{room}/join", {}, token=token)
        tokens.append(token)
    readers = [(token, (await api.get("sync", token=token))["next_batch"]) for token in tokens]
    for round_ in range(3):
        event_id = (await api.put(f"rooms/{room}/send/m.room.message/m{round_}",
                                  {"msgtype": "m.text", "body": f"hello {round_}"}, token=owner))["event_id"]
        misses = hs.recent_events.stats()["misses"]
        for i, (token, since) in enumerate(readers):
            body = await api.get(f"sync?since={since}", token=token)
            joined = body["rooms"]["join"][room]
            assert [e["event_id"] for e in joined["timeline"]["events"]] == [event_id]
            assert joined["unread_notifications"]["notification_count"] == round_ + 1
            readers[i] = (token, body["next_batch"])
        # One read of the room for all six readers (their timelines and unread counts).
        assert hs.recent_events.stats()["misses"] - misses <= 1
    assert 'accord_cache_hits_total{cache="room_recent_events"}' in hs.metrics.render(hs)


async def test_key_counts_follow_uploads_and_claims(api: Api) -> None:
    alice = await api.register("alice")
    token, device = alice["access_token"], alice["device_id"]
    assert (await api.get("sync", token=token))["device_one_time_keys_count"]["signed_curve25519"] == 0
    keys = {f"signed_curve25519:k{i}": {"key": f"key{i}"} for i in range(3)}
    await api.post("keys/upload", {"one_time_keys": keys}, token=token)
    assert (await api.get("sync", token=token))["device_one_time_keys_count"]["signed_curve25519"] == 3
    bob = (await api.register("bob"))["access_token"]
    await api.post("keys/claim", {"one_time_keys": {"@alice:test.local": {device: "signed_curve25519"}}}, token=bob)
    body = await api.get("sync", token=token)
    assert body["device_one_time_keys_count"]["signed_curve25519"] == 2
    assert (await api.get("sync", token=token))["device_one_time_keys_count"]["signed_curve25519"] == 2
    assert api.hs.keys.cache_stats()["hits"] >= 1


async def test_cached_members_follow_joins_and_leaves(api: Api) -> None:
    """Summaries and push rules' member counts come from per-room caches that each
    membership change drops before its stream position is visible."""
    hs = api.hs
    alice = (await api.register("alice"))["access_token"]
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    since = (await api.get("sync", token=alice))["next_batch"]
    expected = 1
    for i in range(3):
        bob = (await api.register(f"bob{i}"))["access_token"]
        await api.post(f"rooms/{room}/join", {}, token=bob)
        expected += 1
        body = await api.get(f"sync?since={since}", token=alice)
        since = body["next_batch"]
        assert body["rooms"]["join"][room]["summary"]["m.joined_member_count"] == expected
        record = await hs.room_store.get_room(room)
        assert record is not None
        assert await hs.room_service.joined_member_count(record) == expected
    await api.post(f"rooms/{room}/leave", {}, token=bob)
    body = await api.get(f"sync?since={since}", token=alice)
    assert body["rooms"]["join"][room]["summary"]["m.joined_member_count"] == expected - 1
    assert hs.room_activity.member_stats()["hits"] >= 0


async def test_seeded_window_matches_the_database(make_hs: HsFactory) -> None:
    """A window started from a timeline page (an initial sync's) answers like the database."""
    hs = await make_hs()
    await hs.registration.create_account(ALICE, "password-1234", login=False)
    room = await hs.room_store.get_room(await create_room(hs, ALICE, {}))
    assert room is not None
    for i in range(25):
        await hs.room_service.create_event(room, ALICE, "m.room.message", {"msgtype": "m.text", "body": str(i)})
    now = hs.room_service.stream.current
    for page in (10, 100):  # a full page (more exist below it), and the room's whole history
        recent = RecentEvents(hs.event_store)
        batch = await hs.event_store.room_stream(room.room_nid, from_pos=now, to_pos=None, backwards=True, limit=page)
        oldest = (batch[-1].stream_ordering or 1) - 1 if len(batch) == page else 0
        recent.seed(room.room_nid, oldest, now, batch)
        for after in (now - 12, now - 9, now - 3, 1):
            got = await recent.between(room.room_nid, after, now)
            if got is not None:
                assert _ids(got) == _ids(await _from_db(hs, room.room_nid, after, now)), (page, after)
        assert recent.stats()["hits"] >= 1


async def test_windows_grow_from_what_the_writer_tells(db_overrides: dict[str, Any], make_hs: HsFactory) -> None:
    """The server's window is told of each event as it is committed, so a reader woken
    by a send is answered without a read, and still exactly as the database answers
    (two rooms interleaving on the stream, local messages, state and redactions)."""
    hs = await make_hs(**db_overrides)
    await hs.registration.create_account(ALICE, "password-1234", login=False)
    room = await hs.room_store.get_room(await create_room(hs, ALICE, {}))
    other = await hs.room_store.get_room(await create_room(hs, ALICE, {}))
    assert room is not None and other is not None
    rs, recent = hs.room_service, hs.recent_events
    last = rs.stream.current
    assert await recent.between(room.room_nid, last - 1, last) is not None  # the window starts here
    for i in range(12):
        if i % 4 == 3:
            await rs.create_event(room, ALICE, "m.room.topic", {"topic": str(i)}, state_key="")
        elif i % 4 == 2:
            target = await rs.create_event(room, ALICE, "m.room.message", {"msgtype": "m.text", "body": "x"})
            await rs.create_event(room, ALICE, "m.room.redaction", {}, redacts=target.event_id)
        else:
            await rs.create_event(room, ALICE, "m.room.message", {"msgtype": "m.text", "body": str(i)})
        await rs.create_event(other, ALICE, "m.room.message", {"msgtype": "m.text", "body": str(i)})
        now = rs.stream.current
        misses = recent.stats()["misses"]
        got = await recent.between(room.room_nid, last, now)
        assert _ids(got) == _ids(await _from_db(hs, room.room_nid, last, now)), i
        assert recent.stats()["misses"] == misses, "read the database for what it was told"
        last = now
    assert recent.stats()["told_hits"] >= 12


async def test_events_told_before_a_window_existed_are_read(make_hs: HsFactory) -> None:
    """What was told while a room had no window, or more than a window keeps while
    nobody read, is not in what the window was told: those ranges are read."""
    hs = await make_hs()
    await hs.registration.create_account(ALICE, "password-1234", login=False)
    room = await hs.room_store.get_room(await create_room(hs, ALICE, {}))
    assert room is not None
    rs = hs.room_service
    before = rs.stream.current
    first = await rs.create_event(room, ALICE, "m.room.message", {"msgtype": "m.text", "body": "a"})
    pos = first.stream_ordering
    assert pos is not None
    recent = RecentEvents(hs.event_store, per_room=4)
    recent.follow_writer()
    recent.placed(room.room_nid, pos, first.nid)  # no window yet
    assert await recent.between(room.room_nid, before - 1, before) is not None  # the window starts before it
    assert _ids(await recent.between(room.room_nid, before, pos)) == _ids([first])
    # More events than a window keeps, told while nobody reads: they are read.
    sent = []
    for i in range(6):
        stored = await rs.create_event(room, ALICE, "m.room.message", {"msgtype": "m.text", "body": str(i)})
        assert stored.stream_ordering is not None
        recent.placed(room.room_nid, stored.stream_ordering, stored.nid)
        sent.append(stored)
    now = rs.stream.current
    got = await recent.between(room.room_nid, now - 2, now)
    assert _ids(got) == _ids(await _from_db(hs, room.room_nid, now - 2, now))
    # A window that was never told (not following the writer) reads every range.
    silent = RecentEvents(hs.event_store)
    assert await silent.between(room.room_nid, before - 1, before) is not None
    assert _ids(await silent.between(room.room_nid, before, now)) == _ids(await _from_db(hs, room.room_nid, before, now))


async def test_newest_matches_the_database(make_hs: HsFactory) -> None:
    """An initial sync's first page from a room's window (`newest`) is the database's
    newest events, once the window holds enough of them; None before."""
    hs = await make_hs()
    await hs.registration.create_account(ALICE, "password-1234", login=False)
    room = await hs.room_store.get_room(await create_room(hs, ALICE, {}))
    assert room is not None
    rs = hs.room_service
    recent: RecentEvents = hs.recent_events
    for i in range(5):
        await rs.create_event(room, ALICE, "m.room.message", {"msgtype": "m.text", "body": str(i)})
    first = rs.stream.current
    assert recent.newest(room.room_nid, first, 3) is None  # no window yet
    assert await recent.between(room.room_nid, first - 4, first) is not None
    for i in range(5):  # told by the writer: the window grows without a read
        await rs.create_event(room, ALICE, "m.room.message", {"msgtype": "m.text", "body": f"more {i}"})
    now = rs.stream.current
    for upto in (first, first + 2, now):
        for count in (1, 3, 4):
            page = (await hs.event_store.latest_in_rooms([room.room_nid], upto, count))[room.room_nid]
            assert recent.newest(room.room_nid, upto, count) == [e.nid for e in reversed(page)]
    assert recent.newest(room.room_nid, first, 5) is None  # more than the window holds there
    assert recent.newest(room.room_nid, now, 100) is None
