"""Backfill between two real servers over TLS: a user of B joins a room of A and
paginates back into history from before the join, which B fetches from A with
/backfill, verifies, and shows subject to the room's history visibility."""

from __future__ import annotations

import asyncio
from typing import Any

from federation.events import build_event, get_room_version, pdu_json
from homeserver.server import HomeServer
from tests.homeserver.federation.servers import Client, Pair, ServerSpec


async def _paginate_all(client: Client, room: str, limit: int = 7) -> tuple[list[dict[str, Any]], int]:
    """Every event /messages returns going back from now, newest first, and the pages it took."""
    events: list[dict[str, Any]] = []
    token = ""
    pages = 0
    while True:
        page = await client.call("GET", f"/rooms/{room}/messages?dir=b&limit={limit}{token}")
        pages += 1
        events.extend(page["chunk"])
        if "end" not in page:
            return events, pages
        assert pages < 50, "pagination does not end"
        token = f"&from={page['end']}"


def _bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message" and "body" in e["content"]]


async def _room_with_history(alice: Client, n: int, visibility: str) -> str:
    room = (await alice.call("POST", "/createRoom", {
        "preset": "public_chat",
        "initial_state": [{"type": "m.room.history_visibility", "state_key": "",
                           "content": {"history_visibility": visibility}}],
    }))["room_id"]
    for i in range(1, n + 1):
        await alice.call("PUT", f"/rooms/{room}/send/m.room.message/m{i}", {"msgtype": "m.text", "body": f"m{i}"})
    return room


async def test_backfill_shared_history(pair: Pair) -> None:
    a, b, a_spec, alice, bob, bob_id = pair.a, pair.b, pair.a_spec, pair.alice, pair.bob, pair.bob_id
    room = await _room_with_history(alice, 30, "shared")
    await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
    record = await b.room_store.get_room(room)
    assert record is not None
    stream_before = b.room_service.stream.current
    head_before = await b.room_service.head(record)
    state_before = await b.room_service.current_state_ids(record)

    events, pages = await _paginate_all(bob, room)
    assert _bodies(events) == [f"m{i}" for i in range(30, 0, -1)]
    assert pages > 1
    # Newest first: bob's join, the messages, then the room's creation, ending with
    # the create event (promoted from outlier into the timeline).
    assert events[0]["type"] == "m.room.member" and events[0]["state_key"] == bob_id
    assert events[-1]["type"] == "m.room.create"
    assert len({e["event_id"] for e in events}) == len(events)

    # History stays history: no live stream position, extremities or state changed.
    assert b.room_service.stream.current == stream_before
    head_after = await b.room_service.head(record)
    assert head_after.extremities == head_before.extremities
    assert await b.room_service.current_state_ids(record) == state_before
    stored = await b.event_store.get_event(events[5]["event_id"])
    assert stored is not None and stored.stream_ordering is not None and stored.stream_ordering < 0

    # Going forward from the start crosses from backfilled history into live events.
    forward = await bob.call("GET", f"/rooms/{room}/messages?dir=f&limit=100")
    assert forward["chunk"][0]["type"] == "m.room.create"
    assert _bodies(forward["chunk"]) == [f"m{i}" for i in range(1, 31)]
    assert forward["chunk"][-1]["event_id"] == events[0]["event_id"]

    # /context around a backfilled event, with tokens below zero that paginate on.
    middle = next(e for e in events if e.get("content", {}).get("body") == "m15")
    ctx_answer = await bob.call("GET", f"/rooms/{room}/context/{middle['event_id']}?limit=4")
    assert _bodies(ctx_answer["events_before"]) == ["m14", "m13"]
    assert _bodies(ctx_answer["events_after"]) == ["m16", "m17"]
    assert ctx_answer["start"].startswith("t-")
    older = await bob.call("GET", f"/rooms/{room}/messages?dir=b&limit=2&from={ctx_answer['start']}")
    assert _bodies(older["chunk"]) == ["m12", "m11"]

    # Live traffic still flows after the backfill, and A got nothing back from it.
    await bob.call("PUT", f"/rooms/{room}/send/m.room.message/b1", {"msgtype": "m.text", "body": "hello"})
    await alice.wait_for_message(room, "hello")
    a_record = await a.room_store.get_room(room)
    assert a_record is not None
    assert len((await a.room_service.head(a_record)).extremities) == 1


