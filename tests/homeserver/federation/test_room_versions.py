"""Rooms of the older versions between two of our servers: join, talk both
ways, state, redaction, history from before the join, and a federated invite
(v2 endpoint) accepted, in versions with each event ID format (v1/v2 named by
the server, v3 base64, v4+ URL-safe), key validity (v5) and restricted
joins (v9)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest

from federation.events import build_event, get_room_version, pdu_json
from tests.homeserver.federation.servers import Pair


@pytest.mark.parametrize("version", ["1", "2", "3", "5", "9"])
async def test_old_version_room_across_servers(pair: Pair, version: str) -> None:
    alice, bob, a_name = pair.alice, pair.bob, pair.a_spec.name
    room = (await alice.call("POST", "/createRoom", {
        "room_version": version, "preset": "public_chat", "name": f"v{version}"}))["room_id"]
    await alice.say(room, "before bob")

    join_body = {"reason": "partner", "org.example.team": "ops"}
    assert await bob.call("POST", f"/join/{room}?server_name={a_name}", join_body) == {"room_id": room}
    # The client's membership content travels with a remote join too.
    bobs = await alice.call("GET", f"/rooms/{room}/state/m.room.member/{pair.bob_id}")
    assert bobs["reason"] == "partner" and bobs["org.example.team"] == "ops"
    stored = await pair.b.room_store.get_room(room)
    assert stored is not None and stored.room_version == version
    assert await bob.call("GET", f"/rooms/{room}/state/m.room.name") == {"name": f"v{version}"}

    own = await bob.say(room, "hi from B")
    seen = await alice.wait_for_message(room, "hi from B")
    assert seen["event_id"] == own
    await alice.say(room, "hi from A")
    await bob.wait_for_message(room, "hi from A")
    # History from before the join reaches B too (the join's state and backfill).
    await bob.wait_for_message(room, "before bob")

    # Event IDs look as the version says, and both servers hold the same event.
    if get_room_version(version).event_id_in_pdu:
        assert own.endswith(":" + pair.b_spec.name)
    else:
        assert ":" not in own
    on_a = await pair.a.event_store.get_event(own)
    on_b = await pair.b.event_store.get_event(own)
    assert on_a is not None and on_b is not None
    assert on_a.event["prev_events"] == on_b.event["prev_events"]
    if get_room_version(version).event_id_in_pdu:
        assert all(isinstance(p, list) and set(p[1]) == {"sha256"} for p in on_a.event["prev_events"])

    # A raises bob's level; bob's state change (which needs it) and his redaction
    # of his own message are applied on A.
    levels = await alice.call("GET", f"/rooms/{room}/state/m.room.power_levels")
    levels["users"][pair.bob_id] = 50
    await alice.call("PUT", f"/rooms/{room}/state/m.room.power_levels", levels)
    for _ in range(200):
        theirs = await bob.call("GET", f"/rooms/{room}/state/m.room.power_levels")
        if theirs["users"].get(pair.bob_id) == 50:
            break
        await asyncio.sleep(0.05)
    await bob.call("PUT", f"/rooms/{room}/state/m.room.topic", {"topic": "from B"})
    await bob.call("PUT", f"/rooms/{room}/redact/{quote(own, safe='')}/r1", {})
    for _ in range(200):
        page = await alice.call("GET", f"/rooms/{room}/messages?dir=b&limit=30")
        redacted = [e for e in page["chunk"] if e["event_id"] == own and e["content"] == {}]
        topic = await alice.raw("GET", f"/rooms/{room}/state/m.room.topic")
        if redacted and topic == (200, {"topic": "from B"}):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("B's topic or redaction did not reach A")

    # A federated invite to another user of B, accepted.
    carol = pair.client(pair.b_spec)
    carol_id = await carol.register(f"carol{version}")
    await alice.call("POST", f"/rooms/{room}/invite", {"user_id": carol_id})
    for _ in range(200):
        state = await alice.call("GET", f"/rooms/{room}/state")
        if any(e["type"] == "m.room.member" and e["state_key"] == carol_id for e in state):
            break
        await asyncio.sleep(0.05)
    assert await carol.call("POST", f"/rooms/{room}/join", {}) == {"room_id": room}
    for _ in range(200):
        members = await alice.call("GET", f"/rooms/{room}/joined_members")
        if set(members["joined"]) == {pair.alice_id, pair.bob_id, carol_id}:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"carol's join did not reach A: {members}")


async def test_v1_invite_endpoint_for_a_v1_room(pair: Pair) -> None:
    """PUT /_matrix/federation/v1/invite (no room version in the body; the answer
    is [200, {"event": ...}]) for a version 1 room B has never seen: B countersigns
    the event, which keeps its server-chosen ID, and bob sees the invite."""
    a_name, b_name = pair.a_spec.name, pair.b_spec.name
    room = f"!oldroom:{a_name}"
    invite = build_event(
        "1", room_id=room, sender=pair.alice_id, event_type="m.room.member",
        content={"membership": "invite"}, state_key=pair.bob_id,
        prev_events=[f"$prev:{a_name}"], auth_events=[f"$create:{a_name}"], depth=4,
        origin_server_ts=pair.a.clock.time_ms(), signing_key=pair.a.signing_key, server_name=a_name,
        reference_hashes={f"$prev:{a_name}": "aGFzaA", f"$create:{a_name}": "aGFzaA"},
        event_id=f"$invite1:{a_name}",
    )
    body = {**pdu_json(invite, "1"), "unsigned": {"invite_room_state": [
        {"type": "m.room.name", "state_key": "", "sender": pair.alice_id, "content": {"name": "Old"}},
    ]}}
    answer = await pair.a.federation_client.put_json(
        b_name, f"/_matrix/federation/v1/invite/{quote(room, safe='')}/{quote(invite['event_id'], safe='')}", body,
    )
    assert isinstance(answer, list) and answer[0] == 200
    signed = answer[1]["event"]
    assert signed["event_id"] == invite["event_id"]
    assert signed["prev_events"] == invite["prev_events"]
    assert set(signed["signatures"]) == {a_name, b_name}
    for _ in range(200):
        invites = (await pair.bob.call("GET", "/sync")).get("rooms", {}).get("invite", {})
        if room in invites:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the v1 invite did not reach bob")
    names = [e for e in invites[room]["invite_state"]["events"] if e["type"] == "m.room.name"]
    assert names and names[0]["content"] == {"name": "Old"}
