"""Many readers of one room: what their incremental syncs share is computed once,
and each still gets exactly its own answer (on both engines).

The unread counts of a busy room's readers come from the room's tally of recent
notifications (sync/room_tallies.py), read once per event for all of them; here
every reader's counts are checked, after every kind of event that moves them,
against a recount from the database.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from homeserver.storage.push_actions import EventNotifications
from homeserver.sync.shared_sections import SharedTimelines
from homeserver.sync.streams.room_events import RoomEventsStream
from homeserver.sync.tokens import SyncToken
from homeserver.sync.unread import UnreadCounter
from tests.conftest import Api, ClientFactory, FakeClock
from tests.homeserver.api.reading_helpers import create, join, set_visibility, user
from tests.homeserver.remote_events import REMOTE_USER, receive, remote_event

READERS = 4


async def _recount(api: Api, user_id: str, room_id: str, now: int) -> dict[str, int]:
    """The user's unread counts at `now`, counted afresh in the database."""
    hs = api.hs
    fresh = UnreadCounter(receipts=hs.receipts, store=hs.push_actions.store)
    room = await hs.room_store.get_room(room_id)
    assert room is not None
    m = next(m for m in await hs.sync.memberships(user_id) if m.room_id == room_id)
    return await fresh.counts(user_id, room, m.stream_ordering, now)


async def _everyone_syncs(api: Api, room_id: str, readers: list[dict[str, Any]], since: list[str]) -> None:
    """Each reader syncs on from its token (`since`, moved on) and gets the room's unread
    counts exactly as a recount in the database gives them."""
    for i, reader in enumerate(readers):
        body = await api.get(f"sync?since={since[i]}", token=reader["access_token"])
        since[i] = body["next_batch"]
        got = body["rooms"]["join"][room_id]["unread_notifications"]
        want = await _recount(api, reader["user_id"], room_id, SyncToken.parse(since[i]).events)
        assert got == want, (i, got, want)


async def _room_with_readers(
    api: Api, n: int
) -> tuple[RoomEventsStream, SharedTimelines, dict[str, Any], str, list[dict[str, Any]]]:
    """The rooms stream and its shared timelines, and a public room of "owner" joined by `n`
    readers, the last of whom ignores the owner (their accounts as registered)."""
    stream = next(s for s in api.hs.sync.streams if isinstance(s, RoomEventsStream))
    shared = stream.shared
    assert shared is not None
    owner_account = await api.register("owner")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner_account["access_token"]))["room_id"]
    readers = [await api.register(f"reader{i}") for i in range(n)]
    for r in readers:
        await api.post(f"rooms/{room}/join", {}, token=r["access_token"])
    await api.put(f"user/{readers[-1]['user_id']}/account_data/m.ignored_user_list",
                  {"ignored_users": {owner_account["user_id"]: {}}}, token=readers[-1]["access_token"])
    return stream, shared, owner_account, room, readers


