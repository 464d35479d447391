"""m.ignored_user_list: ignored users' events vanish from /messages and /context,
except state events, and come back when the user is no longer ignored."""

from __future__ import annotations

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    bodies,
    create,
    errcode,
    ids,
    join,
    put_state,
    send,
    uid,
    user,
    walk,
)


async def _ignore(api: Api, token: str, who: str, *users: str) -> None:
    await api.put(f"user/{uid(who)}/account_data/m.ignored_user_list",
                  {"ignored_users": {uid(u): {} for u in users}}, token=token)


async def test_ignored_users_are_hidden_from_messages_and_context(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    carol = await user(api, "carol")
    room = await create(api, alice, preset="public_chat", power_level_content_override={"state_default": 0})
    await join(api, room, bob)
    await join(api, room, carol)
    a1 = await send(api, room, alice, "alice 1")
    b1 = await send(api, room, bob, "bob 1")
    topic = await put_state(api, room, bob, "m.room.topic", {"topic": "bob's topic"})
    c1 = await send(api, room, carol, "carol 1")
    b2 = await send(api, room, bob, "bob 2")
    a2 = await send(api, room, alice, "alice 2")
    await _ignore(api, alice, "alice", "bob")

    events, _ = await walk(api, room, alice, dir="b", limit=2)
    assert bodies(events) == ["alice 2", "carol 1", "alice 1"]
    assert topic in ids(events)  # state from an ignored user still shows
    assert not {b1, b2} & set(ids(events))
    forward, _ = await walk(api, room, alice, dir="f", limit=3)
    assert ids(forward) == list(reversed(ids(events)))

    ctx = await api.get(f"rooms/{room}/context/{c1}?limit=4", token=alice)
    assert ids(ctx["events_before"]) == [topic, a1]
    assert ids(ctx["events_after"]) == [a2]
    assert await errcode(api, f"rooms/{room}/context/{b1}", alice, 404) == "M_NOT_FOUND"
    # Nobody else is affected.
    assert {b1, b2} <= set(ids((await walk(api, room, carol, dir="b", limit=50))[0]))

    # Ignoring yourself hides nothing; un-ignoring brings bob back.
    await _ignore(api, alice, "alice", "alice")
    events, _ = await walk(api, room, alice, dir="b", limit=50)
    assert {a1, a2, b1, b2} <= set(ids(events))
    assert (await api.get(f"rooms/{room}/context/{b1}", token=alice))["event"]["event_id"] == b1


async def test_malformed_ignore_lists_hide_nothing(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    sent = await send(api, room, alice, "hello")
    for content in ({"ignored_users": ["@alice:test.local"]}, {"ignored_users": "x"}, {}):
        await api.put(f"user/{uid('alice')}/account_data/m.ignored_user_list", content, token=alice)
        events, _ = await walk(api, room, alice, dir="b", limit=50)
        assert sent in ids(events)
