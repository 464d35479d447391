"""A real gap in the DAG between two servers: A's sender is stopped while A's user
renames the room and sends more events than /get_missing_events returns, and
A then gives up on what it queued for B (as it does for a transaction B refuses
for good), so
when A's next event reaches B, B cannot fetch the whole gap. B recovers the
state at the oldest event it could fetch with /state_ids and accepts the event;
the room carries on (B's next event merges both ends, and A accepts it)."""

from __future__ import annotations

import pytest

from federation.events import build_event, get_room_version, pdu_json
from homeserver.federation.inbound import MAX_MISSING
from homeserver.federation.pdu_checks import PduError
from tests.homeserver.federation.servers import Pair
from tests.homeserver.federation.test_inbound_send import _state_ids

GAP = MAX_MISSING + 12


async def test_gap_closed_with_state_ids(pair: Pair) -> None:
    a, b, a_spec, b_spec = pair.a, pair.b, pair.a_spec, pair.b_spec
    alice, bob, bob_id = pair.alice, pair.bob, pair.bob_id
    room = (await alice.call("POST", "/createRoom", {"preset": "public_chat", "name": "Before"}))["room_id"]
    await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/first", {"msgtype": "m.text", "body": "first"})
    await bob.wait_for_message(room, "first")

    # B misses everything A does while A's sender is down.
    await a.federation_sender.stop()
    gap_ids = []
    for i in range(GAP):
        if i == 3:
            sent = await alice.call("PUT", f"/rooms/{room}/state/m.room.name", {"name": "Renamed in the gap"})
        else:
            sent = await alice.call("PUT", f"/rooms/{room}/send/m.room.message/g{i}",
                                    {"msgtype": "m.text", "body": f"gap {i}"})
        gap_ids.append(sent["event_id"])
    # The gap's events were queued with them; dropping the queue leaves B without them.
    await a.federation_sender.store.remove_destination(b_spec.name)
    await a.federation_sender.start()
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/after", {"msgtype": "m.text", "body": "after"})
    await bob.wait_for_message(room, "after")

    # B fetched the newest MAX_MISSING events of the gap; the older ones (the rename
    # among them) it never saw, yet its state has the rename, from /state_ids.
    fetched = await b.event_store.get_events(gap_ids)
    in_timeline = [e for e in gap_ids if e in fetched and fetched[e].stream_ordering is not None]
    assert in_timeline == gap_ids[-MAX_MISSING:]
    assert gap_ids[3] in fetched and fetched[gap_ids[3]].outlier  # known only as state
    assert await bob.call("GET", f"/rooms/{room}/state/m.room.name") == {"name": "Renamed in the gap"}
    oldest = fetched[gap_ids[-MAX_MISSING]]
    assert oldest.state_before is not None

    record = await b.room_store.get_room(room)
    assert record is not None
    assert len((await b.room_service.head(record)).extremities) == 2  # both ends of the hole

    # B's next event has both ends as prev events; A accepts it.
    await bob.call("PUT", f"/rooms/{room}/send/m.room.message/b1", {"msgtype": "m.text", "body": "from B"})
    seen = await alice.wait_for_message(room, "from B")
    assert seen["sender"] == bob_id
    assert len((await b.room_service.head(record)).extremities) == 1

    # Hostile or hopeless gaps fail that one PDU, with bounded work.
    rv = get_room_version(record.room_version)
    with pytest.raises(PduError):
        await b.state_fetcher.state_before(a_spec.name, record, rv, "$no-such-event")
    with pytest.raises(PduError):
        await b.state_fetcher.state_at_prevs(a_spec.name, record, rv, {"prev_events": [f"$p{i}" for i in range(11)]})
    a_record = await a.room_store.get_room(room)
    assert a_record is not None
    state = await _state_ids(a, a_record)
    orphan = build_event(
        rv, room_id=room, sender=bob_id, event_type="m.room.message", content={"body": "orphan"},
        prev_events=["$" + "A" * 43], depth=1000, origin_server_ts=b.clock.time_ms(),
        auth_events=[state[("m.room.power_levels", "")], state[("m.room.member", bob_id)]],
        signing_key=b_spec.signing_key, server_name=b_spec.name,
    )
    answer = await b.federation_client.put_json(
        a_spec.name, "/_matrix/federation/v1/send/orphan",
        {"origin": b_spec.name, "origin_server_ts": b.clock.time_ms(), "pdus": [pdu_json(orphan)]},
    )
    assert "error" in answer["pdus"][orphan["event_id"]]
    assert await a.event_store.get_event(orphan["event_id"]) is None
