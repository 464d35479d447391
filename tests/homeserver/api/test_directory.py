"""Room aliases: /directory/room/{roomAlias}, /rooms/{roomId}/aliases and the
m.room.canonical_alias checks that go with them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Api

ME = "test.local"


def d(alias: str) -> str:
    """The directory path of an alias, '#' and all percent-encoded as clients send it."""
    return "directory/room/" + quote(alias, safe="")


async def _user(api: Api, name: str) -> str:
    return (await api.register(name))["access_token"]


async def _room(api: Api, token: str, **body: Any) -> str:
    return (await api.post("createRoom", body, token=token))["room_id"]


async def _canonical(api: Api, room: str, token: str) -> dict[str, Any]:
    return await api.get(f"rooms/{room}/state/m.room.canonical_alias", token=token)


async def test_create_resolve_list_delete(api: Api) -> None:
    alice = await _user(api, "alice")
    room = await _room(api, alice)
    assert await api.put(d(f"#ops:{ME}"), {"room_id": room}, token=alice) == {}
    # Lookups need no access token.
    assert await api.get(d(f"#ops:{ME}")) == {"room_id": room, "servers": [ME]}
    assert await api.get(f"rooms/{room}/aliases", token=alice) == {"aliases": [f"#ops:{ME}"]}
    assert await api.request("DELETE", d(f"#ops:{ME}"), token=alice) == (200, {})
    _, err = await api.request("GET", d(f"#ops:{ME}"), expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("DELETE", d(f"#ops:{ME}"), token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    assert await api.get(f"rooms/{room}/aliases", token=alice) == {"aliases": []}


async def test_alias_with_unusual_characters(api: Api) -> None:
    """The grammar allows any codepoint but ':' and NUL in the localpart: '/', '?', '%'
    and non-ASCII survive the URL round trip."""
    alice = await _user(api, "alice")
    room = await _room(api, alice)
    alias = f"#a/b?c%d-ünï:{ME}"
    await api.put(d(alias), {"room_id": room}, token=alice)
    assert (await api.get(d(alias)))["room_id"] == room
    assert await api.get(f"rooms/{room}/aliases", token=alice) == {"aliases": [alias]}


@pytest.mark.parametrize(
    "alias",
    [
        f"ops:{ME}",  # no sigil
        "#ops",  # no server
        f"#:{ME}",  # empty localpart
        "#ops:bad server",  # invalid server name
        "#ops:",  # empty server name
        "#" + "x" * 250 + f":{ME}",  # over 255 bytes
        f"#a b:{ME}",  # whitespace is refused for new aliases, as createRoom does
        f"#a#b:{ME}",
    ],
)
async def test_create_alias_invalid(api: Api, alias: str) -> None:
    alice = await _user(api, "alice")
    room = await _room(api, alice)
    _, err = await api.request("PUT", d(alias), {"room_id": room}, token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


@pytest.mark.parametrize("alias", [f"ops:{ME}", "#ops", f"#:{ME}", "#ops:bad server"])
async def test_get_and_delete_invalid_alias(api: Api, alias: str) -> None:
    alice = await _user(api, "alice")
    _, err = await api.request("GET", d(alias), expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("DELETE", d(alias), token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_create_alias_errors(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    room = await _room(api, alice)
    other = await _room(api, alice)
    # Only this server's aliases can be created here.
    _, err = await api.request("PUT", d("#ops:other.example"), {"room_id": room}, token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    # Taken: 409 M_UNKNOWN, as the spec's example has it, even for the same room.
    await api.put(d(f"#ops:{ME}"), {"room_id": room}, token=alice)
    for target in (room, other):
        _, err = await api.request("PUT", d(f"#ops:{ME}"), {"room_id": target}, token=alice, expect=409)
        assert err["errcode"] == "M_UNKNOWN"
    assert (await api.get(d(f"#ops:{ME}")))["room_id"] == room
    # Unknown room, non-member, bad bodies, no token.
    _, err = await api.request("PUT", d(f"#x:{ME}"), {"room_id": f"!nope:{ME}"}, token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("PUT", d(f"#x:{ME}"), {"room_id": room}, token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("PUT", d(f"#x:{ME}"), {}, token=alice, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    _, err = await api.request("PUT", d(f"#x:{ME}"), {"room_id": 5}, token=alice, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    _, err = await api.request("PUT", d(f"#x:{ME}"), {"room_id": "nope"}, token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("PUT", d(f"#x:{ME}"), {"room_id": room}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    assert await api.hs.room_store.get_alias(f"#x:{ME}") is None


async def test_admin_may_alias_a_room_they_are_not_in(api: Api) -> None:
    alice = await _user(api, "alice")
    admin = await _user(api, "admin")
    await api.hs.users.set_admin(f"@admin:{ME}", True)
    room = await _room(api, alice)
    await api.put(d(f"#x:{ME}"), {"room_id": room}, token=admin)
    assert (await api.get(d(f"#x:{ME}")))["room_id"] == room


async def test_resolve_lists_servers_of_joined_members(api: Api) -> None:
    alice = await _user(api, "alice")
    room = await _room(api, alice, preset="public_chat")
    await api.put(d(f"#ops:{ME}"), {"room_id": room}, token=alice)
    # A remote member (as federation would persist it) adds its server after ours.
    hs = api.hs
    rec = await hs.room_store.get_room(room)
    assert rec is not None
    from homeserver.storage.rooms import RoomStore

    await hs.db.write(lambda txn: RoomStore.set_membership(txn, rec.room_nid, "@zed:remote.example", "join", 1, 1))
    assert await api.get(d(f"#ops:{ME}")) == {"room_id": room, "servers": [ME, "remote.example"]}
    # Remote aliases would need a federation query: unknown here.
    _, err = await api.request("GET", d("#ops:remote.example"), expect=404)
    assert err["errcode"] == "M_NOT_FOUND"


async def test_delete_permissions(api: Api) -> None:
    alice = await _user(api, "alice")  # room creator, power 100
    bob = await _user(api, "bob")  # creates an alias, power 0
    carol = await _user(api, "carol")  # member, power 0
    admin = await _user(api, "admin")
    await api.hs.users.set_admin(f"@admin:{ME}", True)
    room = await _room(api, alice, preset="public_chat")
    for token in (bob, carol):
        await api.post(f"rooms/{room}/join", {}, token=token)
    for name in ("bob1", "bob2", "bob3"):
        await api.put(d(f"#{name}:{ME}"), {"room_id": room}, token=bob)
    # Another member without power may not delete someone else's alias.
    _, err = await api.request("DELETE", d(f"#bob1:{ME}"), token=carol, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # The alias's creator may; so may whoever can send m.room.canonical_alias; so may admins.
    await api.request("DELETE", d(f"#bob1:{ME}"), token=bob)
    await api.request("DELETE", d(f"#bob2:{ME}"), token=alice)
    await api.request("DELETE", d(f"#bob3:{ME}"), token=admin)
    assert await api.get(f"rooms/{room}/aliases", token=alice) == {"aliases": []}
    # A former moderator who left has no say any more.
    await api.put(d(f"#alice:{ME}"), {"room_id": room}, token=alice)
    await api.put(d(f"#bob4:{ME}"), {"room_id": room}, token=bob)
    await api.post(f"rooms/{room}/leave", {}, token=alice)
    _, err = await api.request("DELETE", d(f"#bob4:{ME}"), token=alice, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("DELETE", d(f"#bob4:{ME}"), expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


async def test_delete_updates_canonical_alias(api: Api) -> None:
    alice = await _user(api, "alice")
    room = await _room(api, alice, room_alias_name="ops")
    await api.put(d(f"#ops2:{ME}"), {"room_id": room}, token=alice)
    await api.put(
        f"rooms/{room}/state/m.room.canonical_alias",
        {"alias": f"#ops:{ME}", "alt_aliases": [f"#ops2:{ME}", "#far:remote.example"]},
        token=alice,
    )
    await api.request("DELETE", d(f"#ops:{ME}"), token=alice)
    assert await _canonical(api, room, alice) == {"alt_aliases": [f"#ops2:{ME}", "#far:remote.example"]}
    await api.request("DELETE", d(f"#ops2:{ME}"), token=alice)
    assert await _canonical(api, room, alice) == {"alt_aliases": ["#far:remote.example"]}


async def test_delete_succeeds_even_when_canonical_alias_cannot_be_updated(api: Api) -> None:
    """The spec recommends deleting the alias anyway; the canonical alias event then
    stays as the moderators left it."""
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    room = await _room(api, alice, preset="public_chat")
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await api.put(d(f"#bob:{ME}"), {"room_id": room}, token=bob)
    await api.put(f"rooms/{room}/state/m.room.canonical_alias", {"alias": f"#bob:{ME}"}, token=alice)
    await api.request("DELETE", d(f"#bob:{ME}"), token=bob)
    assert await api.hs.room_store.get_alias(f"#bob:{ME}") is None
    assert await _canonical(api, room, alice) == {"alias": f"#bob:{ME}"}


async def test_room_aliases_access(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    admin = await _user(api, "admin")
    await api.hs.users.set_admin(f"@admin:{ME}", True)
    room = await _room(api, alice, room_alias_name="b")
    await api.put(d(f"#a:{ME}"), {"room_id": room}, token=alice)
    expected = {"aliases": [f"#a:{ME}", f"#b:{ME}"]}
    assert await api.get(f"rooms/{room}/aliases", token=alice) == expected
    # Outsiders: 403, whether or not the room exists.
    _, err = await api.request("GET", f"rooms/{room}/aliases", token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("GET", f"rooms/!nope:{ME}/aliases", token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # Admins may look regardless of membership.
    assert await api.get(f"rooms/{room}/aliases", token=admin) == expected
    _, err = await api.request("GET", f"rooms/!nope:{ME}/aliases", token=admin, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    # World-readable rooms: anyone.
    await api.put(f"rooms/{room}/state/m.room.history_visibility", {"history_visibility": "world_readable"}, token=alice)
    assert await api.get(f"rooms/{room}/aliases", token=bob) == expected
    _, err = await api.request("GET", f"rooms/{room}/aliases", expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


async def test_canonical_alias_validation(api: Api) -> None:
    alice = await _user(api, "alice")
    room = await _room(api, alice)
    other = await _room(api, alice, room_alias_name="elsewhere")
    await api.put(d(f"#mine:{ME}"), {"room_id": room}, token=alice)
    path = f"rooms/{room}/state/m.room.canonical_alias"
    for content, code in [
        ({"alias": f"#missing:{ME}"}, "M_BAD_ALIAS"),
        ({"alias": f"#elsewhere:{ME}"}, "M_BAD_ALIAS"),
        ({"alt_aliases": [f"#mine:{ME}", f"#missing:{ME}"]}, "M_BAD_ALIAS"),
        ({"alias": "not-an-alias"}, "M_INVALID_PARAM"),
        ({"alt_aliases": f"#mine:{ME}"}, "M_INVALID_PARAM"),
        ({"alt_aliases": [5]}, "M_INVALID_PARAM"),
    ]:
        _, err = await api.request("PUT", path, content, token=alice, expect=400)
        assert err["errcode"] == code, content
    assert other != room
    # Valid: local aliases of this room, remote aliases (unverifiable), or nothing.
    good = {"alias": f"#mine:{ME}", "alt_aliases": ["#far:remote.example"]}
    await api.put(path, good, token=alice)
    assert await _canonical(api, room, alice) == good
    await api.put(path, {}, token=alice)
    assert await _canonical(api, room, alice) == {}