async def test_unread_counts_of_many_readers(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    api = await make_api(**db_overrides)
    hs = api.hs
    owner = (await api.register("owner"))["access_token"]
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
    readers: list[dict[str, Any]] = []
    for i in range(READERS):
        account = await api.register(f"reader{i}")
        await api.post(f"rooms/{room}/join", {}, token=account["access_token"])
        readers.append(account)
    since = [(await api.get("sync", token=r["access_token"]))["next_batch"] for r in readers]

    async def send(token: str, txn: str, content: dict[str, Any]) -> str:
        return (await api.put(f"rooms/{room}/send/m.room.message/{txn}", content, token=token))["event_id"]

    async def everyone_syncs() -> None:
        await _everyone_syncs(api, room, readers, since)

    first = await send(owner, "a", {"msgtype": "m.text", "body": "hello"})
    await everyone_syncs()
    await send(owner, "b", {"msgtype": "m.notice", "body": "a notice: notifies nobody"})
    await send(owner, "c", {"msgtype": "m.text", "body": "to you", "m.mentions": {"user_ids": [readers[0]["user_id"]]}})
    await everyone_syncs()  # two events in one range
    await send(readers[1]["access_token"], "d", {"msgtype": "m.text", "body": "my own never counts for me"})
    await everyone_syncs()
    # A receipt moves one reader's start; a redaction removes everyone's row of an event.
    await api.post(f"rooms/{room}/receipt/m.read/{first}", {}, token=readers[2]["access_token"])
    await everyone_syncs()
    await api.put(f"rooms/{room}/redact/{first}/r1", {}, token=owner)
    await everyone_syncs()
    for n in range(3):
        await send(owner, f"e{n}", {"msgtype": "m.text", "body": f"more {n}"})
        await everyone_syncs()
    tallies = hs.unread.tallies
    assert tallies is not None
    # Rows nobody told (as after a restart) are read from the database, once for all.
    await send(owner, "f", {"msgtype": "m.text", "body": "untold", "m.mentions": {"user_ids": [readers[3]["user_id"]]}})
    told_before = tallies.told_hits
    assert told_before > 0  # the events before were not read at all: the writer told them
    tallies._told.clear()
    await everyone_syncs()
    assert tallies.told_hits == told_before
    stats = tallies.stats()
    # Each event's rows were read once for the room: most readers counted from memory.
    assert stats["hits"] > stats["misses"], stats
    assert 'accord_cache_hits_total{cache="unread_room_tallies"}' in hs.metrics.render(hs)


async def test_woken_readers_count_what_the_writer_told(
    db_overrides: dict[str, Any], make_api: ClientFactory
) -> None:
    """The rows each event's write stored are told to the tallies, so readers woken by
    a send count without reading them: after every kind of event that writes rows
    (room-wide, a mention's own row, an ignoring reader's exception, none at all),
    no read of the rows, and each reader's counts are the database's. An entry told
    for another event than the one committed at its position is not trusted."""
    api = await make_api(**db_overrides)
    hs = api.hs
    tallies = hs.unread.tallies
    assert tallies is not None
    _, _, owner, room, readers = await _room_with_readers(api, READERS)
    since = [(await api.get("sync", token=r["access_token"]))["next_batch"] for r in readers]
    store = hs.push_actions.store
    reads: list[list[int]] = []
    read_rows = store.rows_for_events

    async def counted(nids: Any) -> Any:
        reads.append(list(nids))
        return await read_rows(nids)

    store.rows_for_events = counted  # type: ignore[method-assign]

    async def everyone_syncs() -> None:
        await _everyone_syncs(api, room, readers, since)

    contents = [
        {"msgtype": "m.text", "body": "hello"},
        {"msgtype": "m.notice", "body": "notifies nobody"},
        {"msgtype": "m.text", "body": "you", "m.mentions": {"user_ids": [readers[0]["user_id"]]}},
        {"msgtype": "m.text", "body": f"hi {readers[1]['user_id'].split(':')[0][1:]}"},  # by localpart
    ]
    for n, content in enumerate(contents):
        await api.put(f"rooms/{room}/send/m.room.message/t{n}", content, token=owner["access_token"])
        await everyone_syncs()
    assert reads == [] and tallies.stats()["told_hits"] == len(contents)
    # A reader's own message, then two events in one range.
    await api.put(f"rooms/{room}/send/m.room.message/own", {"msgtype": "m.text", "body": "mine"},
                  token=readers[1]["access_token"])
    for n in range(2):
        await api.put(f"rooms/{room}/send/m.room.message/u{n}", {"msgtype": "m.text", "body": "x"},
                      token=owner["access_token"])
    await everyone_syncs()
    assert reads == []

    # What was told for a position names another event: the rows are read instead.
    event_id = (await api.put(f"rooms/{room}/send/m.room.message/w", {"msgtype": "m.text", "body": "w"},
                              token=owner["access_token"]))["event_id"]
    stored = await hs.event_store.get_event(event_id)
    assert stored is not None and stored.stream_ordering is not None
    tallies.told(stored.room_nid, stored.stream_ordering, stored.nid + 1_000, EventNotifications([], []))
    await everyone_syncs()
    assert reads == [[stored.nid]]


async def test_a_reader_far_behind_counts_in_the_database(api: Api) -> None:
    """A token older than the room's tally: counted in the database, the same answer."""
    hs = api.hs
    owner = (await api.register("owner"))["access_token"]
    reader = await api.register("reader")
    late = await api.register("late")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=late["access_token"])
    old = (await api.get("sync", token=late["access_token"]))["next_batch"]
    await api.post(f"rooms/{room}/join", {}, token=reader["access_token"])  # the tally starts after `old`
    since = (await api.get("sync", token=reader["access_token"]))["next_batch"]
    for n in range(4):
        await api.put(f"rooms/{room}/send/m.room.message/m{n}", {"msgtype": "m.text", "body": str(n)}, token=owner)
        since = (await api.get(f"sync?since={since}", token=reader["access_token"]))["next_batch"]
    assert hs.unread.tallies is not None
    misses = hs.unread.tallies.stats()["misses"]
    body = await api.get(f"sync?since={old}", token=late["access_token"])
    assert hs.unread.tallies.stats()["misses"] == misses + 1
    now = SyncToken.parse(body["next_batch"]).events
    assert body["rooms"]["join"][room]["unread_notifications"] == await _recount(api, late["user_id"], room, now)
    assert body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 4


