"""Rooms shared between Accord and stock Synapse: joins in both directions over
make_join/send_join, in room versions 1 (event IDs named by servers, state
resolution v1), 5 (key validity), 9 (restricted joins), 10, 11 and 12, and
messages both ways."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from homeserver.rooms.creation import create_room
from tests.interop.test_federation_basics import Accord, accord, bob  # noqa: F401  (fixtures)

from .synapse import SynapseClient, SynapseServer, timeline_events

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _our_messages(acc: Accord, room_id: str) -> list[dict[str, Any]]:
    room = await acc.hs.room_store.get_room(room_id)
    assert room is not None
    events = await acc.hs.event_store.room_stream(
        room.room_nid, from_pos=acc.hs.room_service.stream.current, to_pos=None, backwards=True, limit=50
    )
    return [e.event for e in events if e.type == "m.room.message"]


async def _wait_ours(acc: Accord, room_id: str, body: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            for ev in await _our_messages(acc, room_id):
                if ev["content"].get("body") == body:
                    return ev
            await asyncio.sleep(0.1)


VERSIONS = ["1", "5", "9", "10", "11", "12"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_we_join_a_synapse_room(accord: Accord, bob: SynapseClient, synapse: SynapseServer, version: str) -> None:  # noqa: F811
    room_id = await bob.create_room(preset="public_chat", room_version=version, name=f"Synapse v{version}")
    await bob.send_text(room_id, "before alice")
    joined = await accord.hs.federated_joins.join_remote(accord.alice, room_id, [synapse.server_name])
    assert joined == room_id
    room = await accord.hs.room_store.get_room(room_id)
    assert room is not None and room.room_version == version
    name = await accord.hs.room_service.current_state_event(room, ("m.room.name", ""))
    assert name is not None and name.event["content"] == {"name": f"Synapse v{version}"}

    await accord.hs.room_service.create_event(room, accord.alice, "m.room.message", {"msgtype": "m.text", "body": f"hi synapse {version}"})
    sync = await bob.sync_until(lambda s: any(
        e.get("content", {}).get("body") == f"hi synapse {version}" for e in timeline_events(s, room_id)))
    assert sync
    await bob.send_text(room_id, f"hi accord {version}")
    ours = await _wait_ours(accord, room_id, f"hi accord {version}")
    assert ours["sender"] == bob.user_id
    # History from before our join comes by backfill from Synapse.
    assert await accord.hs.room_backfill.backfill(room, 20) > 0
    before = await _wait_ours(accord, room_id, "before alice")
    assert before["sender"] == bob.user_id


@pytest.mark.parametrize("version", ["1", "5", "9", "12"])
async def test_synapse_joins_our_room(accord: Accord, bob: SynapseClient, synapse: SynapseServer, version: str) -> None:  # noqa: F811
    room_id = await create_room(
        accord.hs, accord.alice, {"preset": "public_chat", "name": "Accord room", "room_version": version}
    )
    joined = await bob.join(room_id, via=[accord.name])
    assert joined == room_id
    room = await accord.hs.room_store.get_room(room_id)
    assert room is not None
    assert (await accord.hs.room_store.membership_of(room.room_nid, bob.user_id))[0] == "join"
    await bob.send_text(room_id, "hello from synapse")
    await _wait_ours(accord, room_id, "hello from synapse")
    await accord.hs.room_service.create_event(room, accord.alice, "m.room.message", {"msgtype": "m.text", "body": "hello back"})
    await bob.sync_until(lambda s: any(
        e.get("content", {}).get("body") == "hello back" for e in timeline_events(s, room_id)))
    # Synapse joined with partial state (we serve omit_members, and the room has a name, so
    # no membership came with the join); the rest it fetches from us after the join.
    async with asyncio.timeout(60):
        while True:
            members = await bob.request("GET", f"/rooms/{room_id}/joined_members")
            if set(members.get("joined", {})) == {accord.alice, bob.user_id}:
                break
            await asyncio.sleep(0.2)
