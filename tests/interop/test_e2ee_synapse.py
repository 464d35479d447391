"""End-to-end encryption keys between Accord and stock Synapse, both ways, through each
server's client API only: device keys uploaded on one side are seen by the other's
/keys/query (and cross-signing keys uploaded later), one-time keys claimed across, to-device messages
delivered across, and a new device on either side reaches the other side's users in
/sync ``device_lists.changed`` and in their next /keys/query (m.device_list_update, or a
refetch of the list)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.homeserver.e2ee.keyhelpers import device_keys, new_key, otk, public, signed
from tests.interop.test_federated_ephemeral import eventually
from tests.interop.test_federation_basics import Accord, accord  # noqa: F401  (fixture)
from tests.tls_ca import TestCA

from .synapse import ClientAPI, SynapseClient, SynapseServer, SynapseUser

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = "interop password e2ee"
ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(accord: Accord, ca: TestCA) -> AsyncIterator[ClientAPI]:  # noqa: F811
    async with ClientAPI(f"https://{accord.name}", ca.ca_path) as client_api:
        yield client_api


async def _accord_user(accord: Accord, api: ClientAPI, localpart: str) -> SynapseClient:  # noqa: F811
    user_id = f"@{localpart}:{accord.name}"
    session = await accord.hs.registration.create_account(user_id, PASSWORD)
    return SynapseClient(api, SynapseUser(user_id, session["access_token"], session["device_id"]))


async def _login(server: SynapseServer | ClientAPI, user_id: str) -> SynapseClient:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": PASSWORD}
    data = await server.request("POST", "/_matrix/client/v3/login", body)
    return SynapseClient(server, SynapseUser(data["user_id"], data["access_token"], data["device_id"]))


async def _upload(client: SynapseClient, n_otks: int = 0) -> str:
    device_id = client.user.device_id
    key = new_key(device_id)
    body: dict[str, Any] = {"device_keys": device_keys(client.user_id, device_id, key)}
    if n_otks:
        body["one_time_keys"] = {f"signed_curve25519:K{i}": otk(client.user_id, key, i) for i in range(n_otks)}
    await client.request("POST", "/keys/upload", body)
    return device_id


def _cross_signing(user_id: str) -> dict[str, Any]:
    master, ssk = new_key("m"), new_key("s")
    master.version = public(master)
    master_key = {"user_id": user_id, "usage": ["master"], "keys": {f"ed25519:{public(master)}": public(master)}}
    ssk_key = signed(
        {"user_id": user_id, "usage": ["self_signing"], "keys": {f"ed25519:{public(ssk)}": public(ssk)}},
        user_id, master,
    )
    return {"master_key": master_key, "self_signing_key": ssk_key}


async def _devices_seen(client: SynapseClient, user_id: str, devices: set[str]) -> dict[str, Any]:
    got = await client.request("POST", "/keys/query", {"device_keys": {user_id: []}})
    assert set(got["device_keys"].get(user_id, {})) == devices, got
    return got


async def _has_master(client: SynapseClient, user_id: str) -> None:
    got = await client.request("POST", "/keys/query", {"device_keys": {user_id: []}})
    assert got["master_keys"].get(user_id, {}).get("usage") == ["master"], got
    assert got["self_signing_keys"].get(user_id, {}).get("usage") == ["self_signing"], got


async def test_keys_to_device_and_device_lists_with_synapse(
    accord: Accord, synapse: SynapseServer, api: ClientAPI  # noqa: F811
) -> None:
    sam = synapse.client(await synapse.register_user("sam", PASSWORD))
    ada = await _accord_user(accord, api, "ada")
    sam_dev = await _upload(sam, n_otks=2)
    ada_dev = await _upload(ada, n_otks=2)

    # Keys across, no room shared yet: each side's /keys/query sees the other's device,
    # and claims take one-time keys from the other server.
    got = await _devices_seen(ada, sam.user_id, {sam_dev})
    assert got["failures"] == {}
    await _devices_seen(sam, ada.user_id, {ada_dev})
    claimed = await ada.request("POST", "/keys/claim", {"one_time_keys": {sam.user_id: {sam_dev: "signed_curve25519"}}})
    assert list(claimed["one_time_keys"][sam.user_id][sam_dev])[0].startswith("signed_curve25519:")
    claimed = await sam.request("POST", "/keys/claim", {"one_time_keys": {ada.user_id: {ada_dev: "signed_curve25519"}}})
    assert list(claimed["one_time_keys"][ada.user_id][ada_dev])[0].startswith("signed_curve25519:")

    # An encrypted room on Synapse that ada joins.
    room = await sam.create_room(preset="private_chat", invite=[ada.user_id], initial_state=[ENCRYPTION])
    await eventually(lambda: ada.join(room, via=[synapse.server_name]), "ada joins sam's room")
    ada_since = (await ada.sync())["next_batch"]
    sam_since = (await sam.sync())["next_batch"]
    await _devices_seen(ada, sam.user_id, {sam_dev})  # Accord now tracks sam's list
    await _devices_seen(sam, ada.user_id, {ada_dev})

    # Cross-signing keys uploaded now reach the other side's cached lists
    # (m.signing_key_update both ways).
    await sam.request("POST", "/keys/device_signing/upload", _cross_signing(sam.user_id))
    await ada.request("POST", "/keys/device_signing/upload", _cross_signing(ada.user_id))
    await eventually(lambda: _has_master(ada, sam.user_id), "sam's cross-signing keys on Accord")
    await eventually(lambda: _has_master(sam, ada.user_id), "ada's cross-signing keys on Synapse")

    # To-device both ways.
    await sam.request("PUT", "/sendToDevice/m.room_key_request/s1", {"messages": {ada.user_id: {ada_dev: {"from": "sam"}}}})
    got = await ada.sync_until(lambda s: bool(s.get("to_device", {}).get("events")), since=ada_since, within=30)
    assert [(e["sender"], e["content"]) for e in got["to_device"]["events"]] == [(sam.user_id, {"from": "sam"})]
    await ada.request("PUT", "/sendToDevice/m.room_key_request/a1", {"messages": {sam.user_id: {"*": {"from": "ada"}}}})
    got = await sam.sync_until(lambda s: bool(s.get("to_device", {}).get("events")), since=sam_since, within=30)
    assert [(e["sender"], e["content"]) for e in got["to_device"]["events"]] == [(ada.user_id, {"from": "ada"})]

    # A new device on Synapse: ada's /sync says sam changed, and her next query shows it.
    sam2 = await _login(synapse, sam.user_id)
    sam_dev2 = await _upload(sam2)
    await ada.sync_until(
        lambda s: sam.user_id in s.get("device_lists", {}).get("changed", []), since=ada_since, within=30
    )
    await eventually(lambda: _devices_seen(ada, sam.user_id, {sam_dev, sam_dev2}), "sam's new device on Accord")

    # A new device on Accord: sam's /sync says ada changed, and his next query shows it.
    ada2 = await _login(api, ada.user_id)
    ada_dev2 = await _upload(ada2)
    await sam.sync_until(
        lambda s: ada.user_id in s.get("device_lists", {}).get("changed", []), since=sam_since, within=30
    )
    await eventually(lambda: _devices_seen(sam, ada.user_id, {ada_dev, ada_dev2}), "ada's new device on Synapse")

    # Deletions travel too: each second device logs out.
    await sam2.request("POST", "/logout", {})
    await ada2.request("POST", "/logout", {})
    await eventually(lambda: _devices_seen(ada, sam.user_id, {sam_dev}), "sam's device gone on Accord")
    await eventually(lambda: _devices_seen(sam, ada.user_id, {ada_dev}), "ada's device gone on Synapse")