async def test_history_from_before_a_join_is_not_pushed_to_the_joiner(pair: Pair) -> None:
    """A's sender works out where an event goes after the event was created: when it
    lags behind (here it is held until bob has joined), a server that joined
    meanwhile must still not be sent the events from before its join as if they
    were new. B gets them by backfill, as history, like any other."""
    a, b, a_spec, alice, bob = pair.a, pair.b, pair.a_spec, pair.alice, pair.bob
    sender = a.federation_sender
    queue, held = sender._queue, asyncio.Event()

    async def held_queue(batch: Any) -> None:
        await held.wait()
        await queue(batch)

    sent: list[dict[str, Any]] = []
    assert a.federation_client is not None
    a.federation_client.observers.append(
        lambda method, dest, path, content: sent.extend(content.get("pdus", []) if "/send/" in path else [])
    )
    sender._queue = held_queue  # type: ignore[method-assign]
    room = await _room_with_history(alice, 3, "shared")
    await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
    held.set()
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/late", {"msgtype": "m.text", "body": "late"})
    await bob.wait_for_message(room, "late")
    await sender.drain_intake()
    assert [p["content"].get("body") for p in sent] == ["late"]  # nothing from before the join
    # B has the history all the same, as history.
    record = await b.room_store.get_room(room)
    assert record is not None
    stream_before = b.room_service.stream.current
    events, _ = await _paginate_all(bob, room)
    assert _bodies(events) == ["late", "m3", "m2", "m1"]
    assert b.room_service.stream.current == stream_before


async def test_backfill_respects_joined_visibility(pair: Pair) -> None:
    a, b, a_spec, alice, bob, bob_id = pair.a, pair.b, pair.a_spec, pair.alice, pair.bob, pair.bob_id
    room = await _room_with_history(alice, 30, "joined")
    await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
    events, _ = await _paginate_all(bob, room, limit=10)
    assert _bodies(events) == []
    assert events[0]["type"] == "m.room.member" and events[0]["state_key"] == bob_id
    # Only the room's creation shows: it came before "joined" was set, under the
    # default ("shared"), which lets later members see it.
    assert all("state_key" in e for e in events)
    assert [e["type"] for e in events][-2:] == ["m.room.member", "m.room.create"]
    assert events[1]["type"] == "m.room.history_visibility"
    # A withheld the content (served redacted), so B never even stored it.
    record = await b.room_store.get_room(room)
    assert record is not None
    backfilled = await b.event_store.room_stream(record.room_nid, from_pos=0, to_pos=None, backwards=True,
                                                 limit=100)
    messages = [e for e in backfilled if e.type == "m.room.message"]
    assert len(messages) == 30
    assert all("body" not in e.event["content"] for e in messages)
    # Messages after the join are seen as usual.
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/late", {"msgtype": "m.text", "body": "late"})
    await bob.wait_for_message(room, "late")
    assert a is not None


async def _forged_pdus(a: HomeServer, a_spec: ServerSpec, room_id: str) -> list[dict[str, Any]]:
    """PDUs a hostile backfill answer might carry: a bad signature, another room's
    event, a malformed one."""
    from federation.events import signing_key_from_seed

    record = await a.room_store.get_room(room_id)
    assert record is not None
    head = await a.room_service.head(record)
    prev = list((await a.event_store.get_events_by_nid(head.extremities)).values())
    state = await a.room_service.current_state_events(record)
    auth = [state[("m.room.create", "")].event_id, state[("m.room.power_levels", "")].event_id]
    alice = f"@alice:{a_spec.name}"
    auth.append(state[("m.room.member", alice)].event_id)
    wrong_key = signing_key_from_seed(b"\x07" * 32, a_spec.key_id.split(":")[1])
    forged = build_event(
        get_room_version(record.room_version), room_id=room_id, sender=alice, event_type="m.room.message",
        content={"body": "forged"}, prev_events=[e.event_id for e in prev], auth_events=auth,
        depth=max(e.event["depth"] for e in prev) + 1, origin_server_ts=a.clock.time_ms(),
        signing_key=wrong_key, server_name=a_spec.name,
    )
    other_room = dict(pdu_json(prev[0].event), room_id="!elsewhere:" + a_spec.name)
    return [pdu_json(forged), other_room, {"type": "m.room.message"}, "not an event"]  # type: ignore[list-item]


async def test_backfill_drops_forged_events(pair: Pair) -> None:
    a, b, a_spec, b_spec, alice, bob = pair.a, pair.b, pair.a_spec, pair.b_spec, pair.alice, pair.bob
    room = await _room_with_history(alice, 3, "shared")
    await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
    record = await b.room_store.get_room(room)
    assert record is not None
    rv = get_room_version(record.room_version)
    a_record = await a.room_store.get_room(room)
    assert a_record is not None
    newest = await a.event_store.get_events_by_nid((await a.room_service.head(a_record)).extremities)
    genuine = await a.federation_reads.backfill(b_spec.name, room, [e.event_id for e in newest.values()], 2)
    forged = await _forged_pdus(a, a_spec, room)
    checked = await b.room_backfill._checked(a_spec.name, record, rv, [*forged, *genuine])
    # Only the genuine events B does not have yet (bob's join it has) are kept.
    expected = [(await b.pdu_checks.check(p, rv))["event_id"] for p in genuine]
    expected = [e for e in expected if await b.event_store.get_event(e) is None]
    assert len(expected) == 1
    assert [e["event_id"] for e in checked] == expected
    # Forged positions in a token are just positions: nothing below the room's history.
    page = await bob.call("GET", f"/rooms/{room}/messages?dir=b&from=t-99999999&limit=5")
    assert page["chunk"] == []
