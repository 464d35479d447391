"""The published room directory: /directory/list/room/{roomId} and /publicRooms."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

ME = "test.local"


async def _user(api: Api, name: str) -> str:
    return (await api.register(name))["access_token"]


async def _room(api: Api, token: str, **body: Any) -> str:
    return (await api.post("createRoom", body, token=token))["room_id"]


async def _public_room(api: Api, token: str, **body: Any) -> str:
    return await _room(api, token, visibility="public", **body)


async def _listed(api: Api, **query: Any) -> list[str]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    body = await api.get("publicRooms" + (f"?{qs}" if qs else ""))
    return [r["room_id"] for r in body["chunk"]]


# --- visibility ---


async def test_visibility_get_and_put(api: Api) -> None:
    alice = await _user(api, "alice")
    room = await _room(api, alice)
    published = await _public_room(api, alice)
    # No access token is needed to read a room's visibility.
    assert await api.get(f"directory/list/room/{room}") == {"visibility": "private"}
    assert await api.get(f"directory/list/room/{published}") == {"visibility": "public"}
    assert await api.put(f"directory/list/room/{room}", {"visibility": "public"}, token=alice) == {}
    assert await api.get(f"directory/list/room/{room}") == {"visibility": "public"}
    await api.put(f"directory/list/room/{room}", {"visibility": "private"}, token=alice)
    assert await api.get(f"directory/list/room/{room}") == {"visibility": "private"}
    # Unchanged: still 200.
    await api.put(f"directory/list/room/{room}", {"visibility": "private"}, token=alice)
    # The visibility defaults to public when the body omits it.
    await api.request("PUT", f"directory/list/room/{room}", data=b"", token=alice)
    assert await api.get(f"directory/list/room/{room}") == {"visibility": "public"}


async def test_visibility_errors(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")  # a member without power
    carol = await _user(api, "carol")  # not a member
    room = await _room(api, alice, preset="public_chat")
    await api.post(f"rooms/{room}/join", {}, token=bob)
    unknown = f"!nope:{ME}"
    _, err = await api.request("GET", f"directory/list/room/{unknown}", expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("PUT", f"directory/list/room/{unknown}", {"visibility": "public"}, token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    for token in (bob, carol):
        _, err = await api.request("PUT", f"directory/list/room/{room}", {"visibility": "public"}, token=token, expect=403)
        assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("PUT", f"directory/list/room/{room}", {"visibility": "secret"}, token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("PUT", f"directory/list/room/{room}", {"visibility": 1}, token=alice, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    _, err = await api.request("PUT", f"directory/list/room/{room}", {"visibility": "public"}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    assert await api.get(f"directory/list/room/{room}") == {"visibility": "private"}


async def test_visibility_by_moderator_and_admin(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    admin = await _user(api, "admin")
    await api.hs.users.set_admin(f"@admin:{ME}", True)
    room = await _room(api, alice, preset="public_chat")
    await api.post(f"rooms/{room}/join", {}, token=bob)
    # Power to send m.room.canonical_alias (50 by default) is what it takes.
    levels = await api.get(f"rooms/{room}/state/m.room.power_levels", token=alice)
    levels["users"]["@bob:test.local"] = 50
    await api.put(f"rooms/{room}/state/m.room.power_levels", levels, token=alice)
    await api.put(f"directory/list/room/{room}", {"visibility": "public"}, token=bob)
    assert await api.get(f"directory/list/room/{room}") == {"visibility": "public"}
    # A server admin needs no membership.
    await api.put(f"directory/list/room/{room}", {"visibility": "private"}, token=admin)
    assert await api.get(f"directory/list/room/{room}") == {"visibility": "private"}


# --- listing ---


async def test_chunk_entry_fields(api: Api) -> None:
    alice = await _user(api, "alice")
    room = await _public_room(
        api, alice, name="Ops", topic="Operations", room_alias_name="ops",
        initial_state=[
            {"type": "m.room.avatar", "content": {"url": "mxc://test.local/abc"}},
            {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}},
            {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}},
        ],
        creation_content={"type": "m.space"},
    )
    plain = await _public_room(api, alice)
    body = await api.get("publicRooms")
    by_id = {r["room_id"]: r for r in body["chunk"]}
    assert by_id[room] == {
        "room_id": room,
        "name": "Ops",
        "topic": "Operations",
        "canonical_alias": f"#ops:{ME}",
        "avatar_url": "mxc://test.local/abc",
        "num_joined_members": 1,
        "world_readable": True,
        "guest_can_join": True,
        "join_rule": "public",
        "room_type": "m.space",
    }
    # Absent optional fields are omitted, not null.
    assert by_id[plain] == {
        "room_id": plain,
        "num_joined_members": 1,
        "world_readable": False,
        "guest_can_join": False,
        "join_rule": "public",
    }
    assert body["total_room_count_estimate"] == 2
    assert "next_batch" not in body and "prev_batch" not in body


async def test_topic_prefers_plain_text_representation(api: Api) -> None:
    alice = await _user(api, "alice")
    room = await _public_room(api, alice)
    await api.put(
        f"rooms/{room}/state/m.room.topic",
        {"topic": "fallback", "m.topic": [{"mimetype": "text/html", "body": "<b>x</b>"}, {"body": "plain"}]},
        token=alice,
    )
    assert (await api.get("publicRooms"))["chunk"][0]["topic"] == "plain"


async def test_only_published_listable_rooms_are_listed(api: Api) -> None:
    alice = await _user(api, "alice")
    public = await _public_room(api, alice)
    await _room(api, alice, preset="public_chat")  # public join rule, but never published
    knock = await _public_room(api, alice, initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    closed = await _public_room(api, alice, preset="private_chat")
    readable = await _public_room(
        api, alice, preset="private_chat",
        initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}],
    )
    listed = await _listed(api)
    # Published rooms nobody can enter without an invite are kept out of the list
    # (the spec allows it; Synapse does the same) unless world readable.
    assert set(listed) == {public, knock, readable}
    assert closed not in listed
    body = await api.get("publicRooms")
    assert body["total_room_count_estimate"] == 3
    # Changing the join rule of a published room hides it, and changing it back shows it.
    await api.put(f"rooms/{public}/state/m.room.join_rules", {"join_rule": "invite"}, token=alice)
    assert public not in await _listed(api)
    assert await api.get(f"directory/list/room/{public}") == {"visibility": "public"}
    await api.put(f"rooms/{public}/state/m.room.join_rules", {"join_rule": "public"}, token=alice)
    assert public in await _listed(api)
    # A room everyone has left is not listed either.
    await api.post(f"rooms/{public}/leave", {}, token=alice)
    assert public not in await _listed(api)


async def _populated(api: Api, sizes: list[int]) -> tuple[list[str], str]:
    """Published rooms with the given numbers of joined members; returns their IDs in
    the expected listing order, and the creator's token."""
    alice = await _user(api, "alice")
    tokens = [await _user(api, f"u{i}") for i in range(max(sizes) - 1)]
    rooms = []
    for size in sizes:
        room = await _public_room(api, alice)
        for token in tokens[: size - 1]:
            await api.post(f"rooms/{room}/join", {}, token=token)
        rooms.append((size, room))
    rooms.sort(key=lambda r: (-r[0], r[1]))
    return [r for _, r in rooms], alice