def test_token_fields_all_written_and_compared() -> None:
    """`SyncToken.__str__` names the fields one by one (it runs on every woken /sync):
    a field added to the token must be added there, or tokens stop round-tripping."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(SyncToken)]
    token = SyncToken(**{name: i + 1 for i, name in enumerate(names)})
    assert SyncToken.parse(str(token)) == token
    for name in names:
        moved = token.advance(**{name: getattr(token, name) + 1})
        assert SyncToken.parse(str(moved)) == moved != token, name


async def test_readers_share_one_timeline_and_keep_their_own_view(api: Api) -> None:
    """Readers joined since before the range, ignoring nobody, in a room of shared
    history share one timeline; the sending device alone sees its transaction ID; a
    reader who ignores the sender, one with a filter, and readers of a room whose
    history is visible to members only get their own, each the same as computed alone."""
    _, shared, owner_account, room, readers = await _room_with_readers(api, 4)
    owner = owner_account["access_token"]
    only_notices = quote('{"room":{"timeline":{"types":["m.notice"]}}}')
    owner_since = (await api.get("sync", token=owner))["next_batch"]
    since = [(await api.get("sync", token=r["access_token"]))["next_batch"] for r in readers]

    sent = []
    for n in range(2):
        sent.append((await api.put(f"rooms/{room}/send/m.room.message/t{n}",
                                   {"msgtype": "m.text", "body": f"text {n}"}, token=owner))["event_id"])
    reply = (await api.put(f"rooms/{room}/send/m.room.message/r0", {"msgtype": "m.text", "body": "me too"},
                           token=readers[0]["access_token"]))["event_id"]
    before = shared.stats()
    bodies = [await api.get(f"sync?since={s}", token=r["access_token"]) for r, s in zip(readers, since, strict=True)]
    after = shared.stats()
    timelines = [b["rooms"]["join"][room]["timeline"]["events"] for b in bodies]
    assert [e["event_id"] for e in timelines[1]] == [*sent, reply]
    assert timelines[1] == timelines[2]  # the same JSON, built once
    assert after["hits"] - before["hits"] >= 1 and after["misses"] - before["misses"] == 1
    # The sender's device sees its transaction ID on its own event only.
    mine = {e["event_id"]: e["unsigned"].get("transaction_id") for e in timelines[0]}
    assert mine == {sent[0]: None, sent[1]: None, reply: "r0"}
    assert all("transaction_id" not in e["unsigned"] for e in timelines[1])
    # The ignoring reader sees none of the owner's messages.
    assert [e["event_id"] for e in timelines[3]] == [reply]
    # The owner's own device, with a filter of its own: a different section.
    body = await api.get(f"sync?since={owner_since}&filter={only_notices}", token=owner)
    assert room not in body.get("rooms", {}).get("join", {}) or not body["rooms"]["join"][room]["timeline"]["events"]

    # History visible to members only: what each sees hangs on their membership at each
    # event; readers joined at every event share the section (and see the same events).
    await api.put(f"rooms/{room}/state/m.room.history_visibility", {"history_visibility": "joined"}, token=owner)
    since = [b["next_batch"] for b in bodies]
    bodies = [await api.get(f"sync?since={s}", token=r["access_token"]) for r, s in zip(readers, since, strict=True)]
    since = [b["next_batch"] for b in bodies]
    event_id = (await api.put(f"rooms/{room}/send/m.room.message/j0", {"msgtype": "m.text", "body": "joined only"},
                              token=owner))["event_id"]
    before = shared.stats()
    bodies = [await api.get(f"sync?since={s}", token=r["access_token"]) for r, s in zip(readers[:3], since[:3], strict=True)]
    assert all([e["event_id"] for e in b["rooms"]["join"][room]["timeline"]["events"]] == [event_id] for b in bodies)
    after = shared.stats()
    assert after["personal"] == before["personal"] and after["hits"] - before["hits"] == 2


async def test_tallies_bounded_still_count_exactly(api: Api) -> None:
    """Tallies trimmed to a few rows and dropped for another room's still give every
    reader the counts the database gives (what they no longer hold is counted there)."""
    hs = api.hs
    tallies = hs.unread.tallies
    assert tallies is not None
    tallies.per_room, tallies.max_rows = 4, 6
    owner = (await api.register("owner"))["access_token"]
    rooms = [(await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"] for _ in range(2)]
    readers = [await api.register(f"reader{i}") for i in range(3)]
    for room in rooms:
        for r in readers:
            await api.post(f"rooms/{room}/join", {}, token=r["access_token"])
    since = [(await api.get("sync", token=r["access_token"]))["next_batch"] for r in readers]
    for n in range(6):
        for room in rooms:
            await api.put(f"rooms/{room}/send/m.room.message/b{n}", {"msgtype": "m.text", "body": str(n)}, token=owner)
        # Readers lag by turns: one of them syncs only every third round.
        for i, r in enumerate(readers):
            if i == 2 and n % 3:
                continue
            body = await api.get(f"sync?since={since[i]}", token=r["access_token"])
            since[i] = body["next_batch"]
            now = SyncToken.parse(since[i]).events
            for room in rooms:
                got = body["rooms"]["join"][room]["unread_notifications"]
                assert got == await _recount(api, r["user_id"], room, now), (n, i, room)
        assert tallies.stats()["entries"] <= 6
    assert tallies.stats()["hits"] > 0 and tallies.stats()["misses"] > 0


async def test_a_stored_filter_is_parsed_once_and_errors_stay(api: Api) -> None:
    """Each long poll names its client's filter: a stored one is parsed once and applied
    every time; an unknown ID and an invalid inline filter are still refused."""
    alice = await api.register("alice")
    token = alice["access_token"]
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=token))["room_id"]
    filter_id = (await api.post(f"user/{alice['user_id']}/filter",
                                {"room": {"timeline": {"types": ["m.room.message"]}}}, token=token))["filter_id"]
    since = (await api.get(f"sync?filter={filter_id}", token=token))["next_batch"]
    for n, event_type in enumerate(["org.example.other", "m.room.message"]):
        await api.put(f"rooms/{room}/send/{event_type}/f{n}", {"msgtype": "m.text", "body": "hi"}, token=token)
        body = await api.get(f"sync?since={since}&filter={filter_id}", token=token)
        since = body["next_batch"]
        events = body["rooms"]["join"][room]["timeline"]["events"]
        assert [e["type"] for e in events] == ([] if n == 0 else ["m.room.message"])
    assert (alice["user_id"], filter_id) in api.hs.filters._parsed
    _, err = await api.request("GET", "sync?filter=424242", token=token, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    invalid = quote('{"room": 1}')
    _, err = await api.request("GET", f"sync?filter={invalid}", token=token, expect=400)
    assert err["errcode"] == "M_BAD_JSON"


async def test_readers_woken_together_share_one_build(make_api: ClientFactory) -> None:
    """Long polls woken by the same event: one timeline built and one read of the new
    notifications for all of them, and each answer exact. (Presence off: readers coming
    online would be news to each other's long polls.)"""
    import asyncio

    api = await make_api(presence={"enabled": False})
    hs = api.hs
    stream = next(s for s in hs.sync.streams if isinstance(s, RoomEventsStream))
    assert stream.shared is not None and hs.unread.tallies is not None
    owner = (await api.register("owner"))["access_token"]
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
    readers = [await api.register(f"reader{i}") for i in range(6)]
    for r in readers:
        await api.post(f"rooms/{room}/join", {}, token=r["access_token"])
    since = [(await api.get("sync", token=r["access_token"]))["next_batch"] for r in readers]
    for n in range(2):
        polls = [
            asyncio.ensure_future(api.get(f"sync?since={s}&timeout=20000", token=r["access_token"]))
            for r, s in zip(readers, since, strict=True)
        ]
        for _ in range(1000):
            if hs.notifier.waiting_users() == len(readers) or any(p.done() for p in polls):
                break
            await asyncio.sleep(0.01)
        assert hs.notifier.waiting_users() == len(readers)
        built, counted = stream.shared.stats()["misses"], hs.unread.tallies.stats()["misses"]
        event_id = (await api.put(f"rooms/{room}/send/m.room.message/w{n}", {"msgtype": "m.text", "body": "all"},
                                  token=owner))["event_id"]
        bodies = await asyncio.gather(*polls)
        assert stream.shared.stats()["misses"] == built + 1
        assert hs.unread.tallies.stats()["misses"] == counted
        for i, (r, body) in enumerate(zip(readers, bodies, strict=True)):
            since[i] = body["next_batch"]
            joined = body["rooms"]["join"][room]
            assert [e["event_id"] for e in joined["timeline"]["events"]] == [event_id]
            now = SyncToken.parse(since[i]).events
            assert joined["unread_notifications"] == await _recount(api, r["user_id"], room, now)
            assert joined["unread_notifications"]["notification_count"] == n + 1


async def test_shared_path_answers_exactly_what_each_reader_computes_alone(
    db_overrides: dict[str, Any], make_api: ClientFactory, clock: FakeClock
) -> None:
    """Readers long-polling one room are woken together and answered from the shared
    section (its timeline encoded once and embedded into each response); each body,
    field by field, is the one the same reader gets with nothing shared: the sending
    device (its transaction ID), a reader with a timeline filter, one who ignores the
    sender, plain readers; a message, a topic change, a join and a display name change
    (the summary is due), an edit and a redaction; under history visible to members
    only (joined, invited) as under shared."""
    # Presence (per user, moved by the sends themselves) off: the bodies compared are
    # computed a moment apart.
    api = await make_api(clock=clock, presence={"enabled": False}, **db_overrides)
    hs = api.hs
    stream, shared, owner_account, room, readers = await _room_with_readers(api, 5)
    owner = owner_account["access_token"]
    no_notices = quote('{"room":{"timeline":{"not_types":["m.room.topic"]}}}')
    queries = ["", "", "", f"&filter={no_notices}", ""]  # reader 3 has a filter of its own
    since = [
        (await api.get(f"sync?set_presence=offline{q}", token=r["access_token"]))["next_batch"]
        for r, q in zip(readers, queries, strict=True)
    ]

    async def round_of(send: Any, *, waiting: bool, rooms_only: bool = False) -> list[Any]:
        """`waiting`: the readers long-poll before the send (one event wakes them all);
        else the sends come first and the readers then ask all at once. `rooms_only`:
        compare the rooms sections (a join moves device lists a moment after it)."""
        before = shared.stats()
        if not waiting:
            await send()
        polls = [
            asyncio.ensure_future(api.get(f"sync?since={s}&timeout=60000&set_presence=offline{q}",
                                          token=r["access_token"]))
            for r, s, q in zip(readers, since, queries, strict=True)
        ]
        if waiting:
            for _ in range(3000):  # every reader waits before the send
                if hs.notifier.waiting_users() == len(readers):
                    break
                await asyncio.sleep(0.01)
            clock.advance(1000)
            await send()
        woken = await asyncio.gather(*polls)
        assert shared.stats()["hits"] > before["hits"]  # some readers took another's section
        shared_by_then, stream.shared = stream.shared, None  # each computes its own now
        try:
            for i, (r, s, q) in enumerate(zip(readers, since, queries, strict=True)):
                alone = await api.get(f"sync?since={s}&set_presence=offline{q}", token=r["access_token"])
                if rooms_only:
                    assert woken[i]["rooms"] == alone["rooms"], i
                else:
                    assert woken[i] == alone, i
        finally:
            stream.shared = shared_by_then
        for i, body in enumerate(woken):
            since[i] = body["next_batch"]
        return woken

    sent = [0]

    async def message() -> None:
        sent[0] += 1
        sender = readers[1]["access_token"] if sent[0] == 2 else owner
        await api.put(f"rooms/{room}/send/m.room.message/m{sent[0]}", {"msgtype": "m.text", "body": "hello"},
                      token=sender)

    first: list[str] = []

    async def several() -> None:
        first.append((await api.put(f"rooms/{room}/send/m.room.message/s1", {"msgtype": "m.text", "body": "one"},
                                    token=owner))["event_id"])
        await api.put(f"rooms/{room}/state/m.room.topic", {"topic": "a topic"}, token=owner)
        await api.put(f"rooms/{room}/send/m.room.message/r0", {"msgtype": "m.text", "body": "mine"},
                      token=readers[0]["access_token"])

    async def edit_and_redact() -> None:
        await api.put(f"rooms/{room}/send/m.room.message/e1", {
            "msgtype": "m.text", "body": "* two", "m.new_content": {"msgtype": "m.text", "body": "two"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": first[0]},
        }, token=owner)
        await api.put(f"rooms/{room}/redact/{first[0]}/x1", {"reason": "oops"}, token=owner)

    def members_only(visibility: str) -> Any:
        async def change() -> None:
            await api.put(f"rooms/{room}/state/m.room.history_visibility", {"history_visibility": visibility},
                          token=owner)
            await api.put(f"rooms/{room}/send/m.room.message/v{visibility}", {"msgtype": "m.text", "body": "hi"},
                          token=owner)
        return change

    newcomer = await api.register("newcomer")

    async def join() -> None:
        await api.post(f"rooms/{room}/join", {}, token=newcomer["access_token"])

    async def rename() -> None:
        await api.put(f"profile/{owner_account['user_id']}/displayname", {"displayname": "The Owner"}, token=owner)

    await round_of(message, waiting=True)
    await round_of(several, waiting=False)
    await round_of(message, waiting=True)  # the sending device's own event: not shared
    # Membership events in the section: the room's summary is due for every reader.
    joined = await round_of(join, waiting=True, rooms_only=True)
    # owner, 5 readers and the newcomer
    assert all(b["rooms"]["join"][room]["summary"]["m.joined_member_count"] == 7 for b in joined)
    await round_of(rename, waiting=False, rooms_only=True)
    await round_of(edit_and_redact, waiting=False)
    # History visible to members only (each reader joined at every event: shared).
    await round_of(members_only("joined"), waiting=False)
    await round_of(message, waiting=True)
    await round_of(members_only("invited"), waiting=False)
    # The woken readers' bodies carried the shared timeline's encoding: one per section.
    assert shared.stats()["misses"] >= 3


async def test_members_only_history_is_shared_only_with_readers_joined_at_its_events(
    make_api: ClientFactory, clock: FakeClock
) -> None:
    """History visible to joined members, and an event from another server on a branch
    from before carol joined: alice (joined at it) sees it, carol (joined since before
    the token, but not at that event) does not. Alice's section is not carol's: she is
    answered on her own, as with nothing shared."""
    api = await make_api(clock=clock, presence={"enabled": False})  # bodies compared a moment apart
    hs = api.hs
    stream = next(s for s in hs.sync.streams if isinstance(s, RoomEventsStream))
    shared = stream.shared
    assert shared is not None
    alice = await user(api, "alice")
    room_id = await create(api, alice, preset="public_chat")
    await set_visibility(api, room_id, alice, "joined")
    # A third local member: direct chats share no sections.
    await join(api, room_id, await user(api, "dave"))
    room = await hs.room_store.get_room(room_id)
    assert room is not None
    joined = await remote_event(hs, room, "m.room.member", {"membership": "join"}, state_key=REMOTE_USER)
    assert await receive(hs, room, joined) == "accepted"
    head = await hs.room_service.head(room)
    before_carol = [e.event_id for e in (await hs.event_store.get_events_by_nid(head.extremities)).values()]
    carol = await user(api, "carol")
    await join(api, room_id, carol)
    since = {t: (await api.get("sync", token=t))["next_batch"] for t in (alice, carol)}
    hello = await remote_event(hs, room, "m.room.message", {"msgtype": "m.text", "body": "hi"}, prev=before_carol)
    assert await receive(hs, room, hello) == "accepted"

    before = shared.stats()
    bodies = {t: await api.get(f"sync?since={since[t]}", token=t) for t in (alice, carol)}
    assert shared.stats()["personal"] - before["personal"] == 1  # carol built her own
    assert [e["event_id"] for e in bodies[alice]["rooms"]["join"][room_id]["timeline"]["events"]] == [hello["event_id"]]
    carol_sees = bodies[carol].get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {}).get("events", [])
    assert hello["event_id"] not in [e["event_id"] for e in carol_sees]
    stream.shared = None
    try:
        for t in (alice, carol):
            assert await api.get(f"sync?since={since[t]}", token=t) == bodies[t]
    finally:
        stream.shared = shared


async def test_the_token_read_without_waiting_is_the_streams_positions(api: Api) -> None:
    """`position_now` (each stream's position once its service has loaded it, read as a
    plain call) gives the token the streams' awaited positions give."""
    hs = api.hs
    owner = await api.register("owner")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner["access_token"]))["room_id"]
    await api.put(f"rooms/{room}/send/m.room.message/x", {"msgtype": "m.text", "body": "x"},
                  token=owner["access_token"])
    await api.get("sync", token=owner["access_token"])
    awaited = SyncToken(**{s.key: await s.current_position() for s in hs.sync.streams})
    assert all(s.position_now() is not None for s in hs.sync.streams)
    assert await hs.sync.current_token() == awaited
    assert awaited.events > 0


