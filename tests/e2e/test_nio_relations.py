"""matrix-nio end to end: threads, edits and reactions through a real client library.

A thread with replies appears in /threads and in its root's bundled aggregation, an
edit replaces the content shown with the original, and reactions are listed by
/relations (nio's own iterators, which follow next_batch)."""

from __future__ import annotations

from pathlib import Path

import nio
from nio.api import RelationshipType, ThreadInclusion

from tests.e2e.server_process import ServerProcess


async def _client(url: str, name: str) -> nio.AsyncClient:
    client = nio.AsyncClient(url, name)
    resp = await client.register(name, f"{name}-password-1")
    assert isinstance(resp, nio.RegisterResponse), resp
    return client


async def _send(client: nio.AsyncClient, room: str, content: dict, event_type: str = "m.room.message") -> str:
    resp = await client.room_send(room, event_type, content)
    assert isinstance(resp, nio.RoomSendResponse), resp
    return resp.event_id


async def test_nio_threads_edits_reactions(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    alice = await _client(server.client_url, "alice")
    bob = await _client(server.client_url, "bob")
    try:
        created = await alice.room_create(name="Relations")
        assert isinstance(created, nio.RoomCreateResponse), created
        room = created.room_id
        assert isinstance(await alice.room_invite(room, bob.user_id), nio.RoomInviteResponse)
        assert isinstance(await bob.join(room), nio.JoinResponse)

        root = await _send(alice, room, {"msgtype": "m.text", "body": "thread root"})
        other = await _send(alice, room, {"msgtype": "m.text", "body": "no thread here"})
        replies = [
            await _send(bob, room, {"msgtype": "m.text", "body": f"reply {i}",
                                     "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
            for i in range(3)
        ]
        thread_roots = [e.event_id async for e in alice.room_get_threads(room, ThreadInclusion.all, limit=1)]
        assert thread_roots == [root]
        assert [e.event_id async for e in alice.room_get_threads(room, ThreadInclusion.participated)] == [root]
        got = await alice.room_get_event(room, root)
        assert isinstance(got, nio.RoomGetEventResponse), got
        thread = got.event.source["unsigned"]["m.relations"]["m.thread"]
        assert thread["count"] == 3 and thread["latest_event"]["event_id"] == replies[-1]
        assert thread["current_user_participated"] is True  # alice sent the root
        listed = [e.event_id async for e in bob.room_get_event_relations(room, root, RelationshipType.thread, limit=2)]
        assert listed == replies[::-1]

        edit = await _send(alice, room, {
            "msgtype": "m.text", "body": "* edited", "m.new_content": {"msgtype": "m.text", "body": "edited"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": other},
        })
        shown = await bob.room_get_event(room, other)
        assert isinstance(shown, nio.RoomGetEventResponse), shown
        replacement = shown.event.source["unsigned"]["m.relations"]["m.replace"]
        assert replacement["event_id"] == edit
        assert replacement["content"]["m.new_content"]["body"] == "edited"

        likes = [await _send(c, room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": other, "key": k}},
                             "m.reaction") for c, k in ((alice, "👍"), (bob, "🎉"))]
        reactions = [e async for e in bob.room_get_event_relations(room, other, RelationshipType.annotation, "m.reaction")]
        assert [e.event_id for e in reactions] == likes[::-1]
        assert [e.source["content"]["m.relates_to"]["key"] for e in reactions] == ["🎉", "👍"]
    finally:
        for c in (alice, bob):
            await c.close()
        assert await server.stop() == 0