async def test_order_and_pagination(api: Api) -> None:
    expected, _ = await _populated(api, [1, 3, 2, 2, 1])
    body = await api.get("publicRooms")
    assert [r["room_id"] for r in body["chunk"]] == expected
    assert [r["num_joined_members"] for r in body["chunk"]] == [3, 2, 2, 1, 1]

    page1 = await api.get("publicRooms?limit=2")
    assert [r["room_id"] for r in page1["chunk"]] == expected[:2]
    assert "prev_batch" not in page1 and page1["total_room_count_estimate"] == 5
    page2 = await api.get(f"publicRooms?limit=2&since={page1['next_batch']}")
    assert [r["room_id"] for r in page2["chunk"]] == expected[2:4]
    page3 = await api.get(f"publicRooms?limit=2&since={page2['next_batch']}")
    assert [r["room_id"] for r in page3["chunk"]] == expected[4:]
    assert "next_batch" not in page3
    # Going back from page 3 gives page 2 again, and from there page 1.
    back2 = await api.get(f"publicRooms?limit=2&since={page3['prev_batch']}")
    assert back2["chunk"] == page2["chunk"]
    back1 = await api.get(f"publicRooms?limit=2&since={back2['prev_batch']}")
    assert back1["chunk"] == page1["chunk"]
    assert "prev_batch" not in back1 and back1["next_batch"]
    # limit=0 (like no limit) returns everything.
    assert [r["room_id"] for r in (await api.get("publicRooms?limit=0"))["chunk"]] == expected


async def test_pagination_survives_a_room_being_unpublished(api: Api) -> None:
    expected, alice = await _populated(api, [4, 3, 2, 1])
    page1 = await api.get("publicRooms?limit=2")
    await api.put(f"directory/list/room/{expected[0]}", {"visibility": "private"}, token=alice)
    page2 = await api.get(f"publicRooms?limit=2&since={page1['next_batch']}")
    assert [r["room_id"] for r in page2["chunk"]] == expected[2:]


