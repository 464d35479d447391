"""Initial syncs take a joined room's section from the one any member's initial sync
kept (sync/initial_sections.py): each reader gets exactly what a fresh computation
gives (their own transaction IDs, heroes without themselves), and every change to the
room (a message, a membership, a redaction, a state change, an event received over
federation, a purge, backfilled history) makes the next initial sync compute afresh.
Users whose view may differ (history visible to members only, ignored users, filters
that leave events out) never take a kept section."""

from __future__ import annotations

from typing import Any

from homeserver.rooms.recent import RecentEvents
from homeserver.sync.initial_sections import InitialSections, section_size
from homeserver.sync.streams.room_events import RoomEventsStream
from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    join,
    put_state,
    send,
    set_visibility,
    uid,
    user,
)
from tests.homeserver.relations.helpers import edit, react, redact
from tests.homeserver.remote_events import REMOTE_USER, receive, remote_event


def _stream(api: Api) -> RoomEventsStream:
    stream = next(s for s in api.hs.sync.streams if isinstance(s, RoomEventsStream))
    assert stream.initial_sections is not None
    return stream


def _sections(api: Api) -> InitialSections:
    sections = _stream(api).initial_sections
    assert sections is not None
    return sections


def _strip_age(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_age(v) for k, v in value.items() if k != "age"}
    if isinstance(value, list):
        return [_strip_age(v) for v in value]
    return value


