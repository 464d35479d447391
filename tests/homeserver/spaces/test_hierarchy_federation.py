"""Spaces across two real Accord servers: a space on A with children on B, which A
knows only through B's GET /_matrix/federation/v1/hierarchy/{roomId}, and what B
tells A of its rooms."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from federation.client import RemoteError
from homeserver.rooms import hierarchy
from tests.homeserver.federation.servers import Client, Pair, running_pair
from tests.tls_ca import TestCA

V1 = "/_matrix/client/v1"


async def _room(client: Client, **body: Any) -> str:
    return str((await client.call("POST", "/createRoom", body))["room_id"])


async def _space(client: Client, **body: Any) -> str:
    return await _room(client, creation_content={"type": "m.space"}, **body)


async def _link(client: Client, space: str, child: str, via: str, **content: Any) -> None:
    await client.call("PUT", f"/rooms/{space}/state/m.space.child/{child}", {"via": [via], **content})


async def _ids(client: Client, room: str, query: str = "") -> list[str]:
    body = await client.call("GET", f"{V1}/rooms/{room}/hierarchy{query}")
    return [r["room_id"] for r in body["rooms"]]


@pytest.fixture
async def pair(tmp_path: Path, ca: TestCA) -> Any:
    async with running_pair(tmp_path, ca) as p:
        yield p


async def test_space_on_a_with_children_on_b(pair: Pair) -> None:
    alice, bob, b_name = pair.alice, pair.bob, pair.b_spec.name
    space = await _space(alice, preset="public_chat", name="A's space")
    public_b = await _room(bob, preset="public_chat", name="Bob's public room", topic="on B")
    private_b = await _room(bob, preset="private_chat", name="Bob's secret room")
    sub_b = await _space(bob, preset="public_chat", name="Bob's subspace")
    deep_b = await _room(bob, preset="public_chat", name="deep on B")
    hidden_b = await _room(bob, preset="private_chat", name="hidden in the subspace")
    await _link(bob, sub_b, deep_b, b_name)
    await _link(bob, sub_b, hidden_b, b_name)
    await _link(alice, space, public_b, b_name, order="1")
    await _link(alice, space, private_b, b_name, order="2")
    await _link(alice, space, sub_b, b_name, order="3")

    asked: list[str] = []
    assert pair.a.federation_client is not None
    pair.a.federation_client.observers.append(lambda _m, _d, target, _c: asked.append(target))
    body = await alice.call("GET", f"{V1}/rooms/{space}/hierarchy")
    ids = [r["room_id"] for r in body["rooms"]]
    assert ids == [space, public_b, sub_b, deep_b]
    # One question per remote room, but none for deep_b: the subspace's answer described it.
    assert sorted(t.split("?")[0].rsplit("/", 1)[1] for t in asked) == sorted(
        quote(r, safe="") for r in (public_b, private_b, sub_b)
    )
    # Answers are cached briefly: walking again asks nothing.
    assert await _ids(alice, space) == ids and len(asked) == 3
    by_id = {r["room_id"]: r for r in body["rooms"]}
    assert by_id[public_b]["name"] == "Bob's public room" and by_id[public_b]["topic"] == "on B"
    assert by_id[public_b]["num_joined_members"] == 1 and by_id[public_b]["join_rule"] == "public"
    assert by_id[sub_b]["room_type"] == "m.space"
    assert {c["state_key"] for c in by_id[sub_b]["children_state"]} == {deep_b, hidden_b}
    assert "hidden" not in str(body) and "secret" not in str(body)
    # Paging through remote children; the cached answers serve the later pages.
    first = await alice.call("GET", f"{V1}/rooms/{space}/hierarchy?limit=2")
    assert [r["room_id"] for r in first["rooms"]] == [space, public_b]
    rest = await alice.call("GET", f"{V1}/rooms/{space}/hierarchy?limit=2&from={first['next_batch']}")
    assert [r["room_id"] for r in rest["rooms"]] == [sub_b, deep_b]

    # Once bob invites alice to the private room, she may see it (B learns of the invite).
    await bob.call("POST", f"/rooms/{private_b}/invite", {"user_id": pair.alice_id})
    pair.a.space_hierarchy._remote._entries.clear()  # the brief cache, skipped for the test
    assert private_b in await _ids(alice, space)


async def test_federation_endpoint_answers_what_the_server_may_see(pair: Pair) -> None:
    bob, b_name = pair.bob, pair.b_spec.name
    client = pair.a.federation_client
    assert client is not None
    space = await _space(bob, preset="public_chat", name="B space")
    public = await _room(bob, preset="public_chat", name="open")
    private = await _room(bob, preset="private_chat", name="closed")
    suggested = await _room(bob, preset="public_chat", name="suggested")
    await _link(bob, space, public, b_name)
    await _link(bob, space, private, b_name)
    await _link(bob, space, suggested, b_name, suggested=True)
    await _link(bob, space, "!elsewhere:example.org", "example.org")

    path = f"/_matrix/federation/v1/hierarchy/{quote(space, safe='')}"
    answer = await client.get_json(b_name, path)
    assert answer["room"]["room_id"] == space and answer["room"]["room_type"] == "m.space"
    assert len(answer["room"]["children_state"]) == 4
    assert {c["room_id"] for c in answer["children"]} == {public, suggested}
    assert answer["inaccessible_children"] == [private]
    only = await client.get_json(b_name, path, query={"suggested_only": "true"})
    assert [c["room_id"] for c in only["children"]] == [suggested] and only["inaccessible_children"] == []

    # A child whose server ACL denies A is inaccessible to A.
    await bob.call("PUT", f"/rooms/{public}/state/m.room.server_acl", {"allow": ["*"], "deny": [pair.a_spec.ip]})
    denied = await client.get_json(b_name, path)
    assert {c["room_id"] for c in denied["children"]} == {suggested}
    assert sorted(denied["inaccessible_children"]) == sorted([private, public])

    # A private space is 404 to a server none of whose users is in or invited to it.
    private_space = await _space(bob, preset="private_chat")
    with pytest.raises(RemoteError) as err:
        await client.get_json(b_name, f"/_matrix/federation/v1/hierarchy/{quote(private_space, safe='')}")
    assert err.value.status == 404
    # An invite of one of A's users opens it to A.
    await bob.call("POST", f"/rooms/{private_space}/invite", {"user_id": pair.alice_id})
    opened = await client.get_json(b_name, f"/_matrix/federation/v1/hierarchy/{quote(private_space, safe='')}")
    assert opened["room"]["room_id"] == private_space
    # A server the space's ACL denies learns nothing.
    await bob.call("PUT", f"/rooms/{space}/state/m.room.server_acl",
                   {"allow": ["*"], "deny": [pair.a_spec.ip]})
    with pytest.raises(RemoteError) as err:
        await client.get_json(b_name, path)
    assert err.value.status == 404


async def test_federation_policy_applies_to_via_servers(tmp_path: Path, ca: TestCA) -> None:
    """A under `policy: partners` with no partnership never asks B about B's rooms."""
    async with running_pair(tmp_path, ca, a_config={"federation": {"policy": "partners"}}) as p:
        space = await _space(p.alice, preset="public_chat")
        child = await _room(p.bob, preset="public_chat", name="unreachable")
        await _link(p.alice, space, child, p.b_spec.name)
        asked: list[str] = []
        assert p.a.federation_client is not None
        p.a.federation_client.observers.append(lambda *args: asked.append(str(args)))
        assert await _ids(p.alice, space) == [space]
        assert not any("hierarchy" in a for a in asked)


