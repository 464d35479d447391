"""The Synapse harness itself: Synapse starts as configured, its client API carries a whole
conversation, its federation endpoints answer over TLS from the test CA, its signing keys verify
with our protocol core, and its outbound federation trusts our CA (and only our CA).

One Synapse (the ``synapse`` fixture of conftest.py) serves the whole module.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from federation.events import (
    SignatureError,
    decode_verify_key_base64,
    encode_base64,
    get_verify_key,
    key_id_of,
    sign_json,
    signing_key_from_seed,
    verify_signed_by,
)
from tests.tls_ca import TestCA

from .synapse import SynapseServer, free_port, timeline_events

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = "interop password 1"
PEER_SIGNING_KEY = signing_key_from_seed(bytes(range(32)), "interop")
PEER_KEY_ID = key_id_of(PEER_SIGNING_KEY)


async def test_two_users_talk_in_a_room(synapse: SynapseServer) -> None:
    alice = synapse.client(await synapse.register_user("alice", PASSWORD))
    bob = synapse.client(await synapse.register_user("bob", PASSWORD))
    assert alice.user_id == f"@alice:{synapse.server_name}"
    assert alice.user.device_id and alice.user.access_token

    room_id = await alice.create_room(preset="private_chat", name="interop")
    create = await alice.state_event(room_id, "m.room.create")
    assert create.get("room_version") == "12"  # Synapse's default, which ours matches
    await alice.invite(room_id, bob.user_id)
    invited = await bob.sync_until(lambda s: room_id in s.get("rooms", {}).get("invite", {}))
    assert await bob.join(room_id) == room_id

    event_id = await alice.send_text(room_id, "hello from alice")
    await alice.typing(room_id)
    await bob.receipt(room_id, event_id)

    def has_message(sync: dict[str, Any]) -> bool:
        return any(e["event_id"] == event_id for e in timeline_events(sync, room_id))

    await bob.sync_until(has_message, since=invited["next_batch"])
    seen_by_alice = await alice.sync_until(has_message)
    message = next(e for e in timeline_events(seen_by_alice, room_id) if e["event_id"] == event_id)
    assert message["content"]["body"] == "hello from alice"
    assert message["sender"] == alice.user_id

    members = {
        e["state_key"]: e["content"]["membership"]
        for e in await alice.state(room_id)
        if e["type"] == "m.room.member"
    }
    assert members == {alice.user_id: "join", bob.user_id: "join"}


async def test_admin_registration(synapse: SynapseServer) -> None:
    admin = synapse.client(await synapse.register_user("operator", PASSWORD, admin=True))
    whoami = await admin.request("GET", "/account/whoami")
    assert whoami["user_id"] == admin.user_id
    info = await admin.request("GET", f"/_synapse/admin/v2/users/{admin.user_id}")
    assert info["admin"] is True


async def test_server_keys_verify_with_our_core(synapse: SynapseServer) -> None:
    # A fresh session that trusts only the test CA: this is what our outbound client will see.
    ctx = ssl.create_default_context(cafile=str(synapse.ca_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        async with session.get(synapse.base_url + "/_matrix/key/v2/server") as resp:
            assert resp.status == 200
            keys = await resp.json()

    assert keys["server_name"] == synapse.server_name
    assert keys["valid_until_ts"] > time.time() * 1000
    verify_keys = {
        key_id: decode_verify_key_base64(key_id, body["key"])
        for key_id, body in keys["verify_keys"].items()
    }
    verify_signed_by(keys, synapse.server_name, verify_keys)
    assert list(verify_keys) == [synapse.signing_key_id]  # the key in its signing key file
    # And the check is real: any change to the signed body breaks it.
    with pytest.raises(SignatureError):
        verify_signed_by({**keys, "valid_until_ts": keys["valid_until_ts"] + 1},
                         synapse.server_name, verify_keys)


async def test_federation_version(synapse: SynapseServer) -> None:
    body = await synapse.request("GET", "/_matrix/federation/v1/version")
    assert body["server"]["name"] == "Synapse"
    assert body["server"]["version"].startswith("1.")


async def _notary_query(synapse: SynapseServer, server_name: str) -> Any:
    # Naming the key ID matters: for "all keys" Synapse answers from its cache and never fetches;
    # and Synapse 1.163 rejects the criteria without minimum_valid_until_ts (400 M_MISSING_PARAM).
    criteria = {"minimum_valid_until_ts": int(time.time() * 1000)}
    body = {"server_keys": {server_name: {PEER_KEY_ID: criteria}}}
    return await synapse.request("POST", "/_matrix/key/v2/query", body)


async def _key_server(host: str, port: int, cert: Any, hits: list[str]) -> web.AppRunner:
    """A minimal origin server publishing one self-signed key, as a peer would over TLS."""
    server_name = f"{host}:{port}"

    async def server_keys(request: web.Request) -> web.Response:
        hits.append(request.path)
        body = {
            "server_name": server_name,
            "valid_until_ts": int(time.time() * 1000) + 3_600_000,
            "verify_keys": {
                PEER_KEY_ID: {"key": encode_base64(get_verify_key(PEER_SIGNING_KEY).encode())}
            },
            "old_verify_keys": {},
        }
        return web.json_response(sign_json(body, server_name, PEER_SIGNING_KEY))

    app = web.Application()
    app.router.add_get("/_matrix/key/v2/server", server_keys)
    app.router.add_get("/_matrix/key/v2/server/{key_id}", server_keys)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert.cert_path, cert.key_path)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ctx).start()
    return runner


async def test_outbound_federation_trusts_the_test_ca_only(
    synapse: SynapseServer, ca: TestCA, tmp_path: Path
) -> None:
    """Synapse as notary fetches a peer's keys over federation: loopback must be allowed, the
    IP literal certificate from our CA accepted, and one from another CA refused."""
    host = "127.0.0.4"
    port = free_port(host)
    name = f"{host}:{port}"
    hits: list[str] = []
    runner = await _key_server(host, port, ca.issue(host, name=f"peer-{port}"), hits)
    try:
        answer = await _notary_query(synapse, name)
    finally:
        await runner.cleanup()
    assert hits, "Synapse never reached the peer: " + str(answer)
    [keys] = answer["server_keys"]
    assert keys["server_name"] == name
    verify_keys = {k: decode_verify_key_base64(k, v["key"]) for k, v in keys["verify_keys"].items()}
    verify_signed_by(keys, name, verify_keys)  # the peer's own signature survived
    notary = await synapse.request("GET", "/_matrix/key/v2/server")
    notary_keys = {k: decode_verify_key_base64(k, v["key"]) for k, v in notary["verify_keys"].items()}
    verify_signed_by(keys, synapse.server_name, notary_keys)  # and Synapse countersigned

    rogue_host = "127.0.0.5"
    rogue_port = free_port(rogue_host)
    rogue_cert = TestCA(tmp_path / "rogue-ca").issue(rogue_host)
    rogue_hits: list[str] = []
    runner = await _key_server(rogue_host, rogue_port, rogue_cert, rogue_hits)
    try:
        answer = await _notary_query(synapse, f"{rogue_host}:{rogue_port}")
    finally:
        await runner.cleanup()
    assert answer["server_keys"] == []
    assert rogue_hits == []  # the TLS handshake failed before any request was sent
