"""Relations across Accord and stock Synapse: thread replies and edits sent by a
Synapse user aggregate on Accord, and ours aggregate on Synapse."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import pytest

from homeserver.records.rooms import RoomRecord
from homeserver.rooms.creation import create_room
from tests.interop.test_federation_basics import Accord, accord, bob  # noqa: F401  (fixtures)

from .synapse import SynapseClient

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _thread(root: str) -> dict[str, Any]:
    return {"rel_type": "m.thread", "event_id": root}


async def _shared_room(acc: Accord, bob: SynapseClient) -> RoomRecord:  # noqa: F811
    room_id = await create_room(acc.hs, acc.alice, {"preset": "public_chat", "name": "Relations"})
    assert await bob.join(room_id, via=[acc.name]) == room_id
    room = await acc.hs.room_store.get_room(room_id)
    assert room is not None
    return room


async def _ours(acc: Accord, room: RoomRecord, event_id: str, done: Any) -> dict[str, Any]:
    """Our client view of an event (alice's), once `done` holds for its bundled relations."""
    async with asyncio.timeout(20):
        while True:
            ev = await acc.hs.room_service.get_event(event_id)
            if ev is not None:
                shown = (await acc.hs.room_history.format_client_events(room, [ev], user_id=acc.alice))[0]
                relations = shown["unsigned"].get("m.relations", {})
                if done(relations):
                    return relations
            await asyncio.sleep(0.1)


async def test_synapse_thread_and_edit_aggregate_here(accord: Accord, bob: SynapseClient) -> None:  # noqa: F811
    room = await _shared_room(accord, bob)
    root = await bob.send_text(room.room_id, "root from synapse")
    replies = [
        await bob.send(room.room_id, {"msgtype": "m.text", "body": f"reply {i}", "m.relates_to": _thread(root)})
        for i in range(2)
    ]
    edit = await bob.send(room.room_id, {
        "msgtype": "m.text", "body": "* root edited", "m.new_content": {"msgtype": "m.text", "body": "root edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": root},
    })
    relations = await _ours(accord, room, root, lambda r: r.get("m.thread", {}).get("count") == 2 and "m.replace" in r)
    assert relations["m.thread"]["latest_event"]["event_id"] == replies[-1]
    assert relations["m.thread"]["current_user_participated"] is False
    assert relations["m.replace"]["event_id"] == edit
    page = await accord.hs.relations.threads(
        room, accord.hs.visibility.viewer(accord.alice, room), accord.alice, participated=False, before=None, limit=5
    )
    assert [ev.event_id for ev in page.roots] == [root]


async def test_our_thread_and_edit_aggregate_on_synapse(accord: Accord, bob: SynapseClient) -> None:  # noqa: F811
    room = await _shared_room(accord, bob)
    rs = accord.hs.room_service

    async def send(content: dict[str, Any]) -> str:
        return (await rs.create_event(room, accord.alice, "m.room.message", content)).event_id

    root = await send({"msgtype": "m.text", "body": "root from accord"})
    replies = [await send({"msgtype": "m.text", "body": f"reply {i}", "m.relates_to": _thread(root)}) for i in range(2)]
    edit = await send({
        "msgtype": "m.text", "body": "* edited", "m.new_content": {"msgtype": "m.text", "body": "edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": root},
    })
    async with asyncio.timeout(30):
        while True:
            try:
                shown = await bob.event(room.room_id, root)
            except Exception:  # not arrived yet
                shown = {}
            relations = shown.get("unsigned", {}).get("m.relations", {})
            if relations.get("m.thread", {}).get("count") == 2 and "m.replace" in relations:
                break
            await asyncio.sleep(0.2)
    assert relations["m.thread"]["latest_event"]["event_id"] == replies[-1]
    assert relations["m.replace"]["event_id"] == edit
    # Synapse's /relations lists our replies as well.
    path = f"/_matrix/client/v1/rooms/{urllib.parse.quote(room.room_id)}/relations/{urllib.parse.quote(root)}/m.thread"
    listed = await bob.request("GET", path)
    assert [e["event_id"] for e in listed["chunk"]] == replies[::-1]
