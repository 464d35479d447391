"""matrix-js-sdk with its Rust crypto on two Accord servers: alice on A and bob on B hold an
encrypted conversation in a room made on either server, each decrypting the other's
messages, with only ciphertext on either server; cross-signing bootstrapped on one is seen
from the other; a new device on B is announced to alice's client and gets the next message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from tests.homeserver.federation.servers import PASSWORD, Client, Pair, running_pair

ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


async def _start(clients: JsClients, pair: Pair, client: Client) -> JsCryptoClient:
    device_id = (await client.call("GET", "/account/whoami"))["device_id"]

    async def call(method: str, path: str, body: Any) -> Any:
        return await client.call(method, path, body)

    account = JsAccount(client.origin, client.user_id, client.token, device_id, PASSWORD, call, pair.ca.ca_path)
    return await clients.start(account)


async def _room(creator: Client, joiner: Client, via: str) -> str:
    room = (await creator.call("POST", "/createRoom", {
        "preset": "private_chat", "invite": [joiner.user_id], "initial_state": [ENCRYPTION],
    }))["room_id"]
    await joiner.call("POST", f"/join/{room}?server_name={via}", {})
    return str(room)


async def test_encrypted_conversations_between_two_accords(tmp_path: Path) -> None:
    _need_js_sdk()
    async with running_pair(tmp_path) as pair, js_clients() as clients:
        on_a = await _room(pair.alice, pair.bob, pair.a_spec.name)
        on_b = await _room(pair.bob, pair.alice, pair.b_spec.name)
        a = await _start(clients, pair, pair.alice)
        b = await _start(clients, pair, pair.bob)
        await converse(a, b, on_a, "on A")
        await converse(b, a, on_b, "on B")
        for client, room in ((pair.alice, on_a), (pair.bob, on_a), (pair.alice, on_b), (pair.bob, on_b)):
            only_ciphertext(await client.call("GET", f"/rooms/{room}/messages?dir=b&limit=100"))

        await a.call("bootstrapCrossSigning")
        await b.device_status(pair.alice_id, a.device_id, lambda st: st["signedByOwner"])

        bob2 = pair.client(pair.b_spec)
        await bob2.login("bob")
        b2 = await _start(clients, pair, bob2)
        await new_device_reached(a, b2, b, on_a)