async def test_the_token_kept_between_reads_moves_with_every_stream(api: Api) -> None:
    """`current_token` hands back its last token while no stream has moved (the same
    object), and a new one as soon as any stream moves: an event, a typing
    notification, a receipt, account data."""
    hs = api.hs
    owner = await api.register("owner")
    token = owner["access_token"]
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=token))["room_id"]
    await api.get("sync", token=token)
    first = await hs.sync.current_token()
    assert await hs.sync.current_token() is first  # nothing moved: the same token
    event_id = (await api.put(f"rooms/{room}/send/m.room.message/a", {"msgtype": "m.text", "body": "a"},
                              token=token))["event_id"]
    changes = [
        ("events", lambda: None),
        ("typing", lambda: api.put(f"rooms/{room}/typing/{owner['user_id']}", {"typing": True, "timeout": 30000},
                                   token=token)),
        ("receipts", lambda: api.post(f"rooms/{room}/receipt/m.read/{event_id}", {}, token=token)),
        ("account_data", lambda: api.put(f"user/{owner['user_id']}/account_data/org.example", {"a": 1}, token=token)),
    ]
    before = first
    for key, change in changes:
        done = change()
        if done is not None:
            await done
        now = await hs.sync.current_token()
        assert getattr(now, key) > getattr(before, key), key
        awaited = SyncToken(**{s.key: await s.current_position() for s in hs.sync.streams})
        assert now == awaited, key
        before = now


