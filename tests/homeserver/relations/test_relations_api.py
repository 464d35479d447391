"""GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]: children of an
event, filtered by type, paginated both ways, recursion, and history visibility."""

from __future__ import annotations

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    ids,
    invite,
    join,
    room_with_bob,
    send,
    set_visibility,
    user,
)
from tests.homeserver.relations.helpers import (
    edit,
    react,
    redact,
    reference,
    relations,
    reply_in_thread,
    send_event,
)


async def test_children_filtered_by_rel_type_and_event_type(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    root = await send(api, room, alice, "root")
    r1 = await reply_in_thread(api, room, bob, root, "one")
    like = await react(api, room, bob, root, "👍")
    e1 = await edit(api, room, alice, root, "root!")
    unrelated = await send(api, room, alice, "other")
    everything = await relations(api, room, root, alice)
    assert ids(everything["chunk"]) == [e1, like, r1]  # newest first
    assert unrelated not in ids(everything["chunk"])
    assert "next_batch" not in everything and "recursion_depth" not in everything
    assert ids((await relations(api, room, root, alice, "m.thread"))["chunk"]) == [r1]
    reactions = await relations(api, room, root, bob, "m.annotation", "m.reaction")
    assert ids(reactions["chunk"]) == [like]
    assert reactions["chunk"][0]["content"]["m.relates_to"]["key"] == "👍"
    assert (await relations(api, room, root, alice, "m.annotation", "m.room.message"))["chunk"] == []


async def test_pagination_both_directions_without_gaps(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    root = await send(api, room, alice, "root")
    replies = [await reply_in_thread(api, room, alice, root, str(i)) for i in range(7)]
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 3}
    for _ in range(10):
        page = await relations(api, room, root, alice, **params)
        seen += ids(page["chunk"])
        if "next_batch" not in page:
            break
        params["from"] = page["next_batch"]
    assert seen == replies[::-1]
    forward: list[str] = []
    params = {"limit": 2, "dir": "f"}
    for _ in range(10):
        page = await relations(api, room, root, alice, "m.thread", **params)
        forward += ids(page["chunk"])
        if "next_batch" not in page:
            break
        assert page["next_batch"]
        params["from"] = page["next_batch"]
    assert forward == replies
    # `to` stops the range; limit 0 and bad parameters.
    first = await relations(api, room, root, alice, limit=2)
    upto = await relations(api, room, root, alice, dir="f", to=first["next_batch"])
    assert ids(upto["chunk"]) == replies[:5]
    assert (await relations(api, room, root, alice, limit=0))["chunk"] == []
    await relations(api, room, root, alice, dir="x", expect=400)
    await relations(api, room, root, alice, limit="many", expect=400)
    await relations(api, room, root, alice, recurse="maybe", expect=400)


async def test_recurse_follows_three_levels(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    root = await send(api, room, alice, "root")
    level1 = await reference(api, room, alice, root)
    level2 = await reference(api, room, alice, level1)
    level3 = await react(api, room, alice, level2, "x")
    level4 = await react(api, room, alice, level3, "y")
    direct = await relations(api, room, root, alice, recurse="false")
    assert ids(direct["chunk"]) == [level1]
    assert direct["recursion_depth"] == 1
    deep = await relations(api, room, root, alice, recurse="true")
    assert ids(deep["chunk"]) == [level3, level2, level1]
    assert level4 not in ids(deep["chunk"])
    assert deep["recursion_depth"] == 3
    only_reactions = await relations(api, room, root, alice, "m.annotation", recurse="true")
    assert ids(only_reactions["chunk"]) == [level3]


async def test_unknown_or_foreign_parent_is_not_found(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    other = await create(api, alice)
    elsewhere = await send(api, other, alice, "elsewhere")
    await relations(api, room, "$nope", alice, expect=404)
    await relations(api, room, elsewhere, alice, expect=404)
    # A relation naming an event this server does not hold is indexed all the same.
    child = await send_event(api, room, alice, "m.room.message", {
        "msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": "m.reference", "event_id": "$missing"},
    })
    assert child


async def test_redacted_relation_disappears(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    root = await send(api, room, alice, "root")
    like = await react(api, room, bob, root, "👍")
    keep = await react(api, room, alice, root, "🎉")
    await redact(api, room, bob, like)
    assert ids((await relations(api, room, root, alice))["chunk"]) == [keep]


async def test_visibility_non_member_and_late_joiner(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    eve = await user(api, "eve")
    room = await create(api, alice)
    await set_visibility(api, room, alice, "joined")
    root = await send(api, room, alice, "root")
    early = await reply_in_thread(api, room, alice, root, "before bob")
    # Not a member: the room is forbidden outright.
    await relations(api, room, root, eve, expect=403)
    await invite(api, room, alice, "bob")
    await join(api, room, bob)
    late = await reply_in_thread(api, room, alice, root, "after bob")
    # bob may not see the root (sent before he joined): as if it did not exist.
    await relations(api, room, root, bob, expect=404)
    assert ids((await relations(api, room, root, alice))["chunk"]) == [late, early]
    # A root he may see, with replies from before and after he joined.
    root2 = await send(api, room, alice, "root2")
    r2 = await reply_in_thread(api, room, alice, root2, "r2")
    assert ids((await relations(api, room, root2, bob))["chunk"]) == [r2]
    assert early not in ids((await relations(api, room, root2, bob, recurse="true"))["chunk"])
