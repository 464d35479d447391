"""Two real servers over TLS: a user of one joins a room on the other with
make_join/send_join, and messages then flow both ways through transactions."""

from __future__ import annotations

from tests.homeserver.federation.servers import Pair


async def test_join_across_servers_and_talk(pair: Pair) -> None:
    a, b, a_spec, alice = pair.a, pair.b, pair.a_spec, pair.alice
    bob, alice_id, bob_id = pair.bob, pair.alice_id, pair.bob_id
    room = (await alice.call("POST", "/createRoom", {"preset": "public_chat", "name": "Across"}))["room_id"]
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/1", {"msgtype": "m.text", "body": "before bob"})

    joined = await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
    assert joined == {"room_id": room}
    # B built its copy of the room from A's answer: same state, bob joined.
    name = await bob.call("GET", f"/rooms/{room}/state/m.room.name")
    assert name == {"name": "Across"}
    members = await alice.call("GET", f"/rooms/{room}/joined_members")
    assert set(members["joined"]) == {alice_id, bob_id}

    await bob.call("PUT", f"/rooms/{room}/send/m.room.message/b1", {"msgtype": "m.text", "body": "hi from B"})
    seen_on_a = await alice.wait_for_message(room, "hi from B")
    assert seen_on_a["sender"] == bob_id
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/a2", {"msgtype": "m.text", "body": "hi from A"})
    seen_on_b = await bob.wait_for_message(room, "hi from A")
    assert seen_on_b["sender"] == alice_id
    # Both servers hold the same event, byte for byte in what was signed.
    on_a = await a.event_store.get_event(seen_on_b["event_id"])
    on_b = await b.event_store.get_event(seen_on_b["event_id"])
    assert on_a is not None and on_b is not None and on_a.event["hashes"] == on_b.event["hashes"]

    # A room that does not federate refuses remote joins.
    private = (await alice.call("POST", "/createRoom", {
        "preset": "public_chat", "creation_content": {"m.federate": False}}))["room_id"]
    err = await bob.call("POST", f"/join/{private}?server_name={a_spec.name}", {}, expect=403)
    assert "does not federate" in err["error"]


async def test_history_before_the_join_is_fetched_right_after_it(pair: Pair) -> None:
    """A joined room's older messages are backfilled in the background straight after
    the join, before any client pages back; /messages then serves them from here."""
    import asyncio

    alice, bob, a_spec, b = pair.alice, pair.bob, pair.a_spec, pair.b
    room = (await alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    sent = [
        (await alice.call("PUT", f"/rooms/{room}/send/m.room.message/h{i}", {"msgtype": "m.text", "body": f"old {i}"}))[
            "event_id"]
        for i in range(5)
    ]
    await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
    async with asyncio.timeout(20):
        while True:
            held = await b.event_store.get_events(sent)
            if len(held) == len(sent) and not any(e.outlier for e in held.values()):
                break
            await asyncio.sleep(0.05)
    page = await bob.call("GET", f"/rooms/{room}/messages?dir=b&limit=20")
    bodies = [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]
    assert bodies == [f"old {i}" for i in reversed(range(5))]
