"""Three of our servers on loopback with real TLS share one room and everything a room
does: invites and joins both ways, messages, typing, receipts, presence, a concurrent state fork
that all three resolve the same way, kick, ban, leave, and a peer stopped in the middle
of the conversation and restarted, which then holds every message in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.homeserver.federation.servers import Client, Servers
from tests.homeserver.federation.test_federated_membership import sync_until, wait_membership

# Retry quickly: the restart scenario must not wait out a long backoff.
FAST_RETRY = {"retry_base_s": 0.2, "retry_cap_s": 1.0}


def ephemeral(resp: dict[str, Any], room: str, kind: str) -> list[dict[str, Any]]:
    events = resp.get("rooms", {}).get("join", {}).get(room, {}).get("ephemeral", {}).get("events", [])
    return [e for e in events if e["type"] == kind]


async def bodies(client: Client, room: str, limit: int = 100) -> list[str]:
    """Message bodies of the room, oldest first, as the client's /messages pages them."""
    page = await client.call("GET", f"/rooms/{room}/messages?dir=b&limit={limit}")
    return [e["content"]["body"] for e in reversed(page["chunk"]) if e["type"] == "m.room.message"]


async def eventually(check: Callable[[], Any], within: float = 15) -> Any:
    """Poll `check` (an async callable) until it returns something truthy."""
    async with asyncio.timeout(within):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


