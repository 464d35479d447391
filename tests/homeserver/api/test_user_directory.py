"""POST /user_directory/search: whom a searcher finds (room-mates, members of public
and world-readable rooms, everyone local with search_all_local_users), matching
by word prefixes of the display name and localpart, and that users seen only in
private rooms the searcher is not in are never found."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, running_api
from tests.homeserver.api.reading_helpers import (
    create,
    invite,
    join,
    leave,
    put_state,
    set_visibility,
    uid,
    user,
)


async def _search(api: Api, token: str, term: str, limit: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"search_term": term}
    if limit is not None:
        body["limit"] = limit
    result: dict[str, Any] = await api.post("user_directory/search", body, token=token)
    return result


async def _found(api: Api, token: str, term: str) -> list[str]:
    return [r["user_id"] for r in (await _search(api, token, term))["results"]]


async def _name(api: Api, token: str, who: str, name: str) -> None:
    await api.put(f"profile/{uid(who)}/displayname", {"displayname": name}, token=token)


async def test_finds_a_colleague_in_a_shared_room_by_display_name(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    await _name(api, bob, "bob", "Robert Smith-Jones")
    await api.put(f"profile/{uid('bob')}/avatar_url", {"avatar_url": "mxc://test.local/bob"}, token=bob)
    room = await create(api, alice)
    assert await _found(api, alice, "robert") == []  # not yet in a room with alice
    await invite(api, room, alice, "bob")
    assert await _found(api, alice, "robert") == []  # invited is not joined
    await join(api, room, bob)
    result = await _search(api, alice, "rob")
    assert result == {
        "results": [{"user_id": uid("bob"), "display_name": "Robert Smith-Jones", "avatar_url": "mxc://test.local/bob"}],
        "limited": False,
    }
    # Case-insensitive, any word of the name, several words, the localpart, the user ID.
    for term in ("ROBERT", "smith", "jones", "Rob Smi", "smith rob", "bob", "@bob", "@bob:test.local"):
        assert await _found(api, alice, term) == [uid("bob")], term
    # Words must begin words: the middle of a word finds nothing.
    for term in ("obert", "mith", "robert x", "@ob", "", "  ", "-"):
        assert await _found(api, alice, term) == [], term
    # bob leaves: alice no longer finds him.
    await leave(api, room, bob)
    assert await _found(api, alice, "robert") == []


async def test_public_and_world_readable_rooms_but_never_private_ones(api: Api) -> None:
    alice, bob, carol, dave = [await user(api, n) for n in ("alice", "bob", "carol", "dave")]
    await _name(api, bob, "bob", "Zed Public")
    await _name(api, carol, "carol", "Zed Readable")
    await _name(api, dave, "dave", "Zed Private")
    public = await create(api, bob, preset="public_chat")
    readable = await create(api, carol)
    await set_visibility(api, readable, carol, "world_readable")
    private = await create(api, dave)
    # alice shares no room with anyone: the public and world-readable rooms' members only.
    assert sorted(await _found(api, alice, "zed")) == [uid("bob"), uid("carol")]
    # Closing a room hides its members again; opening one shows them.
    await put_state(api, public, bob, "m.room.join_rules", {"join_rule": "invite"})
    await set_visibility(api, private, dave, "world_readable")
    await api.hs.user_directory.settle()
    assert sorted(await _found(api, alice, "zed")) == [uid("carol"), uid("dave")]
    await set_visibility(api, private, dave, "shared")
    await set_visibility(api, readable, carol, "joined")
    await api.hs.user_directory.settle()
    assert await _found(api, alice, "zed") == []
    # Members of the private room find each other.
    await invite(api, private, dave, "bob")
    await join(api, private, bob)
    assert sorted(await _found(api, bob, "zed")) == [uid("bob"), uid("dave")]
    assert await _found(api, alice, "zed") == []


async def test_ranking_limit_and_deactivated_users(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice, preset="public_chat")
    names = {"ann1": "Annabel", "ann2": "Ann", "ann3": "Anna Lee", "ann4": "Bob Annan"}
    tokens = {}
    for who, name in names.items():
        tokens[who] = await user(api, who)
        await _name(api, tokens[who], who, name)
        await join(api, room, tokens[who])
    result = await _search(api, alice, "ann")
    # The exact name first, then names starting with the term, then the others.
    assert [r["display_name"] for r in result["results"]][:1] == ["Ann"]
    assert result["results"][-1]["display_name"] == "Bob Annan"
    assert result["limited"] is False
    limited = await _search(api, alice, "ann", limit=2)
    assert len(limited["results"]) == 2 and limited["limited"] is True
    assert (await _search(api, alice, "ann", limit=0)) == {"results": [], "limited": True}
    # Deactivated users are not found.
    assert uid("ann2") in await _found(api, alice, "ann")
    await api.hs.accounts.deactivate(uid("ann2"))
    assert uid("ann2") not in await _found(api, alice, "ann")


async def test_errors(api: Api) -> None:
    alice = await user(api, "alice")
    for body, errcode in (
        ({}, "M_MISSING_PARAM"),
        ({"search_term": 3}, "M_BAD_JSON"),
        ({"search_term": "x", "limit": "10"}, "M_BAD_JSON"),
        ({"search_term": "x", "limit": -1}, "M_INVALID_PARAM"),
        ({"search_term": "x" * 1001}, "M_INVALID_PARAM"),
    ):
        _, err = await api.request("POST", "user_directory/search", body, token=alice, expect=400)
        assert err["errcode"] == errcode, body
    _, err = await api.request("POST", "user_directory/search", {"search_term": "x"}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


async def test_search_all_local_users(make_api: Any) -> None:
    api: Api = await make_api(user_directory={"search_all_local_users": True})
    alice, bob = await user(api, "alice"), await user(api, "bob")
    await _name(api, bob, "bob", "Staff Member")
    # No room in common, no public room: the organization's directory still finds bob.
    assert await _found(api, alice, "staff") == [uid("bob")]
    assert await _found(api, alice, "bob") == [uid("bob")]
    # The server notices account is never listed.
    assert uid("server") not in await _found(api, alice, "server")


async def test_both_engines(db_overrides: dict[str, Any], make_api: Any) -> None:
    """The directory's SQL on SQLite and PostgreSQL: room-mates, open rooms, case, escaping."""
    api: Api = await make_api(**db_overrides)
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    await _name(api, bob, "bob", "Émile 100%_Sure")
    await _name(api, carol, "carol", "Émilie Open")
    room = await create(api, alice)
    await invite(api, room, alice, "bob")
    await join(api, room, bob)
    await create(api, carol, preset="public_chat")
    await api.hs.user_directory.settle()  # a room opening is indexed after its event
    assert sorted(await _found(api, alice, "émil")) == [uid("bob"), uid("carol")]
    assert await _found(api, alice, "ÉMILE") == [uid("bob")]
    assert await _found(api, alice, "100 sure") == [uid("bob")]
    assert await _found(api, alice, "%") == [] and await _found(api, alice, "_") == []
    assert await _found(api, alice, "open") == [uid("carol")]
    other = await user(api, "other")
    assert await _found(api, other, "émile") == []  # bob is only in alice's private room


async def test_index_is_built_from_existing_rooms(tmp_path: Any, aiohttp_client: Any) -> None:
    """A server upgraded to the directory (rooms, no index yet) fills it at start."""
    data_dir = tmp_path / "hs"
    async with running_api(data_dir, aiohttp_client) as api:
        alice, bob = await user(api, "alice"), await user(api, "bob")
        await _name(api, bob, "bob", "Quentin Public")
        await create(api, bob, preset="public_chat")
        await api.hs.user_directory.settle()

        async def forget_index(txn: Any) -> None:
            for table in ("user_directory_rooms", "user_directory_remote", "user_directory_built"):
                await txn.execute(f"DELETE FROM {table}")

        await api.hs.db.write(forget_index)
    async with running_api(data_dir, aiohttp_client) as api:
        alice = (await api.login("alice"))["access_token"]
        assert await _found(api, alice, "quentin") == [uid("bob")]
