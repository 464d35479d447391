"""GET /_matrix/client/v1/room_summary/{roomIdOrAlias}: the summary's fields, who
may see it (members, invitees, anyone for open rooms, restricted rooms' allowed
members) and 404 M_NOT_FOUND for everyone else, without revealing private rooms."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    invite,
    join,
    put_state,
    set_visibility,
    user,
)


def _path(room: str, **query: str) -> str:
    path = f"/_matrix/client/v1/room_summary/{quote(room)}"
    return path + ("?" + "&".join(f"{k}={quote(v)}" for k, v in query.items()) if query else "")


async def _summary(api: Api, room: str, token: str | None, expect: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = (await api.request("GET", _path(room), token=token, expect=expect))[1]
    return body


async def test_public_room_summary(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(
        api, alice, preset="public_chat", name="Cheese", topic="Tasty cheese", room_alias_name="cheese",
        initial_state=[
            {"type": "m.room.avatar", "state_key": "", "content": {"url": "mxc://test.local/cheese"}},
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
            {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}},
        ],
    )
    summary = await _summary(api, room, alice)
    assert summary == {
        "room_id": room,
        "name": "Cheese",
        "topic": "Tasty cheese",
        "avatar_url": "mxc://test.local/cheese",
        "canonical_alias": "#cheese:test.local",
        "num_joined_members": 1,
        "join_rule": "public",
        "world_readable": False,
        "guest_can_join": True,
        "encryption": "m.megolm.v1.aes-sha2",
        "room_version": summary["room_version"],
        "membership": "join",
    }
    assert isinstance(summary["room_version"], str)
    # A non-member sees it too (membership "leave"), and so does an unauthenticated client.
    assert (await _summary(api, room, bob))["membership"] == "leave"
    anonymous = await _summary(api, room, None)
    assert "membership" not in anonymous and anonymous["name"] == "Cheese"
    # By alias.
    assert (await _summary(api, "#cheese:test.local", bob))["room_id"] == room
    await join(api, room, bob)
    assert (await _summary(api, room, bob))["num_joined_members"] == 2


async def test_private_rooms_are_not_found_for_outsiders(api: Api) -> None:
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    room = await create(api, alice, preset="private_chat", name="Secret", room_alias_name="secret")
    for token in (bob, None):
        for target in (room, "#secret:test.local"):
            err = await _summary(api, target, token, expect=404)
            assert err["errcode"] == "M_NOT_FOUND"
            assert "Secret" not in str(err)
    # The same answer as for a room that does not exist.
    missing = await _summary(api, "!nothere:test.local", bob, expect=404)
    assert missing["errcode"] == "M_NOT_FOUND"
    # An invitee may see it, with their membership.
    await invite(api, room, alice, "bob")
    assert (await _summary(api, room, bob))["membership"] == "invite"
    await join(api, room, bob)
    assert (await _summary(api, room, bob))["membership"] == "join"
    assert (await _summary(api, room, carol, expect=404))["errcode"] == "M_NOT_FOUND"
    # World-readable history opens the summary to anyone.
    await set_visibility(api, room, alice, "world_readable")
    assert (await _summary(api, room, carol))["world_readable"] is True
    assert "membership" not in await _summary(api, room, None)


async def test_knock_and_restricted_rooms(api: Api) -> None:
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    knockable = await create(api, alice, preset="private_chat")
    await put_state(api, knockable, alice, "m.room.join_rules", {"join_rule": "knock"})
    assert (await _summary(api, knockable, carol))["join_rule"] == "knock"
    assert (await _summary(api, knockable, None))["join_rule"] == "knock"

    team = await create(api, alice, preset="private_chat")
    await invite(api, team, alice, "bob")
    await join(api, team, bob)
    restricted = await create(api, alice, preset="private_chat", creation_content={"type": "m.space"})
    await put_state(api, restricted, alice, "m.room.join_rules", {
        "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": team}],
    })
    summary = await _summary(api, restricted, bob)  # joined to the allowed room
    assert summary["allowed_room_ids"] == [team]
    assert summary["room_type"] == "m.space"
    assert summary["membership"] == "leave"
    for token in (carol, None):
        assert (await _summary(api, restricted, token, expect=404))["errcode"] == "M_NOT_FOUND"


async def test_errors(api: Api) -> None:
    alice = await user(api, "alice")
    err = await _summary(api, "not-a-room", alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    err = await _summary(api, "#nope:test.local", alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("GET", _path("!x:test.local"), token="bogus", expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    # A remote room this server is not in, with no via server to ask: not found.
    assert (await _summary(api, "!elsewhere:other.example", alice, expect=404))["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("GET", _path("!elsewhere:other.example", via="other.example"), token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"


async def test_unstable_paths(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice, preset="public_chat", name="Old path")
    for path in (f"summary/{quote(room)}", f"rooms/{quote(room)}/summary"):
        _, body = await api.request("GET", f"/_matrix/client/unstable/im.nheko.summary/{path}", token=alice)
        assert body["name"] == "Old path" and body["membership"] == "join"
        assert body["im.nheko.summary.room_version"] == body["room_version"]
    private = await create(api, alice, preset="private_chat")
    _, err = await api.request("GET", f"/_matrix/client/unstable/im.nheko.summary/summary/{quote(private)}", expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
