"""The deprecated snapshot endpoints, GET /rooms/{roomId}/initialSync and GET
/initialSync, against the spec's response shapes: recent messages oldest first
with tokens that continue in /messages, state, visibility, account data, and the
same history visibility rules as every other read."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    errcode,
    invite,
    join,
    leave,
    send,
    set_visibility,
    uid,
    user,
)


async def test_room_initial_sync(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice, name="Snapshot")
    sent = [await send(api, room, alice, str(i)) for i in range(5)]
    await api.put(f"user/{uid('alice')}/rooms/{room}/account_data/org.example.note", {"n": 1}, token=alice)
    await api.put(f"directory/list/room/{room}", {"visibility": "public"}, token=alice)

    info = await api.get(f"rooms/{room}/initialSync?limit=3", token=alice)
    assert info["room_id"] == room and info["membership"] == "join"
    assert info["visibility"] == "public"
    assert [e["event_id"] for e in info["messages"]["chunk"]] == sent[2:]  # oldest first
    assert {(e["type"], e["state_key"]) for e in info["state"]} >= {
        ("m.room.create", ""), ("m.room.name", ""), ("m.room.member", uid("alice"))}
    assert info["account_data"] == [{"type": "org.example.note", "content": {"n": 1}}]
    # `start` continues backwards in /messages, `end` forwards.
    earlier = await api.get(f"rooms/{room}/messages?dir=b&limit=2&from={info['messages']['start']}", token=alice)
    assert [e["event_id"] for e in earlier["chunk"]] == [sent[1], sent[0]]
    later_id = await send(api, room, alice, "later")
    later = await api.get(f"rooms/{room}/messages?dir=f&from={info['messages']['end']}", token=alice)
    assert [e["event_id"] for e in later["chunk"]] == [later_id]


async def test_room_initial_sync_follows_history_visibility(api: Api) -> None:
    alice, bob, mallory = [await user(api, n) for n in ("alice", "bob", "mallory")]
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    await send(api, room, alice, "before bob left")
    await leave(api, room, bob)
    await send(api, room, alice, "after bob left")
    # Someone who was never in the (shared-history) room may not peek.
    assert await errcode(api, f"rooms/{room}/initialSync", mallory, 403) == "M_FORBIDDEN"
    # Bob sees the room as it was when he left.
    info = await api.get(f"rooms/{room}/initialSync", token=bob)
    assert info["membership"] == "leave"
    bodies = [e["content"].get("body") for e in info["messages"]["chunk"]]
    assert "before bob left" in bodies and "after bob left" not in bodies
    # A world-readable room can be previewed by anyone, with no membership.
    await set_visibility(api, room, alice, "world_readable")
    peek = await api.get(f"rooms/{room}/initialSync", token=mallory)
    assert "membership" not in peek and peek["messages"]["chunk"]


async def test_initial_sync(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    joined = await create(api, bob, name="Joined")
    await invite(api, joined, bob, "alice")
    await join(api, joined, alice)
    await send(api, joined, bob, "hello alice")
    invited = await create(api, bob, name="Invited")
    await invite(api, invited, bob, "alice")
    left = await create(api, alice, name="Left")
    await leave(api, left, alice)
    await api.put(f"user/{uid('alice')}/account_data/org.example.global", {"g": 1}, token=alice)

    snapshot = await api.get("initialSync?limit=5", token=alice)
    by_room = {r["room_id"]: r for r in snapshot["rooms"]}
    assert set(by_room) == {joined, invited}
    assert by_room[joined]["membership"] == "join"
    assert by_room[joined]["messages"]["chunk"][-1]["content"]["body"] == "hello alice"
    assert by_room[invited]["membership"] == "invite"
    assert by_room[invited]["invite"]["content"]["membership"] == "invite"
    assert "messages" not in by_room[invited]
    assert {"type": "org.example.global", "content": {"g": 1}} in snapshot["account_data"]
    assert isinstance(snapshot["end"], str) and isinstance(snapshot["presence"], list)

    archived = await api.get("initialSync?archived=true", token=alice)
    assert {r["room_id"]: r["membership"] for r in archived["rooms"]}[left] == "leave"
    assert await errcode(api, "initialSync?archived=maybe", alice, 400) == "M_INVALID_PARAM"
    status, _ = await api.request("GET", "initialSync", expect=None)
    assert status == 401


async def _woken_by(
    api: Api, path: str, token: str, room: str, sender: str, body: str
) -> tuple[str, dict[str, Any]]:
    """Start a long-polling GET, check it waits, send a message, return the answer."""
    waiting = asyncio.ensure_future(api.get(path, token=token))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    sent = await send(api, room, sender, body)
    return sent, await asyncio.wait_for(waiting, 20)


async def test_events_stream_continues_from_initial_sync(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    end = (await api.get("initialSync?limit=1", token=alice))["end"]
    first = await send(api, room, bob, "one")
    got = await api.get(f"events?from={end}", token=alice)
    assert [e["event_id"] for e in got["chunk"]] == [first] and got["start"] == end
    assert got["chunk"][0]["room_id"] == room
    # Nothing new: an empty chunk at once (no timeout), the same position.
    quiet = await api.get(f"events?from={got['end']}", token=alice)
    assert quiet["chunk"] == [] and quiet["end"] == got["end"]
    # Long poll: the request waits and is woken by the next event.
    second, woken = await _woken_by(api, f"events?from={got['end']}&timeout=20000", alice, room, bob, "two")
    assert [e["event_id"] for e in woken["chunk"]] == [second]
    assert await errcode(api, "events?from=nonsense", alice, 400) == "M_INVALID_PARAM"


async def test_events_peek_into_a_world_readable_room(api: Api) -> None:
    alice, mallory = await user(api, "alice"), await user(api, "mallory")
    room = await create(api, alice, preset="public_chat")
    assert await errcode(api, f"events?room_id={room}", mallory, 403) == "M_FORBIDDEN"
    await set_visibility(api, room, alice, "world_readable")
    start = (await api.get(f"rooms/{room}/initialSync", token=mallory))["messages"]["end"]
    said, peeked = await _woken_by(
        api, f"events?room_id={room}&from={start}&timeout=20000", mallory, room, alice, "for everyone"
    )
    assert [e["event_id"] for e in peeked["chunk"]] == [said]
    # Mallory is in no room: her own stream has nothing.
    assert (await api.get(f"events?from={start}", token=mallory))["chunk"] == []
