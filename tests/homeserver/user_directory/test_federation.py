"""The user directory and room summaries across two real Accord servers: other
servers' users are found by the display name their join events carry, only
through rooms the searcher may see; a room this server is not in is summarised
from a via server's answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.homeserver.federation.servers import Pair, running_pair
from tests.tls_ca import TestCA


@pytest.fixture
async def pair(tmp_path: Path, ca: TestCA) -> Any:
    async with running_pair(tmp_path, ca) as p:
        yield p


async def _found(client: Any, term: str) -> list[str]:
    body = await client.call("POST", "/user_directory/search", {"search_term": term})
    return [r["user_id"] for r in body["results"]]


async def test_remote_users_in_the_directory(pair: Pair) -> None:
    alice, bob, b_name = pair.alice, pair.bob, pair.b_spec.name
    await bob.call("PUT", f"/profile/{quote(pair.bob_id)}/displayname", {"displayname": "Roberta Remote"})
    dave = pair.client(pair.b_spec)
    dave_id = await dave.register("dave")
    await dave.call("PUT", f"/profile/{quote(dave_id)}/displayname", {"displayname": "Remote Secret"})
    carol = pair.client(pair.a_spec)
    await carol.register("carol")

    public = (await bob.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    await alice.call("POST", f"/join/{public}?server_name={b_name}", {})
    # A private room on B that alice (on A) is in with dave; carol is in none of it.
    private = (await dave.call("POST", "/createRoom", {"preset": "private_chat"}))["room_id"]
    await dave.call("POST", f"/rooms/{private}/invite", {"user_id": pair.alice_id})
    await alice.call("POST", f"/join/{private}?server_name={b_name}", {})
    assert pair.a.user_directory is not None
    await pair.a.user_directory.settle()

    for client in (alice, carol):
        assert await _found(client, "roberta") == [pair.bob_id]  # in a public room
    assert sorted(await _found(alice, "remote")) == sorted([dave_id, pair.bob_id])
    # carol shares no room with dave and his room is private: never found, by name or ID.
    assert await _found(carol, "remote") == [pair.bob_id]
    assert await _found(carol, "secret") == []
    assert await _found(carol, dave_id) == []
    assert await _found(alice, dave_id) == [dave_id]


async def test_summary_of_a_room_on_another_server(pair: Pair) -> None:
    alice, bob, b_name = pair.alice, pair.bob, pair.b_spec.name
    public = (await bob.call("POST", "/createRoom", {"preset": "public_chat", "name": "On B"}))["room_id"]
    private = (await bob.call("POST", "/createRoom", {"preset": "private_chat", "name": "Hidden"}))["room_id"]
    path = "/_matrix/client/v1/room_summary/"
    # Without a via server (the room ID names none): not found.
    assert (await alice.call("GET", f"{path}{quote(public)}", expect=404))["errcode"] == "M_NOT_FOUND"
    summary = await alice.call("GET", f"{path}{quote(public)}?via={b_name}")
    assert summary["room_id"] == public and summary["name"] == "On B"
    assert summary["num_joined_members"] == 1 and summary["membership"] == "leave"
    # A room B does not show to A: not found.
    err = await alice.call("GET", f"{path}{quote(private)}?via={b_name}", expect=404)
    assert err["errcode"] == "M_NOT_FOUND" and "Hidden" not in str(err)


async def test_summary_of_a_remote_room_one_is_invited_to(pair: Pair) -> None:
    """No via: the server that sent the invite is asked, and shows the invitee's server the room."""
    alice, bob = pair.alice, pair.bob
    private = (await bob.call("POST", "/createRoom", {"preset": "private_chat", "name": "Invited"}))["room_id"]
    path = f"/_matrix/client/v1/room_summary/{quote(private)}"
    assert (await alice.call("GET", path, expect=404))["errcode"] == "M_NOT_FOUND"
    await bob.call("POST", f"/rooms/{private}/invite", {"user_id": pair.alice_id})
    summary = await alice.call("GET", path)
    assert summary["name"] == "Invited" and summary["membership"] == "invite"
    # Another user of A, not invited, is still not shown it.
    carol = pair.client(pair.a_spec)
    await carol.register("carol")
    assert (await carol.call("GET", path, expect=404))["errcode"] == "M_NOT_FOUND"


async def test_a_room_joined_again_is_indexed_whole_again(pair: Pair) -> None:
    """A room is indexed whole on the first local join only; once this server's last
    member left, what happened meanwhile came to it with the room's state on the next
    join, never as events, so that join indexes the room again."""
    alice, bob, b_name = pair.alice, pair.bob, pair.b_spec.name
    assert pair.a.user_directory is not None
    room = (await bob.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    await alice.call("POST", f"/join/{room}?server_name={b_name}", {})
    carol = pair.client(pair.a_spec)
    await carol.register("carol")
    await carol.call("POST", f"/join/{room}", {})  # a second local join: nothing new to index
    await pair.a.user_directory.settle()
    for client in (alice, carol):
        await client.call("POST", f"/rooms/{room}/leave", {})
    dave = pair.client(pair.b_spec)
    dave_id = await dave.register("dave")
    await dave.call("PUT", f"/profile/{quote(dave_id)}/displayname", {"displayname": "Zed Newcomer"})
    await dave.call("POST", f"/join/{room}", {})
    assert await _found(alice, "newcomer") == []  # this server was out of the room
    await alice.call("POST", f"/join/{room}?server_name={b_name}", {})
    await pair.a.user_directory.settle()
    assert await _found(alice, "newcomer") == [dave_id]
