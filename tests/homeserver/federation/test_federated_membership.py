"""Invites, rejections, knocks and leaves between two real servers over TLS.

Each scenario runs the whole path a user sees: the invitee's /sync shows the
invite with the room's stripped state before their server holds any of the
room, accepting joins through the inviting server, rejecting goes back to it
(or stays local when it cannot be reached), a knock is answered by an invite.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from federation.events import add_hashes_and_signature, compute_event_id, pdu_json
from federation.events.signing import signing_key_from_seed
from tests.homeserver.federation.servers import Client, Pair, ServerSpec, running_server
from tests.tls_ca import TestCA


async def sync_until(client: Client, predicate: Any, within: float = 10) -> dict[str, Any]:
    """Long-poll /sync until `predicate(response)` is true; returns that response."""
    since = None
    async with asyncio.timeout(within):
        while True:
            query = "?timeout=2000" + (f"&since={since}" if since else "")
            resp = await client.call("GET", f"/sync{query}")
            if predicate(resp):
                return resp
            since = resp["next_batch"]


async def member_state(client: Client, room: str, user_id: str) -> dict[str, Any] | None:
    """The member's state content, or None while the server has none (404/403)."""
    headers = {"Authorization": f"Bearer {client.token}"}
    url = f"{client.base}/rooms/{room}/state/m.room.member/{user_id}"
    async with client.s.get(url, headers=headers, ssl=client.ctx) as r:
        body: dict[str, Any] = await r.json()
        return body if r.status == 200 else None


