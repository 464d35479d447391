"""Presence between two real servers: a user's presence goes out in m.presence
EDUs to the servers they share a room with and is shown there to room-mates;
updates for users of another server, users sharing no room with anyone here,
and malformed ones are dropped."""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.clock import Clock
from homeserver.presence import REMOTE_OFFLINE_AFTER_MS
from tests.homeserver.federation.servers import Client, Pair


class _Later(Clock):
    """Real time, moved past the silence after which a remote user is taken as offline."""

    def time_ms(self) -> int:
        return super().time_ms() + REMOTE_OFFLINE_AFTER_MS + 1


async def _wait_presence(client: Client, user_id: str, state: str, within: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            got = await client.call("GET", f"/presence/{user_id}/status")
            if got.get("presence") == state:
                return got
            await asyncio.sleep(0.05)


async def test_presence_across_servers(pair: Pair) -> None:
    a, b, a_spec, b_spec = pair.a, pair.b, pair.a_spec, pair.b_spec
    alice, bob, alice_id, bob_id = pair.alice, pair.bob, pair.alice_id, pair.bob_id
    room = (await alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})

    # A -> B: alice's status reaches bob, in /presence and in his /sync.
    await alice.call("PUT", f"/presence/{alice_id}/status", {"presence": "online", "status_msg": "at lunch"})
    got = await _wait_presence(bob, alice_id, "online")
    assert got["status_msg"] == "at lunch"
    sync = await bob.call("GET", "/sync")
    seen = [e for e in sync.get("presence", {}).get("events", []) if e["sender"] == alice_id]
    assert seen and seen[-1]["content"]["presence"] == "online"

    # B -> A, and a change after that.
    await bob.call("PUT", f"/presence/{bob_id}/status", {"presence": "unavailable"})
    await _wait_presence(alice, bob_id, "unavailable")
    # A stores a remote change with its stream position, as it does its own users':
    # after a restart the stream resumes with it instead of losing it.
    await a.presence.flush()
    stored = {row[0]: row for row in await a.presence.store.load_all()}
    assert stored[bob_id][1] == "unavailable"
    assert stored[bob_id][4] == await a.presence.current_position()
    await alice.call("PUT", f"/presence/{alice_id}/status", {"presence": "offline"})
    await _wait_presence(bob, alice_id, "offline")

    # Hostile pushes straight to A from B: only bob's own, well-formed one counts.
    carol = f"@carol:{b_spec.name}"  # of B, but in no room with anyone on A
    edu = {"edu_type": "m.presence", "content": {"push": [
        {"user_id": alice_id, "presence": "online", "last_active_ago": 0},  # A's own user
        {"user_id": "@mallory:127.0.0.9:1234", "presence": "online", "last_active_ago": 0},
        {"user_id": carol, "presence": "online", "last_active_ago": 0},
        {"user_id": bob_id, "presence": "dancing", "last_active_ago": 0},
        {"user_id": bob_id, "presence": "online", "last_active_ago": "soon"},
        "not an object",
    ]}}
    await b.federation_client.put_json(
        a_spec.name, "/_matrix/federation/v1/send/p1",
        {"origin": b_spec.name, "origin_server_ts": b.clock.time_ms(), "pdus": [], "edus": [edu]},
    )
    assert (await a.presence.get_presence(alice_id))["presence"] == "offline"
    assert (await a.presence.get_presence("@mallory:127.0.0.9:1234"))["presence"] == "offline"
    assert (await a.presence.get_presence(carol))["presence"] == "offline"
    bob_on_a = await a.presence.get_presence(bob_id)
    assert bob_on_a["presence"] == "online"  # the malformed ago is read as 0, the state taken
    assert bob_on_a.get("last_active_ago", 0) < 60_000
    # Remote presence is never sent on, and a remote user gone silent goes offline.
    a.presence.clock = _Later()  # the clock presence was built with
    assert bob_id in a.presence.check_timeouts()
    assert (await a.presence.get_presence(bob_id))["presence"] == "offline"
