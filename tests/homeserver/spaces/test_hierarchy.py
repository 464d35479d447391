"""GET /_matrix/client/v1/rooms/{roomId}/hierarchy on one server: the walk, the
summaries, who sees which child, and paging."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Api

ME = "test.local"
V1 = "/_matrix/client/v1"


async def _user(api: Api, name: str) -> str:
    return (await api.register(name))["access_token"]


async def _room(api: Api, token: str, **body: Any) -> str:
    return (await api.post("createRoom", body, token=token))["room_id"]


async def _space(api: Api, token: str, **body: Any) -> str:
    return await _room(api, token, creation_content={"type": "m.space"}, **body)


async def _link(api: Api, token: str, space: str, child: str, **content: Any) -> None:
    await api.put(f"rooms/{space}/state/m.space.child/{child}", {"via": [ME], **content}, token=token)


async def _hierarchy(api: Api, token: str, room: str, expect: int = 200, **query: Any) -> Any:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return (await api.request("GET", f"{V1}/rooms/{room}/hierarchy" + (f"?{qs}" if qs else ""),
                              token=token, expect=expect))[1]


def _ids(body: dict[str, Any]) -> list[str]:
    return [r["room_id"] for r in body["rooms"]]


async def test_space_tree_summaries_and_visibility(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    space = await _space(api, alice, preset="public_chat", name="Space", topic="All of it",
                         room_alias_name="space")
    public = await _room(api, alice, preset="public_chat", name="General")
    private = await _room(api, alice, preset="private_chat", name="Secret")
    members = await _room(api, alice, preset="private_chat", name="Members")
    restricted = await _room(api, alice, name="Restricted", initial_state=[{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": members}]},
    }])
    readable = await _room(api, alice, preset="private_chat", name="Readable", initial_state=[{
        "type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"},
    }])
    invited = await _room(api, alice, preset="private_chat", name="Invited")
    await api.post(f"rooms/{invited}/invite", {"user_id": f"@bob:{ME}"}, token=alice)
    for child in (public, private, restricted, readable, invited):
        await _link(api, alice, space, child)
    # An m.space.child without `via` is no link at all.
    await api.put(f"rooms/{space}/state/m.space.child/{members}", {}, token=alice)

    everything = await _hierarchy(api, alice, space)
    assert set(_ids(everything)) == {space, public, private, restricted, readable, invited}
    assert _ids(everything)[0] == space
    root = everything["rooms"][0]
    assert root["name"] == "Space" and root["topic"] == "All of it"
    assert root["canonical_alias"] == f"#space:{ME}"
    assert root["room_type"] == "m.space" and root["join_rule"] == "public"
    assert root["num_joined_members"] == 1 and root["world_readable"] is False
    assert root["guest_can_join"] is False and root["room_version"]
    kids = {c["state_key"] for c in root["children_state"]}
    assert kids == {public, private, restricted, readable, invited}
    assert all(c["type"] == "m.space.child" and c["sender"] == f"@alice:{ME}"
               and isinstance(c["origin_server_ts"], int) for c in root["children_state"])
    by_id = {r["room_id"]: r for r in everything["rooms"]}
    assert by_id[public]["children_state"] == []
    assert "room_type" not in by_id[public]
    assert by_id[restricted]["join_rule"] == "restricted"
    assert by_id[restricted]["allowed_room_ids"] == [members]

    # Bob (joined to the space only) sees the public, the world-readable and the invited room.
    await api.post(f"rooms/{space}/join", {}, token=bob)
    seen = _ids(await _hierarchy(api, bob, space))
    assert set(seen) == {space, public, readable, invited}
    # Joining the allowed room opens the restricted one to him.
    await api.post(f"rooms/{members}/invite", {"user_id": f"@bob:{ME}"}, token=alice)
    await api.post(f"rooms/{members}/join", {}, token=bob)
    assert set(_ids(await _hierarchy(api, bob, space))) == {space, public, readable, invited, restricted}


async def test_root_the_user_may_not_see_is_forbidden(api: Api) -> None:
    alice = await _user(api, "alice")
    eve = await _user(api, "eve")
    private_space = await _space(api, alice, preset="private_chat")
    secret = await _room(api, alice, preset="private_chat", name="hidden")
    await _link(api, alice, private_space, secret)
    err = await _hierarchy(api, eve, private_space, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    err = await _hierarchy(api, eve, f"!unknown:{ME}", expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # A public space shows eve none of the rooms the rules hide.
    public_space = await _space(api, alice, preset="public_chat")
    await _link(api, alice, public_space, secret)
    await _link(api, alice, public_space, private_space)
    body = await _hierarchy(api, eve, public_space)
    assert _ids(body) == [public_space]
    assert "hidden" not in str(body["rooms"][1:])
    # Banned from the space, eve may not see it any more, public as it is.
    await api.post(f"rooms/{public_space}/join", {}, token=eve)
    await api.post(f"rooms/{public_space}/ban", {"user_id": f"@eve:{ME}"}, token=alice)
    err = await _hierarchy(api, eve, public_space, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"


async def test_nested_order_depth_suggested_and_loops(api: Api) -> None:
    alice = await _user(api, "alice")
    space = await _space(api, alice, preset="public_chat")
    sub = await _space(api, alice, preset="public_chat", name="Sub")
    first = await _room(api, alice, preset="public_chat", name="first")
    later = await _room(api, alice, preset="public_chat", name="later")
    deep = await _room(api, alice, preset="public_chat", name="deep")
    await _link(api, alice, space, later)
    await asyncio.sleep(0.01)  # the two links without `order` are ordered by their timestamps
    await _link(api, alice, space, sub, suggested=True)
    await _link(api, alice, space, first, order="a")
    await _link(api, alice, sub, deep)
    await _link(api, alice, sub, space)  # a loop back to the root

    # Depth first, children in the spec's order: `order` first, then by timestamp.
    assert _ids(await _hierarchy(api, alice, space)) == [space, first, later, sub, deep]
    assert _ids(await _hierarchy(api, alice, space, max_depth=0)) == [space]
    assert _ids(await _hierarchy(api, alice, space, max_depth=1)) == [space, first, later, sub]
    assert _ids(await _hierarchy(api, alice, space, suggested_only="true")) == [space, sub]
    # The subspace as the root walks its own tree (and back into the loop, once).
    assert _ids(await _hierarchy(api, alice, sub)) == [sub, deep, space, first, later]


async def test_pagination(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    space = await _space(api, alice, preset="public_chat")
    rooms = [await _room(api, alice, preset="public_chat", name=f"r{i}") for i in range(5)]
    for i, room in enumerate(rooms):
        await _link(api, alice, space, room, order=f"{i}")
    await api.post(f"rooms/{space}/join", {}, token=bob)

    first = await _hierarchy(api, alice, space, limit=2)
    assert _ids(first) == [space, rooms[0]]
    token = first["next_batch"]
    second = await _hierarchy(api, alice, space, limit=2, **{"from": token})
    assert _ids(second) == rooms[1:3]
    # The same token again gives the same page (a retry).
    assert _ids(await _hierarchy(api, alice, space, limit=2, **{"from": token})) == rooms[1:3]
    last = await _hierarchy(api, alice, space, limit=10, **{"from": second["next_batch"]})
    assert _ids(last) == rooms[3:] and "next_batch" not in last

    for bad in ({"from": "nonsense"}, {"from": token, "max_depth": 3}, {"from": token, "suggested_only": "true"}):
        err = await _hierarchy(api, alice, space, expect=400, limit=2, **bad)
        assert err["errcode"] == "M_INVALID_PARAM"
    # Another user's token, or the token on another root, is refused.
    err = await _hierarchy(api, bob, space, expect=400, **{"from": token})
    assert err["errcode"] == "M_INVALID_PARAM"
    err = await _hierarchy(api, alice, rooms[0], expect=400, **{"from": token})
    assert err["errcode"] == "M_INVALID_PARAM"
    for bad_query in ({"limit": 0}, {"limit": "x"}, {"max_depth": -1}, {"suggested_only": "maybe"}):
        err = await _hierarchy(api, alice, space, expect=400, **bad_query)
        assert err["errcode"] == "M_INVALID_PARAM"