async def wait_membership(client: Client, room: str, user_id: str, membership: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            state = await member_state(client, room, user_id)
            if state is not None and state.get("membership") == membership:
                return state
            await asyncio.sleep(0.05)


def invite_of(resp: dict[str, Any], room: str) -> dict[str, Any] | None:
    entry: dict[str, Any] | None = resp.get("rooms", {}).get("invite", {}).get(room)
    return entry


def left(resp: dict[str, Any], room: str) -> dict[str, Any] | None:
    entry: dict[str, Any] | None = resp.get("rooms", {}).get("leave", {}).get(room)
    return entry


async def test_invite_to_remote_user_then_accept(pair: Pair) -> None:
    alice, bob = pair.alice, pair.bob
    room = (await alice.call("POST", "/createRoom", {"preset": "private_chat", "name": "Plans", "topic": "Q3"}))[
        "room_id"
    ]
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/1", {"msgtype": "m.text", "body": "before"})
    await alice.call("POST", f"/rooms/{room}/invite", {"user_id": pair.bob_id})

    resp = await sync_until(bob, lambda r: invite_of(r, room) is not None)
    events = invite_of(resp, room)["invite_state"]["events"]  # type: ignore[index]
    by_type = {e["type"]: e for e in events}
    assert by_type["m.room.name"]["content"] == {"name": "Plans"}
    assert by_type["m.room.create"]["sender"] == pair.alice_id
    member = by_type["m.room.member"]
    assert member["state_key"] == pair.bob_id and member["content"]["membership"] == "invite"
    assert member["sender"] == pair.alice_id
    # Stripped state is stripped: no signatures or hashes reach the client.
    assert all("signatures" not in e and "hashes" not in e for e in events)

    # The invite in A's room carries B's countersignature.
    stored = await pair.a.event_store.get_event(member["event_id"])
    assert stored is not None and set(stored.event["signatures"]) == {pair.a_spec.name, pair.b_spec.name}

    # Inviting again is a no-op, as locally.
    await alice.call("POST", f"/rooms/{room}/invite", {"user_id": pair.bob_id})

    # Accepting: a plain /join on the room ID goes through the inviting server.
    assert await bob.call("POST", f"/rooms/{room}/join", {}) == {"room_id": room}
    members = await alice.call("GET", f"/rooms/{room}/joined_members")
    assert set(members["joined"]) == {pair.alice_id, pair.bob_id}
    await bob.call("PUT", f"/rooms/{room}/send/m.room.message/b", {"msgtype": "m.text", "body": "hello A"})
    assert (await alice.wait_for_message(room, "hello A"))["sender"] == pair.bob_id
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/2", {"msgtype": "m.text", "body": "hello B"})
    await bob.wait_for_message(room, "hello B")

    # Leaving a room both servers are in is an ordinary event, seen on A.
    await bob.call("POST", f"/rooms/{room}/leave", {})
    await wait_membership(alice, room, pair.bob_id, "leave")


async def test_reject_remote_invite_goes_back_to_the_inviting_server(pair: Pair) -> None:
    alice, bob = pair.alice, pair.bob
    room = (await bob.call("POST", "/createRoom", {"preset": "private_chat", "name": "From B"}))["room_id"]
    await bob.call("POST", f"/rooms/{room}/invite", {"user_id": pair.alice_id, "reason": "join us"})
    resp = await sync_until(alice, lambda r: invite_of(r, room) is not None)
    since = resp["next_batch"]
    member = [e for e in invite_of(resp, room)["invite_state"]["events"] if e["type"] == "m.room.member"][0]  # type: ignore[index]
    assert member["content"]["reason"] == "join us"

    await alice.call("POST", f"/rooms/{room}/leave", {"reason": "not now"})
    # A's client sees the room move to "leave"...
    async with asyncio.timeout(10):
        while True:
            resp = await alice.call("GET", f"/sync?since={since}&timeout=2000")
            since = resp["next_batch"]
            entry = left(resp, room)
            if entry is not None:
                break
    leave_event = entry["timeline"]["events"][-1]
    assert leave_event["content"]["membership"] == "leave" and leave_event["state_key"] == pair.alice_id
    # ...and B's room holds the rejection, made through make_leave/send_leave.
    state = await wait_membership(bob, room, pair.alice_id, "leave")
    assert state.get("reason") == "not now"
    # The rejected invite no longer shows on A.
    full = await alice.call("GET", "/sync")
    assert invite_of(full, room) is None


async def test_reject_when_the_inviting_server_is_gone_stays_local(tmp_path: Path, ca: TestCA) -> None:
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with running_server(a_spec, ca) as _a, aiohttp.ClientSession() as s:
        alice = Client(s, a_spec, ctx)
        alice_id = await alice.register("alice")
        async with running_server(b_spec, ca):
            bob = Client(s, b_spec, ctx)
            await bob.register("bob")
            room = (await bob.call("POST", "/createRoom", {"preset": "private_chat"}))["room_id"]
            await bob.call("POST", f"/rooms/{room}/invite", {"user_id": alice_id})
            await sync_until(alice, lambda r: invite_of(r, room) is not None)
        since = (await alice.call("GET", "/sync"))["next_batch"]
        # B is stopped: the rejection cannot travel, but A's user is rid of the invite.
        await alice.call("POST", f"/rooms/{room}/leave", {})
        full = await alice.call("GET", "/sync")
        assert invite_of(full, room) is None
        # The room is left; with use_state_after (v1.16) the leave is its state too.
        left = (await alice.call("GET", f"/sync?since={since}&use_state_after=true"))["rooms"]["leave"][room]
        (leave,) = left["state_after"]["events"]
        assert leave["state_key"] == alice_id and leave["content"]["membership"] == "leave" and "state" not in left
        # Joining now has no server to go through.
        await alice.call("POST", f"/rooms/{room}/join", {}, expect=404)


async def test_knock_on_remote_room_answered_by_invite(pair: Pair) -> None:
    alice, bob = pair.alice, pair.bob
    room = (await alice.call("POST", "/createRoom", {
        "preset": "private_chat", "name": "Knockable",
        "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
    }))["room_id"]
    answer = await bob.call("POST", f"/knock/{room}?via={pair.a_spec.name}", {"reason": "let me in"})
    assert answer == {"room_id": room}
    resp = await sync_until(bob, lambda r: room in r.get("rooms", {}).get("knock", {}))
    knock_state = {e["type"]: e for e in resp["rooms"]["knock"][room]["knock_state"]["events"]}
    assert knock_state["m.room.name"]["content"] == {"name": "Knockable"}
    assert knock_state["m.room.member"]["content"]["membership"] == "knock"
    # A sees the knock in its room.
    state = await wait_membership(alice, room, pair.bob_id, "knock")
    assert state["reason"] == "let me in"
    # A admits bob by inviting him; bob's knock becomes an invite, then a join.
    await alice.call("POST", f"/rooms/{room}/invite", {"user_id": pair.bob_id})
    await sync_until(bob, lambda r: invite_of(r, room) is not None)
    assert await bob.call("POST", f"/join/{room}", {}) == {"room_id": room}
    members = await alice.call("GET", f"/rooms/{room}/joined_members")
    assert pair.bob_id in members["joined"]


async def test_internal_rooms_refuse_remote_users(pair: Pair) -> None:
    alice = pair.alice
    internal = (await alice.call("POST", "/createRoom", {
        "preset": "private_chat", "creation_content": {"m.federate": False}}))["room_id"]
    err = await alice.call("POST", f"/rooms/{internal}/invite", {"user_id": pair.bob_id}, expect=403)
    assert err["errcode"] == "M_FORBIDDEN" and "internal" in err["error"]
    # No invite was persisted.
    members = await alice.call("GET", f"/rooms/{internal}/members")
    assert [m["state_key"] for m in members["chunk"]] == [pair.alice_id]


async def _signed_invite(hs_name: str, key_seed: bytes, room: str, sender: str, target: str, rv: str = "12") -> dict:
    key = signing_key_from_seed(key_seed, "forged")
    event = {
        "type": "m.room.member", "room_id": room, "sender": sender, "state_key": target,
        "content": {"membership": "invite"}, "origin_server_ts": 1, "depth": 3,
        "prev_events": ["$" + "a" * 43], "auth_events": ["$" + "b" * 43],
    }
    return add_hashes_and_signature(event, rv, hs_name, key)


async def test_forged_invites_are_refused(pair: Pair) -> None:
    """A (acting as an inviting server) sends B invites that must not be accepted:
    a sender from another server, an event signed by a key A does not hold, a
    target on another server, an unsupported room version."""
    a, b_name = pair.a, pair.b_spec.name
    client = a.federation_client
    room = "!forged:" + pair.a_spec.name

    async def put(event: dict[str, Any], version: Any = "12", state: Any = None) -> Any:
        event_id = compute_event_id(event, "12")
        body = {"room_version": version, "event": pdu_json(event), "invite_room_state": state or []}
        try:
            return await client.put_json(b_name, f"/_matrix/federation/v2/invite/{room}/{event_id}", body)
        except Exception as e:
            return e

    # Signed by A's real key but the sender is not on A.
    event = add_hashes_and_signature({
        "type": "m.room.member", "room_id": room, "sender": "@eve:elsewhere.example", "state_key": pair.bob_id,
        "content": {"membership": "invite"}, "origin_server_ts": 1, "depth": 3,
        "prev_events": [], "auth_events": [],
    }, "10", pair.a_spec.name, a.signing_key)
    result = await put(event, version="10")
    assert getattr(result, "status", None) == 400 and result.errcode == "M_INVALID_PARAM"

    # The sender is on A but the signature is not A's key.
    forged = await _signed_invite(pair.a_spec.name, b"\x01" * 32, room, pair.alice_id, pair.bob_id)
    result = await put(forged, version="10")
    assert getattr(result, "status", None) == 403

    # Targeting a user of another server.
    event = add_hashes_and_signature({
        "type": "m.room.member", "room_id": room, "sender": pair.alice_id, "state_key": "@x:other.example",
        "content": {"membership": "invite"}, "origin_server_ts": 1, "depth": 3, "prev_events": [],
        "auth_events": [],
    }, "10", pair.a_spec.name, a.signing_key)
    result = await put(event, version="10")
    assert getattr(result, "status", None) == 400

    # An unknown room version.
    result = await put(event, version="999")
    assert getattr(result, "status", None) == 400 and result.errcode == "M_INCOMPATIBLE_ROOM_VERSION"

    # Nothing reached bob.
    full = await pair.bob.call("GET", "/sync")
    assert "invite" not in full.get("rooms", {})
