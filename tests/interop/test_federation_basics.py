"""Accord and stock Synapse federating over TLS on loopback, in both directions, for what
Accord serves today: server keys, X-Matrix signed requests, profile and alias queries and the
public room directory. Room joins over federation are not covered here (not built yet).

Synapse (conftest.py) runs on 127.0.0.3 and trusts only the test CA; our server runs in-process
on 127.0.0.2 with a certificate from the same CA and that CA as its federation trust. Both are
module-scoped, so the keys each fetched of the other stay cached between tests: each test states
what it proves without relying on having run first.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from federation.client import FederationClient, RemoteError, make_ssl_context, quote_path_segment
from federation.discovery import ServerResolver
from federation.events import decode_verify_key_base64, generate_signing_key, verify_signed_by
from homeserver.rooms.creation import create_room
from homeserver.server import HomeServer
from tests.homeserver.federation.servers import ServerSpec, loopback_guard, running_server
from tests.tls_ca import TestCA

from .synapse import MatrixError, SynapseClient, SynapseServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

V1 = "/_matrix/federation/v1"
PASSWORD = "interop password 2"
OUR_IP = "127.0.0.2"


@dataclass
class Accord:
    """Our running server, its spec (name, key) and one local user with a display name."""

    spec: ServerSpec
    hs: HomeServer
    alice: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def client(self) -> FederationClient:
        assert self.hs.federation_client is not None
        return self.hs.federation_client


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def accord(
    tmp_path_factory: pytest.TempPathFactory, ca: TestCA, synapse: SynapseServer
) -> AsyncIterator[Accord]:
    """Depends on ``synapse`` so that a missing Synapse skips before our server starts."""
    spec = ServerSpec(tmp_path_factory.mktemp("accord"), OUR_IP)
    async with running_server(spec, ca) as hs:
        alice = f"@alice:{spec.name}"
        await hs.registration.create_account(alice, None, login=False)
        await hs.users.set_profile_field(alice, "displayname", "Alice of Accord")
        yield Accord(spec, hs, alice)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bob(synapse: SynapseServer) -> SynapseClient:
    """A Synapse user with a display name set through Synapse's client API."""
    client = synapse.client(await synapse.register_user("bob", PASSWORD))
    await client.request(
        "PUT", f"/profile/{quote_path_segment(client.user_id)}/displayname",
        {"displayname": "Bob of Synapse"},
    )
    return client


def q(value: str) -> str:
    return quote_path_segment(value)


# --- 1. server keys, both ways ---------------------------------------------------------------


async def test_our_keyring_fetches_and_verifies_synapse_keys(
    accord: Accord, synapse: SynapseServer
) -> None:
    key_id = synapse.signing_key_id
    keys = await accord.hs.keyring.get_verify_keys(synapse.server_name, [key_id])
    assert list(keys) == [key_id]
    published = await synapse.request("GET", "/_matrix/key/v2/server")
    assert keys[key_id].encode() == decode_verify_key_base64(
        key_id, published["verify_keys"][key_id]["key"]
    ).encode()
    # Verified and stored as fetched from Synapse itself (no notary is configured).
    stored = await accord.hs.server_keys.get_keys(synapse.server_name)
    assert [(k.key_id, k.source) for k in stored] == [(key_id, synapse.server_name)]


async def test_synapse_fetches_and_verifies_our_keys(
    accord: Accord, synapse: SynapseServer
) -> None:
    """Synapse as notary: it fetches our key response directly over TLS, checks our signature
    and countersigns; both signatures verify with the keys we and it publish."""
    criteria = {"minimum_valid_until_ts": int(time.time() * 1000)}
    answer = await synapse.request(
        "POST", "/_matrix/key/v2/query",
        {"server_keys": {accord.name: {accord.spec.key_id: criteria}}},
    )
    [keys] = answer["server_keys"]
    assert keys["server_name"] == accord.name
    assert list(keys["verify_keys"]) == [accord.spec.key_id]
    verify_signed_by(keys, accord.name, {accord.spec.key_id: accord.hs.signing_key.verify_key})
    notary = await synapse.request("GET", "/_matrix/key/v2/server")
    notary_keys = {
        k: decode_verify_key_base64(k, v["key"]) for k, v in notary["verify_keys"].items()
    }
    verify_signed_by(keys, synapse.server_name, notary_keys)