async def _initial(api: Api, token: str, room: str, query: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = (await api.get(f"sync{query}", token=token))["rooms"]["join"][room]
    return entry


async def _fresh(api: Api, token: str, room: str, query: str = "") -> dict[str, Any]:
    """The room's entry computed without any kept section (nor keeping one)."""
    stream = _stream(api)
    kept, stream.initial_sections = stream.initial_sections, None
    try:
        return await _initial(api, token, room, query)
    finally:
        stream.initial_sections = kept


def _bodies(entry: dict[str, Any]) -> list[str]:
    return [e["content"].get("body", "") for e in entry["timeline"]["events"] if e["type"] == "m.room.message"]


async def _talking(api: Api, alice: str, bob: str) -> str:
    """A public room of alice's joined by bob, three messages of each in turn."""
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    for i in range(3):
        await send(api, room, alice, f"a{i}")
        await send(api, room, bob, f"b{i}")
    return room


async def test_readers_share_a_section_each_as_a_fresh_computation(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await _talking(api, alice, bob)
    sections = _sections(api)
    first = await _initial(api, alice, room)
    # The first initial sync of the room as it is keeps nothing (most rooms change before
    # the next); the second keeps the section for the ones after.
    assert sections.stats()["rooms"] == 0
    assert _strip_age(await _initial(api, bob, room)) == _strip_age(await _fresh(api, bob, room))
    assert sections.stats()["rooms"] == 1
    hits = sections.hits
    for token, name in ((bob, "bob"), (alice, "alice")):
        kept = await _initial(api, token, room)
        assert sections.hits == hits + 1
        hits = sections.hits
        assert _strip_age(kept) == _strip_age(await _fresh(api, token, room))
        # The reading device's own transaction IDs, nobody else's.
        own = [e for e in kept["timeline"]["events"] if "transaction_id" in e["unsigned"]]
        assert own and all(e["sender"] == uid(name) for e in own)
        assert uid(name) not in kept["summary"].get("m.heroes", [])
        assert all(isinstance(e["unsigned"]["age"], int) for e in kept["timeline"]["events"] + kept["state"]["events"])
    assert _strip_age(first)["timeline"]["events"][-1]["content"]["body"] == "b2"


async def test_every_change_to_the_room_is_seen_by_the_next_initial_sync(api: Api) -> None:
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    first = await send(api, room, alice, "first")
    sections = _sections(api)

    async def same_as_fresh() -> dict[str, Any]:
        """The room after a change, as a fresh computation has it, every time; then its
        section kept (two initial syncs) for the next change to make stale."""
        for _ in range(3):
            entry = await _initial(api, bob, room)
            assert _strip_age(entry) == _strip_age(await _fresh(api, bob, room))
        assert sections.stats()["rooms"] == 1
        return entry

    await same_as_fresh()

    await send(api, room, alice, "second")
    assert _bodies(await same_as_fresh())[-2:] == ["first", "second"]
    await join(api, room, carol)  # a membership: the summary moves
    entry = await same_as_fresh()
    assert entry["summary"]["m.joined_member_count"] == 3
    assert sorted(entry["summary"]["m.heroes"]) == [uid("alice"), uid("carol")]
    await redact(api, room, alice, first)
    entry = await same_as_fresh()
    redacted = next(e for e in entry["timeline"]["events"] if e["event_id"] == first)
    assert redacted["content"] == {} and "redacted_because" in redacted["unsigned"]
    second = next(e["event_id"] for e in entry["timeline"]["events"] if e["content"].get("body") == "second")
    await edit(api, room, alice, second, "second, edited")
    entry = await same_as_fresh()
    assert "m.relations" in next(e for e in entry["timeline"]["events"] if e["event_id"] == second)["unsigned"]
    await put_state(api, room, alice, "m.room.name", {"name": "named now"})
    entry = await same_as_fresh()
    assert "m.heroes" not in entry["summary"]
    assert any(e["type"] == "m.room.name" for e in entry["timeline"]["events"] + entry["state"]["events"])


async def test_an_event_received_over_federation_is_seen(api: Api) -> None:
    alice = await user(api, "alice")
    room_id = await create(api, alice, preset="public_chat")
    hs = api.hs
    room = await hs.room_store.get_room(room_id)
    assert room is not None
    joined = await remote_event(hs, room, "m.room.member", {"membership": "join"}, state_key=REMOTE_USER)
    assert await receive(hs, room, joined) == "accepted"
    await _initial(api, alice, room_id)
    await _initial(api, alice, room_id)
    assert _sections(api).stats()["rooms"] == 1
    hello = await remote_event(hs, room, "m.room.message", {"msgtype": "m.text", "body": "from afar"})
    assert await receive(hs, room, hello) == "accepted"
    entry = await _initial(api, alice, room_id)
    assert _bodies(entry)[-1] == "from afar"
    assert entry["summary"]["m.joined_member_count"] == 2


async def test_a_room_generation_moves_with_backfill_and_purge(api: Api) -> None:
    """History placed below the stream's start (backfill) and a purge move the room's
    generation, so a kept section is not taken afterwards."""
    alice = await user(api, "alice")
    room_id = await create(api, alice, preset="public_chat")
    await send(api, room_id, alice, "hello")
    hs = api.hs
    room = await hs.room_store.get_room(room_id)
    assert room is not None
    sections = _sections(api)
    await _initial(api, alice, room_id)
    await _initial(api, alice, room_id)
    hits = sections.hits
    await _initial(api, alice, room_id)
    assert sections.hits == hits + 1
    recent: RecentEvents = hs.recent_events
    before = recent.generation(room.room_nid)
    recent.placed(room.room_nid, -3, 10**9)  # as the writer tells of a backfilled event
    assert recent.generation(room.room_nid) != before
    misses = sections.misses
    await _initial(api, alice, room_id)
    assert sections.misses == misses + 1 and sections.hits == hits + 1
    before = recent.generation(room.room_nid)
    recent.forget_room(room.room_nid)
    assert recent.generation(room.room_nid) != before


def test_generations_stay_distinct_past_the_bound() -> None:
    recent = RecentEvents(events=None)  # type: ignore[arg-type]
    seen = recent.generation(1)
    recent.placed(1, 5, 1)
    assert recent.generation(1) != seen
    seen = recent.generation(1)
    for nid in range(2, 100_003):
        recent.forget_room(nid)
    assert recent.generation(1) != seen


async def test_history_for_members_only_is_never_shared(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(api, alice, preset="public_chat")
    await set_visibility(api, room, alice, "joined")
    await send(api, room, alice, "before bob")
    await join(api, room, bob)
    await send(api, room, alice, "after bob")
    for _ in range(2):  # the second would keep the section, were the history open
        assert _bodies(await _initial(api, alice, room)) == ["before bob", "after bob"]
    assert _sections(api).stats()["rooms"] == 0
    assert _bodies(await _initial(api, bob, room)) == ["after bob"]
    assert _bodies(await _initial(api, alice, room)) == ["before bob", "after bob"]


async def test_ignoring_readers_and_filters_compute_their_own(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    await send(api, room, alice, "from alice")
    await send(api, room, bob, "from bob")
    await _initial(api, alice, room)
    await _initial(api, alice, room)
    assert _sections(api).stats()["rooms"] == 1
    await api.put(f"user/{uid('bob')}/account_data/m.ignored_user_list", {"ignored_users": {uid("alice"): {}}}, token=bob)
    assert _bodies(await _initial(api, bob, room)) == ["from bob"]
    only_bob = '?filter={"room":{"timeline":{"senders":["@bob:test.local"]}}}'
    assert _bodies(await _initial(api, alice, room, only_bob)) == ["from bob"]
    small = '?filter={"room":{"timeline":{"limit":1}}}'
    entry = await _initial(api, alice, room, small)
    assert _bodies(entry) == ["from bob"] and entry["timeline"]["limited"] is True
    assert _bodies(await _initial(api, alice, room)) == ["from alice", "from bob"]


def test_kept_json_is_client_event_with_its_age() -> None:
    """A section's kept JSON of an event, its age appended, is `client_event`'s shape."""
    import json

    from homeserver.records.events import StoredEvent
    from homeserver.rooms.client_format import client_event, client_json_prefix
    from homeserver.sync.initial_sections import render, section_event

    base = {"origin_server_ts": 1_000, "sender": "@a:x", "auth_events": [], "prev_events": [], "depth": 3,
            "hashes": {"sha256": "h"}, "signatures": {}, "room_id": "!r:x", "unsigned": {"age_ts": 5}}
    events = [
        {**base, "type": "m.room.message", "content": {"body": "hé \u2028", "msgtype": "m.text"}},
        {**base, "type": "m.room.member", "state_key": "@a:x", "content": {"membership": "join"}},
        {**base, "type": "m.room.redaction", "content": {"redacts": "$t"}},
        {**base, "type": "m.room.redaction", "redacts": "$old", "content": {}},
    ]
    for i, ev in enumerate(events):
        stored = StoredEvent(i, f"$e{i}", 1, i + 1, 1, 1, False, None, None, "DEV", "txn", ev)
        assert client_json_prefix(stored, "!r:x") is not None
        kept = section_event(stored, "!r:x", related=False)
        assert json.loads(render(kept, 1_500)) == client_event(stored, "!r:x", "11", 1_500)
        assert json.loads(render(kept, 500))["unsigned"] == {"age": 0}
    stored = StoredEvent(9, "$big", 1, 9, 1, 1, False, None, None, None, None, {**events[0], "content": {"n": 2**70}})
    assert client_json_prefix(stored, "!r:x") is None
    assert section_event(stored, "!r:x", related=False).prefix is None
    assert section_event(stored, "!r:x", related=True).prefix is None


def test_a_section_is_built_by_the_second_computation_of_the_same_key() -> None:
    sections = InitialSections(max_noted=2)
    assert not sections.computed_before(1, (5, 0, 7, 10))
    assert not sections.computed_before(1, (6, 0, 8, 10))  # the room changed: noted afresh
    assert sections.computed_before(1, (6, 0, 8, 10))
    assert not sections.computed_before(2, (1, 0, 1, 10))
    assert not sections.computed_before(3, (1, 0, 1, 10))  # the oldest noted (room 1) goes
    assert not sections.computed_before(1, (6, 0, 8, 10))


async def test_first_pages_from_the_rooms_windows_are_the_databases(api: Api) -> None:
    """A room an earlier sync read keeps a window of its newest events, grown by what the
    writer tells: the next initial sync takes its first page from there, not the
    database, and sends exactly what the database's page gives (redactions included)."""
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    sent = [await send(api, room, alice, f"m{i}") for i in range(14)]
    await _initial(api, bob, room)  # the room's window starts from its page
    await send(api, room, bob, "newer")
    await redact(api, room, alice, sent[-1])
    recent: RecentEvents = api.hs.recent_events
    hits = recent.hits
    entry = await _initial(api, bob, room)
    assert recent.hits > hits
    assert entry["timeline"]["limited"] is True
    assert _bodies(entry)[-3:] == ["m12", "", "newer"]  # m13 redacted
    redacted = next(e for e in entry["timeline"]["events"] if e["event_id"] == sent[-1])
    assert redacted["content"] == {} and "redacted_because" in redacted["unsigned"]
    newest = recent.newest
    recent.newest = lambda *args: None  # type: ignore[method-assign]
    try:
        from_db = await _fresh(api, bob, room)
    finally:
        recent.newest = newest  # type: ignore[method-assign]
    assert _strip_age(entry) == _strip_age(from_db)


async def test_a_kept_summary_follows_the_rooms_state(api: Api) -> None:
    """Summaries are kept per room with the state snapshot they describe: a message
    reuses it, any membership or name change is seen by the next sync (sections
    aside, which keep their own)."""
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    stream = _stream(api)
    stream.initial_sections = None
    summary = (await _initial(api, alice, room))["summary"]
    assert summary == {"m.joined_member_count": 2, "m.invited_member_count": 0, "m.heroes": [uid("bob")]}
    await send(api, room, bob, "hello")
    assert (await _initial(api, alice, room))["summary"] == summary
    await join(api, room, carol)
    summary = (await _initial(api, alice, room))["summary"]
    assert summary["m.joined_member_count"] == 3 and sorted(summary["m.heroes"]) == [uid("bob"), uid("carol")]
    assert (await _initial(api, carol, room))["summary"]["m.heroes"] == sorted([uid("alice"), uid("bob")])
    await put_state(api, room, alice, "m.room.name", {"name": "named"})
    assert "m.heroes" not in (await _initial(api, bob, room))["summary"]


async def _kept(api: Api, tokens: list[str], room: str) -> None:
    """Initial syncs of the room until its section is kept."""
    for token in tokens + tokens:
        await _initial(api, token, room)
    record = await api.hs.room_store.get_room(room)
    assert record is not None and _sections(api).kept(record.room_nid) is not None


async def _same_as_fresh(api: Api, tokens: list[str], room: str) -> None:
    for token in tokens:
        assert _strip_age(await _initial(api, token, room)) == _strip_age(await _fresh(api, token, room))
    # A kept section's size (what bounds them all) is what its events add up to, however
    # it was made (an extension works it out from the section it extends).
    record = await api.hs.room_store.get_room(room)
    assert record is not None
    kept = _sections(api).kept(record.room_nid)
    if kept is not None:
        assert kept.size == section_size(kept.timeline) + section_size(kept.state)


async def _public_room(api: Api, messages: int) -> tuple[str, str, str]:
    """alice's and bob's tokens, and a public room of theirs with alice's `messages`."""
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    for i in range(messages):
        await send(api, room, alice, f"m{i}")
    return alice, bob, room


async def test_new_messages_extend_the_kept_section(api: Api) -> None:
    """A room that only got messages since its section was kept has it extended, not
    computed afresh: the new events appended, the oldest dropped beyond the limit, the
    timeline then limited and its prev_batch moved; exactly what a fresh computation gives."""
    alice, bob, room = await _public_room(api, 12)
    await _kept(api, [alice, bob], room)
    sections = _sections(api)
    for batch in (1, 3, 10, 12):
        derived = sections.derived
        for i in range(batch):
            await send(api, room, bob if i % 2 else alice, f"n{batch}.{i}")
        entry = await _initial(api, alice, room)
        assert sections.derived == derived + 1
        assert _bodies(entry)[-1] == f"n{batch}.{batch - 1}" and entry["timeline"]["limited"] is True
        await _same_as_fresh(api, [alice, bob], room)
        # Bob's own messages carry his transaction IDs, for him alone.
        own = [e for e in (await _initial(api, bob, room))["timeline"]["events"] if "transaction_id" in e["unsigned"]]
        assert all(e["sender"] == uid("bob") for e in own) and (batch == 1 or own)
        assert sections.derived == derived + 1  # the extended section is taken as it is


async def test_a_small_room_extends_while_its_state_events_drop_into_the_state(api: Api) -> None:
    """A young room's timeline still holds its creation events: each new message pushes
    one of them out of the timeline and into the state section, which the extension
    works out again (the state before the new first event, in a fresh computation's
    order), message after message, without computing the room afresh."""
    alice, bob, room = await _public_room(api, 1)
    await _kept(api, [alice, bob], room)
    sections = _sections(api)
    derived = sections.derived
    first = await _initial(api, bob, room)
    assert first["timeline"]["limited"] is False
    state_types = {e["type"] for e in first["timeline"]["events"] if "state_key" in e}
    assert "m.room.create" in state_types and "m.room.member" in state_types
    for i in range(12):
        await send(api, room, alice if i % 2 else bob, f"m{i}")
        entry = await _initial(api, bob, room)
        assert sections.derived == derived + i + 1
        await _same_as_fresh(api, [alice, bob], room)
    assert entry["timeline"]["limited"] is True
    assert all(e["type"] == "m.room.message" for e in entry["timeline"]["events"])
    assert state_types <= {e["type"] for e in entry["state"]["events"]}


async def test_a_join_leaving_the_timeline_moves_into_the_state(api: Api) -> None:
    """A member's join among the newest events changes the room's state, so the next
    initial sync computes afresh; once kept again, the messages after it push the join
    out of the timeline and the extension puts it in the state section."""
    alice, bob, room = await _public_room(api, 12)
    carol = await user(api, "carol")
    await join(api, room, carol)
    await send(api, room, carol, "hello")
    await _kept(api, [alice, bob, carol], room)
    sections = _sections(api)
    derived = sections.derived
    for i in range(10):
        await send(api, room, alice, f"after {i}")
        entry = await _initial(api, carol, room)
        await _same_as_fresh(api, [alice, bob, carol], room)
    assert sections.derived == derived + 10
    joins = [e for e in entry["state"]["events"] if e["type"] == "m.room.member" and e["state_key"] == uid("carol")]
    assert len(joins) == 1 and joins[0]["content"]["membership"] == "join"
    assert not any(e["type"] == "m.room.member" for e in entry["timeline"]["events"])


async def test_a_state_event_with_relations_drops_into_the_state_as_any_state_event(api: Api) -> None:
    """A state event a relation targets is bundled with its aggregations in a timeline
    (formatted per reader, not kept encoded); once it leaves the timeline it is shown in
    the state section as any state event is, which the extension reads it again for."""
    alice, bob, room = await _public_room(api, 3)
    topic = await put_state(api, room, alice, "m.room.topic", {"topic": "reactions welcome"})
    await react(api, room, bob, topic, "+1")
    await send(api, room, alice, "after the reaction")
    await _kept(api, [alice, bob], room)
    sections = _sections(api)
    derived = sections.derived
    for i in range(10):
        await send(api, room, bob, f"push {i}")
    entry = await _initial(api, alice, room)
    assert sections.derived == derived + 1
    await _same_as_fresh(api, [alice, bob], room)
    shown = [e for e in entry["state"]["events"] if e["type"] == "m.room.topic"]
    assert len(shown) == 1 and shown[0]["event_id"] == topic
    assert "m.relations" not in shown[0]["unsigned"]


async def test_new_state_events_extend_the_section_with_the_new_heads_summary(api: Api) -> None:
    """Joins, a topic and a name among the new events (the room's state moved on, one
    event after the other from the kept head): the section is extended, the state events
    shown in the timeline, the summary the new head's (counts, heroes, then none once
    named), and later messages push them into the state section; each answer what a
    fresh computation gives."""
    alice, bob, room = await _public_room(api, 12)
    sections = _sections(api)
    carol, dave = await user(api, "carol"), await user(api, "dave")
    changes = [
        lambda: join(api, room, carol),
        lambda: put_state(api, room, alice, "m.room.topic", {"topic": "new"}),
        lambda: join(api, room, dave),
        lambda: put_state(api, room, alice, "m.room.name", {"name": "named now"}),
    ]
    for change in changes:
        await _kept(api, [alice, bob], room)
        derived = sections.derived
        await change()
        await send(api, room, alice, "after the change")
        entry = await _initial(api, bob, room)
        assert sections.derived == derived + 1
        await _same_as_fresh(api, [alice, bob, carol], room)
    assert entry["summary"]["m.joined_member_count"] == 4 and "m.heroes" not in entry["summary"]
    for i in range(10):
        await send(api, room, alice, f"push {i}")
        await _same_as_fresh(api, [alice, bob, carol, dave], room)
    entry = await _initial(api, dave, room)
    state = {(e["type"], e["state_key"]) for e in entry["state"]["events"]}
    assert {("m.room.member", uid("dave")), ("m.room.topic", ""), ("m.room.name", "")} <= state


async def test_what_changes_earlier_events_or_the_state_is_computed_afresh(api: Api) -> None:
    alice, bob, room = await _public_room(api, 12)
    target = await send(api, room, alice, "the target")
    sections = _sections(api)
    changes = [
        lambda: edit(api, room, alice, target, "edited"),
        lambda: react(api, room, bob, target, "+1"),
        lambda: redact(api, room, alice, target),
        lambda: set_visibility(api, room, alice, "world_readable"),
    ]
    for change in changes:
        await _kept(api, [alice, bob], room)
        derived = sections.derived
        await change()
        await _same_as_fresh(api, [alice, bob], room)
        assert sections.derived == derived


async def test_sections_hold_no_parsed_event_the_cache_let_go(api: Api) -> None:
    """A kept section holds its events' encoded JSON, not the events (the event cache
    alone decides whether they stay parsed): with every event of the room kept as JSON
    by the cache, the section's readers still get what a fresh computation gives, each
    device its own transaction IDs, and not another user's device of the same ID."""
    alice = (await api.register("alice", device_id="PHONE"))["access_token"]
    bob = (await api.register("bob", device_id="PHONE"))["access_token"]
    room = await _talking(api, alice, bob)
    sections = _sections(api)
    await _initial(api, alice, room)
    await _initial(api, bob, room)
    assert sections.stats()["rooms"] == 1
    section = next(iter(sections._sections.values()))
    assert all(se.event is None for se in section.timeline + section.state if se.prefix is not None)
    store = api.hs.event_store
    for event_id in list(store._by_id):
        store._keep_as_json(event_id)
    hits = sections.hits
    for token, name in ((alice, "alice"), (bob, "bob")):
        kept = await _initial(api, token, room)
        assert _strip_age(kept) == _strip_age(await _fresh(api, token, room))
        own = [e for e in kept["timeline"]["events"] if "transaction_id" in e["unsigned"]]
        assert len(own) == 3 and all(e["sender"] == uid(name) for e in own)
    assert sections.hits == hits + 2


async def test_the_summary_names_a_room_by_its_name_or_else_its_canonical_alias(api: Api) -> None:
    """Heroes only for a room that neither its name nor its canonical alias names: the
    name is looked at first, the alias only when the name does not name the room."""
    alice, bob = await user(api, "alice"), await user(api, "bob")
    plain = await create(api, alice, preset="public_chat")
    aliased = await create(api, alice, preset="public_chat", room_alias_name="aliased")
    for room in (plain, aliased):
        await join(api, room, bob)
        await put_state(api, room, alice, "m.room.name", {"name": ""})  # a name that names nothing
    assert (await _initial(api, bob, plain))["summary"]["m.heroes"] == [uid("alice")]
    assert "m.heroes" not in (await _initial(api, bob, aliased))["summary"]
    await put_state(api, plain, alice, "m.room.name", {"name": "named"})
    assert "m.heroes" not in (await _initial(api, bob, plain))["summary"]
    await put_state(api, aliased, alice, "m.room.canonical_alias", {})
    assert (await _initial(api, bob, aliased))["summary"]["m.heroes"] == [uid("alice")]
