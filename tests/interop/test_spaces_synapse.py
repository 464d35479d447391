"""Spaces between Accord and stock Synapse: a space on Accord whose children live on
Synapse (Accord asks Synapse's GET /_matrix/federation/v1/hierarchy/{roomId}), and a
space on Synapse whose children live on Accord (Synapse asks ours)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.rooms.creation import create_room
from tests.interop.test_federation_basics import Accord, accord, bob  # noqa: F401  (fixtures)

from .synapse import SynapseClient, SynapseServer, _q

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _accord_link(acc: Accord, space: str, child: str, via: str, **content: Any) -> None:
    room = await acc.hs.room_store.get_room(space)
    assert room is not None
    await acc.hs.room_service.create_event(
        room, acc.alice, "m.space.child", {"via": [via], **content}, state_key=child
    )


async def test_accord_space_with_children_on_synapse(
    accord: Accord, bob: SynapseClient, synapse: SynapseServer  # noqa: F811
) -> None:
    space = await create_room(accord.hs, accord.alice, {
        "preset": "public_chat", "name": "Accord space", "creation_content": {"type": "m.space"},
    })
    public = await bob.create_room(preset="public_chat", name="Synapse public room", topic="hello")
    private = await bob.create_room(preset="private_chat", name="Synapse private room")
    sub = await bob.create_room(preset="public_chat", name="Synapse subspace",
                                creation_content={"type": "m.space"})
    deep = await bob.create_room(preset="public_chat", name="Synapse deep room")
    await bob.send_state(sub, "m.space.child", {"via": [synapse.server_name]}, deep)
    await _accord_link(accord, space, public, synapse.server_name, order="1")
    await _accord_link(accord, space, private, synapse.server_name, order="2")
    await _accord_link(accord, space, sub, synapse.server_name, order="3", suggested=True)

    body = await accord.hs.space_hierarchy.hierarchy(accord.alice, space)
    by_id = {r["room_id"]: r for r in body["rooms"]}
    assert [r["room_id"] for r in body["rooms"]] == [space, public, sub, deep]
    assert by_id[public]["name"] == "Synapse public room" and by_id[public]["topic"] == "hello"
    assert by_id[public]["join_rule"] == "public" and by_id[public]["num_joined_members"] == 1
    assert by_id[sub]["room_type"] == "m.space"
    assert [c["state_key"] for c in by_id[sub]["children_state"]] == [deep]
    suggested = await accord.hs.space_hierarchy.hierarchy(accord.alice, space, suggested_only=True)
    assert [r["room_id"] for r in suggested["rooms"]] == [space, sub]


async def test_synapse_space_with_children_on_accord(
    accord: Accord, bob: SynapseClient, synapse: SynapseServer  # noqa: F811
) -> None:
    public = await create_room(accord.hs, accord.alice, {"preset": "public_chat", "name": "Accord public room"})
    private = await create_room(accord.hs, accord.alice, {"preset": "private_chat", "name": "Accord private"})
    space = await bob.create_room(preset="public_chat", name="Synapse space", creation_content={"type": "m.space"})
    await bob.send_state(space, "m.space.child", {"via": [accord.name]}, public)
    await bob.send_state(space, "m.space.child", {"via": [accord.name]}, private)

    body = await bob.request("GET", f"/_matrix/client/v1/rooms/{_q(space)}/hierarchy")
    by_id = {r["room_id"]: r for r in body["rooms"]}
    assert set(by_id) == {space, public}
    assert by_id[public]["name"] == "Accord public room"
    assert by_id[public]["join_rule"] == "public"
