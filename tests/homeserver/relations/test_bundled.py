"""Bundled aggregations (unsigned.m.relations) on events served to clients: threads,
edits by the spec's validity rules, references; redactions; every read path."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    ids,
    messages,
    put_state,
    room_with_bob,
    send,
    user,
)
from tests.homeserver.relations.helpers import (
    bundled,
    edit,
    get_event,
    redact,
    reference,
    relations,
    reply_in_thread,
    send_event,
)


def by_id(events: list[dict[str, Any]], event_id: str) -> dict[str, Any]:
    return next(e for e in events if e["event_id"] == event_id)


async def test_thread_summary_on_every_read_path(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    root = await send(api, room, alice, "root")
    await reply_in_thread(api, room, alice, root, "one")
    last = await reply_in_thread(api, room, alice, root, "two")
    # bob has not replied: not participated; alice sent the root and replied.
    thread = bundled(await get_event(api, room, root, bob))["m.thread"]
    assert thread["count"] == 2
    assert thread["current_user_participated"] is False
    assert thread["latest_event"]["event_id"] == last
    assert thread["latest_event"]["content"]["body"] == "two"
    assert bundled(await get_event(api, room, root, alice))["m.thread"]["current_user_participated"] is True
    await reply_in_thread(api, room, bob, root, "bob too")
    assert bundled(await get_event(api, room, root, bob))["m.thread"]["current_user_participated"] is True
    # /messages, /context and /sync bundle the same.
    page = await messages(api, room, alice, dir="b", limit=20)
    assert bundled(by_id(page["chunk"], root))["m.thread"]["count"] == 3
    ctx = await api.get(f"rooms/{room}/context/{root}?limit=4", token=alice)
    assert bundled(ctx["event"])["m.thread"]["count"] == 3
    sync = await api.get("sync", token=alice)
    timeline = sync["rooms"]["join"][room]["timeline"]["events"]
    assert bundled(by_id(timeline, root))["m.thread"]["count"] == 3


async def test_edit_replaces_and_latest_valid_wins(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    original = await send(api, room, alice, "typo")
    first = await edit(api, room, alice, original, "fixed")
    second = await edit(api, room, alice, original, "fixed again")
    await edit(api, room, bob, original, "not yours")  # another sender: ignored
    await edit(api, room, alice, original, "no new content", new_content=False)  # invalid
    await edit(api, room, alice, original, "another type", event_type="m.sticker")  # another type
    shown = bundled(await get_event(api, room, original, bob))["m.replace"]
    assert shown["event_id"] == second  # the event in full (v1.7)
    assert shown["content"]["m.new_content"]["body"] == "fixed again"
    assert shown["sender"] == "@alice:test.local"
    # Redacting the edit in force falls back to the one before.
    await redact(api, room, alice, second)
    assert bundled(await get_event(api, room, original, bob))["m.replace"]["event_id"] == first
    # An edit of an edit is not an edit of anything.
    assert "m.replace" not in bundled(await get_event(api, room, first, bob))
    await edit(api, room, alice, first, "edit of an edit")
    assert "m.replace" not in bundled(await get_event(api, room, first, bob))
    # The original redacted: nothing is bundled.
    await redact(api, room, alice, original)
    assert "m.replace" not in bundled(await get_event(api, room, original, bob))


async def test_state_events_are_never_edited(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    topic = await put_state(api, room, alice, "m.room.topic", {"topic": "a"})
    await send_event(api, room, alice, "m.room.topic", {
        "topic": "b", "m.new_content": {"topic": "b"}, "m.relates_to": {"rel_type": "m.replace", "event_id": topic},
    })
    assert "m.replace" not in bundled(await get_event(api, room, topic, alice))
    message = await send(api, room, alice, "m")
    await put_state(api, room, alice, "m.room.message", {
        "body": "state", "m.new_content": {"body": "state"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": message},
    }, state_key="x")
    assert "m.replace" not in bundled(await get_event(api, room, message, alice))


async def test_references_and_redacted_reply(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    target = await send(api, room, alice, "target")
    ref1 = await reference(api, room, alice, target)
    ref2 = await reference(api, room, alice, target)
    assert bundled(await get_event(api, room, target, alice))["m.reference"] == {
        "chunk": [{"event_id": ref1}, {"event_id": ref2}]
    }
    await redact(api, room, alice, ref1)
    assert bundled(await get_event(api, room, target, alice))["m.reference"]["chunk"] == [{"event_id": ref2}]
    # A thread's only reply redacted: no thread left to bundle.
    root = await send(api, room, alice, "root")
    reply = await reply_in_thread(api, room, alice, root, "r")
    assert bundled(await get_event(api, room, root, alice))["m.thread"]["count"] == 1
    await redact(api, room, alice, reply)
    assert "m.thread" not in bundled(await get_event(api, room, root, alice))


async def test_relations_chunk_is_bundled_too(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    root = await send(api, room, alice, "root")
    reply = await reply_in_thread(api, room, alice, root, "reply")
    fixed = await edit(api, room, alice, reply, "reply!")
    chunk = (await relations(api, room, root, alice, "m.thread"))["chunk"]
    assert bundled(by_id(chunk, reply))["m.replace"]["event_id"] == fixed


async def test_latest_reply_carries_its_edit_and_other_rooms_do_not_count(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    other = await create(api, alice)
    root = await send(api, room, alice, "root")
    reply = await reply_in_thread(api, room, alice, root, "reply")
    fixed = await edit(api, room, alice, reply, "reply!")
    latest = bundled(await get_event(api, room, root, alice))["m.thread"]["latest_event"]
    assert latest["event_id"] == reply
    assert bundled(latest)["m.replace"]["event_id"] == fixed
    # Relations sent in another room naming this room's event are not this event's.
    await reply_in_thread(api, other, alice, root, "elsewhere")
    await edit(api, other, alice, root, "hijack")
    await reference(api, other, alice, root)
    shown = bundled(await get_event(api, room, root, alice))
    assert shown["m.thread"]["count"] == 1 and set(shown) == {"m.thread"}
    assert ids((await relations(api, room, root, alice))["chunk"]) == [reply]


async def test_latest_reply_is_one_the_reader_may_see(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    await put_state(api, room, alice, "m.room.history_visibility", {"history_visibility": "joined"})
    root = await send(api, room, alice, "root")
    seen = await reply_in_thread(api, room, alice, root, "while bob was here")
    await api.post(f"rooms/{room}/leave", {}, token=bob)
    await reply_in_thread(api, room, alice, root, "after bob left")
    thread = bundled(await get_event(api, room, root, bob))["m.thread"]
    assert thread["latest_event"]["event_id"] == seen