async def test_post_pagination(api: Api) -> None:
    expected, alice = await _populated(api, [2, 1, 1])
    page1 = await api.post("publicRooms", {"limit": 1}, token=alice)
    assert [r["room_id"] for r in page1["chunk"]] == expected[:1]
    page2 = await api.post("publicRooms", {"limit": 2, "since": page1["next_batch"]}, token=alice)
    assert [r["room_id"] for r in page2["chunk"]] == expected[1:]
    assert "next_batch" not in page2 and page2["prev_batch"]


async def test_post_filters(api: Api) -> None:
    alice = await _user(api, "alice")
    ops = await _public_room(api, alice, name="The Ops Team")
    topic = await _public_room(api, alice, topic="all about OPS work")
    alias = await _public_room(api, alice, room_alias_name="devops")
    space = await _public_room(api, alice, name="Space", creation_content={"type": "m.space"})
    other = await _public_room(api, alice, name="Social")

    async def search(flt: dict[str, Any], **extra: Any) -> set[str]:
        body = await api.post("publicRooms", {"filter": flt, **extra}, token=alice)
        return {r["room_id"] for r in body["chunk"]}

    assert await search({"generic_search_term": "ops"}) == {ops, topic, alias}
    assert await search({"generic_search_term": "OPS TEAM"}) == {ops}
    assert await search({"generic_search_term": "nothing matches"}) == set()
    assert await search({"room_types": ["m.space"]}) == {space}
    assert await search({"room_types": [None]}) == {ops, topic, alias, other}
    assert await search({"room_types": [None, "m.space"]}) == {ops, topic, alias, space, other}
    assert await search({"room_types": []}) == {ops, topic, alias, space, other}
    assert await search({"generic_search_term": "s", "room_types": ["m.space"]}) == {space}
    assert await search({}, include_all_networks=True) == {ops, topic, alias, space, other}
    # No application service publishes third-party networks here: a named one is empty.
    assert await search({}, third_party_instance_id="irc") == set()
    body = await api.post("publicRooms", {"filter": {"room_types": ["m.space"]}}, token=alice)
    assert body["total_room_count_estimate"] == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"limit": "5"}, "M_INVALID_PARAM"),
        ({"limit": -1}, "M_INVALID_PARAM"),
        ({"limit": True}, "M_INVALID_PARAM"),
        ({"since": 5}, "M_BAD_JSON"),
        ({"since": "garbage"}, "M_INVALID_PARAM"),
        ({"filter": "ops"}, "M_BAD_JSON"),
        ({"filter": {"generic_search_term": 5}}, "M_BAD_JSON"),
        ({"filter": {"room_types": "m.space"}}, "M_BAD_JSON"),
        ({"filter": {"room_types": [5]}}, "M_BAD_JSON"),
        ({"include_all_networks": "yes"}, "M_BAD_JSON"),
        ({"include_all_networks": True, "third_party_instance_id": "irc"}, "M_INVALID_PARAM"),
    ],
)
async def test_post_invalid(api: Api, body: dict[str, Any], code: str) -> None:
    alice = await _user(api, "alice")
    _, err = await api.request("POST", "publicRooms", body, token=alice, expect=400)
    assert err["errcode"] == code


@pytest.mark.parametrize(
    "query", ["limit=x", "limit=-2", "since=garbage", "since=" + "eyJ4IjoxfQ", "server=bad%20server"]
)
async def test_get_invalid(api: Api, query: str) -> None:
    _, err = await api.request("GET", f"publicRooms?{query}", expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_auth_and_server_parameter(api: Api) -> None:
    alice = await _user(api, "alice")
    room = await _public_room(api, alice)
    # GET needs no token, but a token given must be valid.
    assert await _listed(api) == [room]
    assert [r["room_id"] for r in (await api.get("publicRooms", token=alice))["chunk"]] == [room]
    _, err = await api.request("GET", "publicRooms", token="bogus", expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    _, err = await api.request("POST", "publicRooms", {}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    # Our own server name is the local directory.
    assert await _listed(api, server=ME) == [room]
    assert [r["room_id"] for r in (await api.post(f"publicRooms?server={ME}", {}, token=alice))["chunk"]] == [room]
    # Another server's directory needs federation: not found here.
    _, err = await api.request("GET", "publicRooms?server=remote.example", expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("POST", "publicRooms?server=remote.example", {}, token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"


async def test_empty_directory(api: Api) -> None:
    assert await api.get("publicRooms") == {"chunk": [], "total_room_count_estimate": 0}