async def test_our_keyring_trusts_synapse_as_notary(
    accord: Accord, synapse: SynapseServer, ca: TestCA, tmp_path: Path
) -> None:
    """A second server of ours that cannot reach ``accord`` (static host on a closed port) gets
    its key through Synapse's notary API, checked against Synapse's key as configured."""
    published = await synapse.request("GET", "/_matrix/key/v2/server")
    notary = {
        "server_name": synapse.server_name,
        "verify_keys": {k: v["key"] for k, v in published["verify_keys"].items()},
    }
    dead_port = ServerSpec(tmp_path / "dead", "127.0.0.5").port
    spec = ServerSpec(tmp_path, "127.0.0.4")
    async with running_server(
        spec, ca, trusted_key_servers=[notary],
        static_hosts={accord.name: f"127.0.0.5:{dead_port}"},
    ) as hs:
        keys = await hs.keyring.get_verify_keys(accord.name, [accord.spec.key_id])
        assert keys[accord.spec.key_id].encode() == accord.hs.signing_key.verify_key.encode()
        stored = await hs.server_keys.get_keys(accord.name)
        assert [(k.key_id, k.source) for k in stored] == [(accord.spec.key_id, synapse.server_name)]


# --- Synapse asks us, with its X-Matrix signature -----------------------------------------------


async def test_synapse_client_reads_our_users_profile(
    accord: Accord, bob: SynapseClient, synapse: SynapseServer
) -> None:
    """Synapse sends us a signed /query/profile; we verify it with Synapse's fetched key."""
    profile = await bob.request("GET", f"/profile/{q(accord.alice)}")
    assert profile["displayname"] == "Alice of Accord"
    # One field: Synapse passes it on as ?field=displayname.
    field = await bob.request("GET", f"/profile/{q(accord.alice)}/displayname")
    assert field == {"displayname": "Alice of Accord"}
    # Our key ring had to fetch Synapse's key to verify that request (or had it already).
    assert await accord.hs.keyring.get_verify_keys(synapse.server_name, [synapse.signing_key_id])
    with pytest.raises(MatrixError) as err:
        await bob.request("GET", f"/profile/{q('@nobody:' + accord.name)}")
    assert err.value.status == 404


async def test_synapse_lists_our_public_rooms(accord: Accord, bob: SynapseClient) -> None:
    room_id = await create_room(
        accord.hs, accord.alice,
        {"preset": "public_chat", "visibility": "public", "name": "Accord lobby", "topic": "hi"},
    )
    other_id = await create_room(
        accord.hs, accord.alice, {"preset": "public_chat", "visibility": "public", "name": "Other"}
    )
    await create_room(accord.hs, accord.alice, {"preset": "public_chat", "name": "Unlisted"})
    listing = await bob.request("GET", "/publicRooms", params={"server": accord.name})
    assert {r["room_id"] for r in listing["chunk"]} == {room_id, other_id}
    [entry] = [r for r in listing["chunk"] if r["room_id"] == room_id]
    assert (entry["name"], entry["topic"], entry["num_joined_members"]) == ("Accord lobby", "hi", 1)
    # Paging: Synapse hands our opaque next_batch token back to us unchanged.
    first = await bob.request(
        "GET", "/publicRooms", params={"server": accord.name, "limit": "1"}
    )
    second = await bob.request(
        "GET", "/publicRooms",
        params={"server": accord.name, "limit": "1", "since": first["next_batch"]},
    )
    assert [r["room_id"] for r in first["chunk"] + second["chunk"]] == [
        r["room_id"] for r in listing["chunk"]
    ]
    # The filtered form goes out as a POST.
    found = await bob.request(
        "POST", "/publicRooms", {"filter": {"generic_search_term": "lobby"}, "limit": 5},
        params={"server": accord.name},
    )
    assert [r["room_id"] for r in found["chunk"]] == [room_id]


async def test_synapse_resolves_our_alias(accord: Accord, bob: SynapseClient) -> None:
    room_id = await create_room(accord.hs, accord.alice, {"preset": "public_chat"})
    alias = f"#interop:{accord.name}"
    await accord.hs.aliases.create_alias(accord.alice, alias, room_id)
    resolved = await bob.request("GET", f"/directory/room/{q(alias)}")
    assert resolved["room_id"] == room_id
    assert resolved["servers"] == [accord.name]
    with pytest.raises(MatrixError) as err:
        await bob.request("GET", f"/directory/room/{q('#missing:' + accord.name)}")
    assert err.value.status == 404


