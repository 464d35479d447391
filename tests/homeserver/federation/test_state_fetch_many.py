"""The state at an event when most of it is missing here: more events than are worth
fetching one by one, so `StateFetcher.state_before` takes the whole `/state` answer
and verifies it in bulk; the state it returns is the resident server's, every event
of it stored."""

from __future__ import annotations

from federation.events import get_room_version
from homeserver.federation.state_fetch import MAX_SINGLE_FETCHES
from tests.homeserver.federation.servers import Pair


async def test_state_before_from_a_whole_state_answer(pair: Pair) -> None:
    a, b, a_spec, alice, alice_id = pair.a, pair.b, pair.a_spec, pair.alice, pair.alice_id
    room = (await alice.call("POST", "/createRoom", {"preset": "public_chat", "name": "Many", "initial_state": [
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}},
    ]}))["room_id"]  # any server may read it: B need not join (which would bring the state)
    for i in range(MAX_SINGLE_FETCHES + 5):
        await alice.call("PUT", f"/rooms/{room}/state/org.example.item/{i}", {"n": i})
    last = await alice.say(room, "at the end")

    a_room = await a.room_store.get_room(room)
    assert a_room is not None
    stored = await a.event_store.get_event(last)
    assert stored is not None
    expected = {k: e.event_id for k, e in (await a.room_service.state_events(
        await a.room_service.state_ids_before(stored))).items()}
    assert len(expected) > MAX_SINGLE_FETCHES

    # B knows nothing of the room but its record.
    b_room = await b.received_events.ensure_room(room, a_room.room_version, alice_id)
    rv = get_room_version(a_room.room_version)
    state = await b.state_fetcher.state_before(a_spec.name, b_room, rv, last)
    by_nid = await b.event_store.get_events_by_nid(state.values())
    assert {k: by_nid[n].event_id for k, n in state.items()} == expected
    assert all(e.outlier for e in by_nid.values())