async def test_remote_restricted_child_seen_through_the_allowed_room(pair: Pair) -> None:
    alice, bob, b_name = pair.alice, pair.bob, pair.b_spec.name
    carol = pair.client(pair.a_spec)
    await carol.register("carol")
    members_b = await _room(bob, preset="public_chat", name="members")
    restricted_b = await _room(bob, name="for members", initial_state=[{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": members_b}]},
    }])
    await alice.call("POST", f"/join/{members_b}?server_name={b_name}", {})
    space = await _space(alice, preset="public_chat")
    await carol.call("POST", f"/rooms/{space}/join", {})
    await _link(alice, space, restricted_b, b_name)

    body = await alice.call("GET", f"{V1}/rooms/{space}/hierarchy")
    assert [r["room_id"] for r in body["rooms"]] == [space, restricted_b]
    entry = body["rooms"][1]
    assert entry["join_rule"] == "restricted" and entry["allowed_room_ids"] == [members_b]
    # carol, on the same server but not in the allowed room, does not see it.
    assert await _ids(carol, space) == [space]


async def test_a_page_asks_a_bounded_number_of_servers(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the per-page budget of remote questions the page ends, and the next page
    goes on from the room it did not ask about."""
    monkeypatch.setattr(hierarchy, "MAX_REMOTE_FETCHES", 1)
    alice, bob, b_name = pair.alice, pair.bob, pair.b_spec.name
    space = await _space(alice, preset="public_chat")
    first = await _room(bob, preset="public_chat", name="first")
    second = await _room(bob, preset="public_chat", name="second")
    await _link(alice, space, first, b_name, order="1")
    await _link(alice, space, second, b_name, order="2")
    page = await alice.call("GET", f"{V1}/rooms/{space}/hierarchy")
    assert [r["room_id"] for r in page["rooms"]] == [space, first]
    rest = await alice.call("GET", f"{V1}/rooms/{space}/hierarchy?from={page['next_batch']}")
    assert [r["room_id"] for r in rest["rooms"]] == [second] and "next_batch" not in rest
