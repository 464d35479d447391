"""matrix-js-sdk with its Rust crypto on both sides of a federation with stock Synapse: an
Accord user and a Synapse user hold an encrypted conversation, in a room made on either
server, and each decrypts the other's messages; neither server holds anything but
ciphertext; cross-signing bootstrapped on one server is seen from the other; a new device
on either side is announced to the other side's client and decrypts the next message."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.js_crypto import (
    JsAccount,
    JsClients,
    JsCryptoClient,
    converse,
    js_clients,
    new_device_reached,
    only_ciphertext,
)
from tests.e2e.test_js_sdk import _need_js_sdk
from tests.interop.test_e2ee_synapse import api  # noqa: F401  (fixture)
from tests.interop.test_federated_ephemeral import eventually
from tests.interop.test_federation_basics import Accord, accord  # noqa: F401  (fixture)
from tests.tls_ca import TestCA

from .synapse import ClientAPI, SynapseClient, SynapseServer, SynapseUser

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = "interop password e2ee js"
ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


def _account(base_url: str, client: SynapseClient, ca: TestCA) -> JsAccount:
    async def call(method: str, path: str, body: Any) -> Any:
        return await client.request(method, path, body)

    user = client.user
    return JsAccount(base_url, user.user_id, user.access_token, user.device_id, PASSWORD, call, ca.ca_path)


async def _login(server: SynapseServer | ClientAPI, user_id: str) -> SynapseClient:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": PASSWORD}
    data = await server.request("POST", "/_matrix/client/v3/login", body)
    return SynapseClient(server, SynapseUser(data["user_id"], data["access_token"], data["device_id"]))


async def _accord_user(accord: Accord, api: ClientAPI, localpart: str) -> SynapseClient:  # noqa: F811
    await accord.hs.registration.create_account(f"@{localpart}:{accord.name}", PASSWORD, login=False)
    return await _login(api, f"@{localpart}:{accord.name}")


async def _only_ciphertext(client: SynapseClient, room: str) -> None:
    """The room's timeline as the client's own server serves it holds no plaintext."""
    only_ciphertext(await client.request("GET", f"/rooms/{room}/messages?dir=b&limit=100"))


async def _shared_room(creator: SynapseClient, joiner: SynapseClient, via: str) -> str:
    """An encrypted room made on the creator's server, joined from the other."""
    room = await creator.create_room(preset="private_chat", invite=[joiner.user_id], initial_state=[ENCRYPTION])
    await eventually(lambda: joiner.join(room, via=[via]), f"{joiner.user_id} joins")
    return room


async def _start(clients: JsClients, base_url: str, client: SynapseClient, ca: TestCA) -> JsCryptoClient:
    return await clients.start(_account(base_url, client, ca))


@pytest.mark.parametrize("made_on", ["synapse", "accord"])
async def test_encrypted_conversation_with_synapse(
    accord: Accord, synapse: SynapseServer, api: ClientAPI, ca: TestCA, made_on: str  # noqa: F811
) -> None:
    _need_js_sdk()
    sam = synapse.client(await synapse.register_user(f"sam-{made_on}", PASSWORD))
    ada = await _accord_user(accord, api, f"ada-{made_on}")
    if made_on == "synapse":
        room = await _shared_room(sam, ada, synapse.server_name)
    else:
        room = await _shared_room(ada, sam, accord.name)
    accord_url = f"https://{accord.name}"
    async with js_clients() as clients:
        s = await _start(clients, synapse.base_url, sam, ca)
        a = await _start(clients, accord_url, ada, ca)
        await converse(a, s, room, made_on)
        await _only_ciphertext(ada, room)
        await _only_ciphertext(sam, room)

        # Cross-signing on each server, seen from the other.
        await a.call("bootstrapCrossSigning")
        await s.call("bootstrapCrossSigning")
        await s.device_status(ada.user_id, ada.user.device_id, lambda st: st["signedByOwner"])
        await a.device_status(sam.user_id, sam.user.device_id, lambda st: st["signedByOwner"])

        # A new device on Accord: sam's client hears of it and the next message reaches it.
        ada2 = await _start(clients, accord_url, await _login(api, ada.user_id), ca)
        await new_device_reached(s, ada2, a, room)

        # A new device on Synapse: the same the other way.
        sam2 = await _start(clients, synapse.base_url, await _login(synapse, sam.user_id), ca)
        await new_device_reached(a, sam2, s, room)