async def test_a_direct_chat_is_not_shared_and_reads_the_same(api: Api) -> None:
    """A room of two local members builds no shared section (its other reader is at most
    one): each reader builds its own timeline, the sender's device with its transaction ID."""
    stream = next(s for s in api.hs.sync.streams if isinstance(s, RoomEventsStream))
    assert stream.shared is not None
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    since = [(await api.get("sync", token=t))["next_batch"] for t in (alice, bob)]
    event_id = (await api.put(f"rooms/{room}/send/m.room.message/dm0", {"msgtype": "m.text", "body": "hi"},
                              token=alice))["event_id"]
    before = stream.shared.stats()
    bodies = [await api.get(f"sync?since={s}", token=t) for t, s in zip((alice, bob), since, strict=True)]
    assert stream.shared.stats() == before
    timelines = [b["rooms"]["join"][room]["timeline"]["events"] for b in bodies]
    assert [[e["event_id"] for e in t] for t in timelines] == [[event_id], [event_id]]
    assert timelines[0][0]["unsigned"].get("transaction_id") == "dm0"
    assert "transaction_id" not in timelines[1][0]["unsigned"]


async def test_rooms_nobody_counts_are_not_told(api: Api) -> None:
    """The writer's rows are kept for a room only once a reader counts it (it has a
    tally): a room nobody syncs holds none of its events' rows, and its first reader
    reads them, with the counts the database gives; from then on its rows are told."""
    hs = api.hs
    tallies = hs.unread.tallies
    assert tallies is not None
    owner = (await api.register("owner"))["access_token"]
    reader = await api.register("reader")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=reader["access_token"])
    for n in range(3):
        await api.put(f"rooms/{room}/send/m.room.message/u{n}", {"msgtype": "m.text", "body": str(n)}, token=owner)
    assert not tallies._told  # nobody counts the room: nothing waits for a reader
    since = [(await api.get("sync", token=reader["access_token"]))["next_batch"]]
    told_hits = tallies.told_hits
    for n in range(2):
        await api.put(f"rooms/{room}/send/m.room.message/t{n}", {"msgtype": "m.text", "body": str(n)}, token=owner)
    await _everyone_syncs(api, room, [reader], since)
    assert tallies.told_hits == told_hits + 2 and not tallies._told