async def test_three_servers_share_a_room(servers: Servers) -> None:
    a_spec, b_spec, c_spec = (servers.spec(f"127.0.0.{i}") for i in (2, 3, 4))
    await servers.start(a_spec, federation=FAST_RETRY)
    await servers.start(c_spec, federation=FAST_RETRY)
    alice, carol = servers.client(a_spec), servers.client(c_spec)
    alice_id, carol_id = await alice.register("alice"), await carol.register("carol")
    await servers.start(b_spec, federation=FAST_RETRY)
    bob = servers.client(b_spec)
    bob_id = await bob.register("bob")

    # --- invites and joins, both ways -----------------------------------------
    room = (await alice.call("POST", "/createRoom", {"preset": "public_chat", "name": "Three"}))["room_id"]
    await alice.call("POST", f"/rooms/{room}/invite", {"user_id": bob_id})
    await sync_until(bob, lambda r: room in r.get("rooms", {}).get("invite", {}))
    await bob.call("POST", f"/rooms/{room}/join", {})
    # bob (on B), made a moderator by alice, invites carol (on C): the invite goes
    # B -> C, the join C -> B.
    await alice.call("PUT", f"/rooms/{room}/state/m.room.power_levels", {
        **(await alice.call("GET", f"/rooms/{room}/state/m.room.power_levels")),
        "users": {bob_id: 50},  # v12: the creator is not listed
    })
    await eventually(lambda: _power_of(bob, room, bob_id, 50))
    await bob.call("POST", f"/rooms/{room}/invite", {"user_id": carol_id})
    await sync_until(carol, lambda r: room in r.get("rooms", {}).get("invite", {}))
    await carol.call("POST", f"/rooms/{room}/join", {})
    for client in (alice, bob, carol):
        for member in (alice_id, bob_id, carol_id):
            await wait_membership(client, room, member, "join")

    # --- messages: each one reaches everyone ------------------------------------
    for i, (client, name) in enumerate(((alice, "alice"), (bob, "bob"), (carol, "carol"))):
        await client.call("PUT", f"/rooms/{room}/send/m.room.message/m{i}",
                          {"msgtype": "m.text", "body": f"hello from {name}"})
        for other in (alice, bob, carol):
            await other.wait_for_message(room, f"hello from {name}")
    expected = ["hello from alice", "hello from bob", "hello from carol"]
    for client in (alice, bob, carol):
        assert await bodies(client, room) == expected

    # --- typing and receipts reach the other two servers --------------------------
    await bob.call("PUT", f"/rooms/{room}/typing/{bob_id}", {"typing": True, "timeout": 30000})
    for client in (alice, carol):
        await sync_until(client, lambda r: any(
            bob_id in e["content"]["user_ids"] for e in ephemeral(r, room, "m.typing")))
    last = await carol.wait_for_message(room, "hello from carol")
    await carol.call("POST", f"/rooms/{room}/receipt/m.read/{last['event_id']}", {})
    for client in (alice, bob):
        await sync_until(client, lambda r: any(
            carol_id in e["content"].get(last["event_id"], {}).get("m.read", {})
            for e in ephemeral(r, room, "m.receipt")))

    # --- presence: carol's status reaches the two servers she shares the room with ---
    await carol.call("PUT", f"/presence/{carol_id}/status", {"presence": "unavailable", "status_msg": "away"})
    for client in (alice, bob):
        got = await eventually(lambda c=client: _presence_is(c, carol_id, "unavailable"))
        assert got.get("status_msg") == "away"

    # --- a concurrent state fork, resolved the same way everywhere -----------------
    forked = await asyncio.gather(
        alice.call("PUT", f"/rooms/{room}/state/m.room.topic", {"topic": "from A"}),
        bob.call("PUT", f"/rooms/{room}/state/m.room.topic", {"topic": "from B"}),
    )
    fork_ids = [f["event_id"] for f in forked]

    async def topics_agree() -> str | None:
        # Only once every server holds both sides is agreement a resolution, not a race.
        for client in (alice, bob, carol):
            for event_id in fork_ids:
                if not await _has_event(client, room, event_id):
                    return None
        seen = [(await client.call("GET", f"/rooms/{room}/state/m.room.topic"))["topic"]
                for client in (alice, bob, carol)]
        return seen[0] if len(set(seen)) == 1 else None

    agreed = await eventually(topics_agree)
    assert agreed in ("from A", "from B")
    # A message after the fork joins both branches; the topic stays as resolved.
    await carol.call("PUT", f"/rooms/{room}/send/m.room.message/after-fork",
                     {"msgtype": "m.text", "body": "after the fork"})
    for client in (alice, bob, carol):
        await client.wait_for_message(room, "after the fork")
        assert (await client.call("GET", f"/rooms/{room}/state/m.room.topic"))["topic"] == agreed

    # --- a peer stopped mid-conversation, then restarted: nothing lost, order kept ---
    await servers.stop(b_spec)
    sent = [f"while B was down {i}" for i in range(5)]
    for i, body in enumerate(sent):
        sender = alice if i % 2 == 0 else carol
        await sender.call("PUT", f"/rooms/{room}/send/m.room.message/down{i}", {"msgtype": "m.text", "body": body})
        await (carol if sender is alice else alice).wait_for_message(room, body)
    await servers.start(b_spec, federation=FAST_RETRY)
    bob = servers.client(b_spec)
    await bob.login("bob")
    await bob.wait_for_message(room, sent[-1], within=20)
    on_a = await bodies(alice, room)
    on_b = await bodies(bob, room)
    assert on_b[-len(sent):] == sent
    assert on_b == on_a

    # --- kick, ban and leave, seen on all three ------------------------------------
    await alice.call("POST", f"/rooms/{room}/kick", {"user_id": carol_id, "reason": "tidy up"})
    for client in (alice, bob):
        await wait_membership(client, room, carol_id, "leave")
    await carol.call("POST", f"/rooms/{room}/join?server_name={a_spec.name}", {})
    await wait_membership(alice, room, carol_id, "join")
    await alice.call("POST", f"/rooms/{room}/ban", {"user_id": carol_id, "reason": "enough"})
    for client in (alice, bob):
        await wait_membership(client, room, carol_id, "ban")
    err = await carol.call("POST", f"/join/{room}?server_name={a_spec.name}", {}, expect=403)
    assert "banned" in err["error"]
    await bob.call("POST", f"/rooms/{room}/leave", {})
    await wait_membership(alice, room, bob_id, "leave")
    members = await alice.call("GET", f"/rooms/{room}/joined_members")
    assert set(members["joined"]) == {alice_id}


async def _power_of(client: Client, room: str, user_id: str, level: int) -> bool:
    levels = await client.call("GET", f"/rooms/{room}/state/m.room.power_levels")
    return bool(levels.get("users", {}).get(user_id) == level)


async def _presence_is(client: Client, user_id: str, state: str) -> dict[str, Any] | None:
    got: dict[str, Any] = await client.call("GET", f"/presence/{user_id}/status")
    return got if got.get("presence") == state else None


async def _has_event(client: Client, room: str, event_id: str) -> bool:
    headers = {"Authorization": f"Bearer {client.token}"}
    async with client.s.get(f"{client.base}/rooms/{room}/event/{event_id}", headers=headers, ssl=client.ctx) as r:
        return r.status == 200