# --- 2. we ask Synapse, with our X-Matrix signature ---------------------------------------------


async def test_signed_requests_to_synapse(accord: Accord, synapse: SynapseServer, bob: SynapseClient) -> None:
    version = await accord.client.get_json(synapse.server_name, f"{V1}/version")
    assert version["server"]["name"] == "Synapse"

    # Authenticated endpoints: Synapse must fetch our key to accept these.
    profile = await accord.client.get_json(
        synapse.server_name, f"{V1}/query/profile", query={"user_id": bob.user_id}
    )
    assert profile["displayname"] == "Bob of Synapse"
    only_name = await accord.client.get_json(
        synapse.server_name, f"{V1}/query/profile",
        query={"user_id": bob.user_id, "field": "displayname"},
    )
    assert only_name == {"displayname": "Bob of Synapse"}

    room_id = await bob.create_room(
        preset="public_chat", visibility="public", room_alias_name="synapse-lobby",
        name="Synapse lobby",
    )
    alias = f"#synapse-lobby:{synapse.server_name}"
    directory = await accord.client.get_json(
        synapse.server_name, f"{V1}/query/directory", query={"room_alias": alias}
    )
    assert directory["room_id"] == room_id
    assert synapse.server_name in directory["servers"]

    annex_id = await bob.create_room(preset="public_chat", visibility="public", name="Annex")
    # Synapse fills its room directory from room statistics it updates in the background, so
    # rooms it just created show up a moment later.
    deadline = time.monotonic() + 10
    while True:
        rooms = await accord.client.get_json(synapse.server_name, f"{V1}/publicRooms")
        listed = {r["room_id"]: r for r in rooms["chunk"]}
        if {room_id, annex_id} <= listed.keys() or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert (listed[room_id]["name"], listed[room_id]["canonical_alias"]) == ("Synapse lobby", alias)
    assert annex_id in listed

    first = await accord.client.get_json(
        synapse.server_name, f"{V1}/publicRooms", query={"limit": "1"}
    )
    # Synapse's paging token is base64 (may hold "+" and "/"): it goes back escaped, signed so.
    second = await accord.client.get_json(
        synapse.server_name, f"{V1}/publicRooms",
        query={"limit": "1", "since": first["next_batch"]},
    )
    assert len(first["chunk"]) == len(second["chunk"]) == 1
    assert first["chunk"] != second["chunk"]
    searched = await accord.client.post_json(
        synapse.server_name, f"{V1}/publicRooms",
        {"filter": {"generic_search_term": "Synapse lobby"}, "limit": 10},
    )
    assert [r["room_id"] for r in searched["chunk"]] == [room_id]


# --- 5. Synapse refuses what we did not sign ------------------------------------------------------


async def test_synapse_refuses_a_key_that_is_not_ours(
    accord: Accord, synapse: SynapseServer, bob: SynapseClient, ca: TestCA
) -> None:
    """Our server name with a key that is not ours (same key ID, then a new ID), or unsigned."""
    ctx = make_ssl_context(ca_bundle_path=str(ca.ca_path))
    path = f"{V1}/query/profile?user_id={urllib.parse.quote(bob.user_id)}"
    for version in (accord.spec.signing_key.version, "impostor"):
        impostor = FederationClient(
            accord.name, generate_signing_key(version),
            resolver=ServerResolver(ssl_context=ctx, guard=loopback_guard()), ssl_context=ctx,
            guard=loopback_guard(),
        )
        try:
            with pytest.raises(RemoteError) as err:
                await impostor.get_json(synapse.server_name, path)
        finally:
            await impostor.close()
        # Same ID: "Invalid signature"; unknown ID: "Failed to find any key".
        assert (err.value.status, err.value.errcode) == (401, "M_UNAUTHORIZED"), version
    with pytest.raises(RemoteError) as err:
        await accord.client.get_json(synapse.server_name, path, signed=False)
    assert (err.value.status, err.value.errcode) == (401, "M_UNAUTHORIZED")
    # The genuine key still works (the failures left nothing poisoned in Synapse's cache).
    await accord.client.get_json(synapse.server_name, path)
