"""GET /rooms/{roomId}/members (at, membership, not_membership; as of leaving for
those who left) and GET /rooms/{roomId}/joined_members."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    errcode,
    invite,
    join,
    leave,
    messages,
    query,
    send,
    set_visibility,
    uid,
    user,
)


async def members(api: Api, room: str, token: str, **params: Any) -> dict[str, str]:
    body = await api.get(f"rooms/{room}/members{query(**params)}", token=token)
    out = {}
    for ev in body["chunk"]:
        assert ev["type"] == "m.room.member" and ev["room_id"] == room
        out[ev["state_key"]] = ev["content"]["membership"]
    return out


async def _cast(api: Api) -> dict[str, Any]:
    """alice (creator), bob joined, carol invited, dave left, erin banned, frank knocking."""
    t = {n: await user(api, n) for n in ("alice", "bob", "carol", "dave", "erin", "frank", "mallory")}
    room = await create(api, t["alice"], preset="public_chat")
    await join(api, room, t["bob"])
    await join(api, room, t["dave"])
    await join(api, room, t["erin"])
    await invite(api, room, t["alice"], "carol")
    await leave(api, room, t["dave"])
    await api.post(f"rooms/{room}/ban", {"user_id": uid("erin")}, token=t["alice"])
    return {"room": room, **t}


async def test_members_and_membership_filters(api: Api) -> None:
    c = await _cast(api)
    room, alice = c["room"], c["alice"]
    everyone = {uid("alice"): "join", uid("bob"): "join", uid("carol"): "invite",
                uid("dave"): "leave", uid("erin"): "ban"}
    assert await members(api, room, alice) == everyone
    assert await members(api, room, alice, membership="join") == {uid("alice"): "join", uid("bob"): "join"}
    assert await members(api, room, alice, membership="invite") == {uid("carol"): "invite"}
    assert await members(api, room, alice, not_membership="leave") == {
        k: v for k, v in everyone.items() if v != "leave"
    }
    assert await members(api, room, alice, membership="knock") == {}
    # Both together are an "or": membership is `join` or is not `invite`.
    assert await members(api, room, alice, membership="join", not_membership="invite") == {
        k: v for k, v in everyone.items() if v != "invite"
    }
    assert await members(api, room, alice, membership="ban", not_membership="join") == {
        uid("carol"): "invite", uid("dave"): "leave", uid("erin"): "ban"
    }
    for bad in ({"membership": "joined"}, {"not_membership": "x"}, {"at": "nope"}):
        _, err = await api.request("GET", f"rooms/{room}/members{query(**bad)}", token=alice, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM", bad


async def test_members_at_a_point_in_time(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    carol = await user(api, "carol")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    await send(api, room, alice, "checkpoint")
    token = (await messages(api, room, alice, dir="b", limit=1))["start"]
    await join(api, room, carol)
    await leave(api, room, bob)
    assert await members(api, room, alice, at=token) == {uid("alice"): "join", uid("bob"): "join"}
    assert await members(api, room, alice) == {uid("alice"): "join", uid("bob"): "leave", uid("carol"): "join"}
    # A sync-style token works too, and a position before the room existed has no members.
    pos = int(token[1:])
    assert await members(api, room, alice, at=f"s{pos}_0_0_0_0_0_0") == {uid("alice"): "join", uid("bob"): "join"}
    assert await members(api, room, alice, at="t0") == {}


async def test_left_users_see_members_as_of_leaving(api: Api) -> None:
    c = await _cast(api)
    room = c["room"]
    frank = c["frank"]
    await join(api, room, frank)
    # dave left before frank joined: his view stops at his own departure.
    as_dave = await members(api, room, c["dave"])
    assert as_dave == {uid("alice"): "join", uid("bob"): "join", uid("carol"): "invite",
                       uid("dave"): "leave", uid("erin"): "join"}
    # Even asked for a later point, never past the leave.
    now = (await messages(api, room, c["alice"], dir="b", limit=1))["start"]
    assert await members(api, room, c["dave"], at=now) == as_dave
    assert uid("frank") in await members(api, room, c["alice"])
    # Banned is departed too.
    assert (await members(api, room, c["erin"]))[uid("erin")] == "ban"


async def test_members_access(api: Api) -> None:
    c = await _cast(api)
    room = c["room"]
    for who in ("mallory", "carol"):  # an outsider, and the invited who has not joined
        assert await errcode(api, f"rooms/{room}/members", c[who], 403) == "M_FORBIDDEN"
    assert await errcode(api, "rooms/!missing:test.local/members", c["alice"], 403) == "M_FORBIDDEN"
    await set_visibility(api, room, c["alice"], "world_readable")
    assert (await members(api, room, c["mallory"]))[uid("alice")] == "join"


async def test_members_at_a_point_the_user_may_not_see(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    room = await create(api, alice, preset="public_chat")
    await set_visibility(api, room, alice, "joined")
    await send(api, room, alice, "before bob")
    early = (await messages(api, room, alice, dir="b", limit=1))["start"]
    await join(api, room, bob)
    assert await errcode(api, f"rooms/{room}/members?at={early}", bob, 403) == "M_FORBIDDEN"
    late = (await messages(api, room, alice, dir="b", limit=1))["start"]
    assert await members(api, room, bob, at=late) == {uid("alice"): "join", uid("bob"): "join"}


async def test_joined_members(api: Api) -> None:
    c = await _cast(api)
    room = c["room"]
    await api.put(f"profile/{uid('bob')}/avatar_url", {"avatar_url": "mxc://test.local/bob"}, token=c["bob"])
    await api.put(f"profile/{uid('bob')}/displayname", {"displayname": "Bob B"}, token=c["bob"])
    body = await api.get(f"rooms/{room}/joined_members", token=c["alice"])
    assert body == {"joined": {
        uid("alice"): {"display_name": "alice"},
        uid("bob"): {"display_name": "Bob B", "avatar_url": "mxc://test.local/bob"},
    }}


@pytest.mark.parametrize("who", ["carol", "dave", "erin", "mallory"])
async def test_joined_members_is_for_joined_users_only(api: Api, who: str) -> None:
    c = await _cast(api)
    room = c["room"]
    await set_visibility(api, room, c["alice"], "world_readable")
    assert await errcode(api, f"rooms/{room}/joined_members", c[who], 403) == "M_FORBIDDEN"
