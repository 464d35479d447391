"""End-to-end encryption with a real client: matrix-js-sdk with its Rust crypto
(@matrix-org/matrix-sdk-crypto-wasm) on Node, against an Accord started by the test.

Each device is one `e2ee_client.mjs` process with its own in-memory crypto store; the server
is only ever asked through the client API, and what it stored is read back raw."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.js_crypto import JsAccount, JsClients, JsCryptoClient, js_clients
from tests.e2e.matrix_http import RawClient
from tests.e2e.server_process import ServerProcess
from tests.e2e.test_js_sdk import _need_js_sdk

ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


@asynccontextmanager
async def _accord(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, aiohttp.ClientSession]]:
    _need_js_sdk()
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    try:
        async with aiohttp.ClientSession() as s:
            yield server, s
    finally:
        code = await server.stop()
        assert code == 0, "".join(server.output[-60:])


async def _raw_messages(reader: RawClient, room: str) -> list[dict[str, Any]]:
    page = await reader.call("GET", f"/rooms/{room}/messages?dir=b&limit=100")
    return [e for e in page["chunk"] if "state_key" not in e]


def _stored_timeline(server: ServerProcess, room: str) -> list[tuple[str, str]]:
    """(type, JSON) of the room's timeline events as the server's own database holds them."""
    with sqlite3.connect(server.data_dir / "homeserver.db") as conn:
        return conn.execute(
            "SELECT e.event_type, e.json FROM events e JOIN rooms r ON r.room_nid = e.room_nid"
            " WHERE r.room_id = ? AND e.state_key_nid IS NULL", (room,),
        ).fetchall()


async def _encrypted_room(alice: RawClient, bob: RawClient) -> str:
    room = (await alice.call("POST", "/createRoom", {
        "preset": "private_chat", "invite": [bob.user_id], "initial_state": [ENCRYPTION],
    }))["room_id"]
    await bob.call("POST", f"/rooms/{room}/join", {})
    return room


async def _pair(
    server: ServerProcess, s: aiohttp.ClientSession, clients: JsClients,
) -> tuple[RawClient, RawClient, str, JsCryptoClient, JsCryptoClient]:
    """alice and bob, joined to an encrypted room, each with one js client running."""
    alice = await RawClient(s, server.client_url).register("alice")
    bob = await RawClient(s, server.client_url).register("bob")
    room = await _encrypted_room(alice, bob)
    a = await clients.start(JsAccount.of(server.client_url, alice))
    return alice, bob, room, a, await clients.start(JsAccount.of(server.client_url, bob))


async def test_two_users_exchange_encrypted_messages(tmp_path: Path) -> None:
    async with _accord(tmp_path) as (server, s), js_clients() as clients:
        alice, bob, room, a, b = await _pair(server, s, clients)
        assert (await a.call("encryptionEnabled", room=room))["enabled"]

        await a.call("send", room=room, body="hello bob, secretly")
        got = await b.message("hello bob, secretly")
        assert got["wireType"] == "m.room.encrypted" and got["sender"] == alice.user_id
        await b.call("send", room=room, body="hello alice, secretly")
        got = await a.message("hello alice, secretly")
        assert got["wireType"] == "m.room.encrypted" and got["sender"] == bob.user_id

        # The server saw only ciphertext: in /messages and in its own database.
        raw = await _raw_messages(alice, room)
        assert raw and {e["type"] for e in raw} == {"m.room.encrypted"}
        assert all(e["content"]["algorithm"] == "m.megolm.v1.aes-sha2" for e in raw)
        assert not any("secretly" in str(e) for e in raw)
        stored = _stored_timeline(server, room)
        assert {t for t, _ in stored} == {"m.room.encrypted"}
        assert not any("secretly" in j for _, j in stored)


async def test_cross_signing_seen_by_the_other_user(tmp_path: Path) -> None:
    async with _accord(tmp_path) as (server, s), js_clients() as clients:
        alice, bob, _, a, b = await _pair(server, s, clients)
        before = await b.call("deviceStatus", user=alice.user_id, device=alice.device_id, download=True)
        assert before["known"] and not before["signedByOwner"] and not before["hasCrossSigningKeys"]

        boot = await a.call("bootstrapCrossSigning")
        assert boot["ready"] and boot["status"]["publicKeysOnDevice"]
        # The upload needed the account's password (user-interactive auth) and the server
        # now serves alice's master and self-signing keys and her device signed by the latter.
        keys = await bob.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
        assert alice.user_id in keys["master_keys"] and alice.user_id in keys["self_signing_keys"]
        assert alice.user_id not in keys.get("user_signing_keys", {})  # only for alice herself
        ssk = next(iter(keys["self_signing_keys"][alice.user_id]["keys"]))
        assert ssk in keys["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]

        # Bob's client learns of the change through device_lists and sees the device as
        # signed by its owner (bob has not verified alice herself).
        await b.expect(lambda e: e["kind"] == "device_lists" and alice.user_id in e["changed"])
        after = await b.device_status(alice.user_id, alice.device_id, lambda st: st["signedByOwner"])
        assert after["hasCrossSigningKeys"]
        assert not after["crossSigningVerified"] and not after["userCrossSigningVerified"]
        # Alice's own client trusts her device through her own cross-signing.
        own = await a.call("deviceStatus", user=alice.user_id, device=alice.device_id)
        assert own["signedByOwner"] and own["crossSigningVerified"]


async def test_key_backup_restored_by_a_fresh_login(tmp_path: Path) -> None:
    async with _accord(tmp_path) as (server, s), js_clients() as clients:
        alice, bob, room, a, b = await _pair(server, s, clients)
        await a.call("bootstrapCrossSigning")
        backup = await a.call("bootstrapBackup")
        assert backup["recoveryKey"] and backup["backupVersion"] and backup["secretStorageReady"], str(backup)

        await a.call("send", room=room, body="from alice, before")
        await b.message("from alice, before")
        await b.call("send", room=room, body="from bob, before")
        await a.message("from bob, before")
        # The client uploads both room keys to the backup on its own, in the background.
        for _ in range(600):
            current = await alice.call("GET", "/room_keys/version")
            if current["count"] == 2:
                break
            await asyncio.sleep(0.1)
        assert current["version"] == backup["backupVersion"] and current["count"] == 2
        assert current["algorithm"] == "m.megolm_backup.v1.curve25519-aes-sha2"
        stored = await alice.call("GET", f"/room_keys/keys?version={current['version']}")
        assert len(stored["rooms"][room]["sessions"]) == 2
        await a.close()

        # A new device of alice's, with nothing but the recovery key: it restores the backup
        # from the server and reads the history it was never sent keys for.
        fresh = await clients.start(
            JsAccount.of(server.client_url, await RawClient(s, server.client_url).login(alice.user_id)),
            recovery_key=backup["recoveryKey"],
        )
        before = await fresh.call("history", room=room)
        assert {m["body"] for m in before["messages"]} <= {None}  # not readable yet
        restored = await fresh.call("restoreBackup")
        assert restored["imported"] == 2 and restored["total"] == 2
        history = await fresh.call("history", room=room)
        assert [(m["sender"], m["body"], m["wireType"]) for m in history["messages"]] == [
            (alice.user_id, "from alice, before", "m.room.encrypted"),
            (bob.user_id, "from bob, before", "m.room.encrypted"),
        ]


async def test_new_device_is_announced_and_receives_the_next_message(tmp_path: Path) -> None:
    async with _accord(tmp_path) as (server, s), js_clients() as clients:
        alice, bob, room, a, b = await _pair(server, s, clients)
        await a.call("send", room=room, body="one device")
        await b.message("one device")

        bob2 = await RawClient(s, server.client_url).login(bob.user_id)
        b2 = await clients.start(JsAccount.of(server.client_url, bob2))
        # Alice's sync names bob as changed, and her client then knows the new device.
        await a.expect(lambda e: e["kind"] == "device_lists" and bob.user_id in e["changed"])
        status = await a.device_status(bob.user_id, bob2.device_id, lambda st: st["known"])
        assert set(status["devices"]) == {bob.device_id, bob2.device_id}

        await a.call("send", room=room, body="two devices")
        got = await b2.message("two devices")
        assert got["wireType"] == "m.room.encrypted" and got["sender"] == alice.user_id
        await b.message("two devices")
        # The new device never had the key of the message sent before it existed.
        history = await b2.call("history", room=room)
        assert [m["body"] for m in history["messages"]] == [None, "two devices"]


async def test_interactive_verification_over_to_device(tmp_path: Path) -> None:
    """Emoji (SAS) verification runs on to-device messages both ways; afterwards alice's
    user-signing key has signed bob's master key, which only alice is shown."""
    async with _accord(tmp_path) as (server, s), js_clients() as clients:
        alice, bob, _, a, b = await _pair(server, s, clients)
        await a.call("bootstrapCrossSigning")
        await b.call("bootstrapCrossSigning")
        await a.device_status(bob.user_id, bob.device_id, lambda st: st["signedByOwner"])
        await b.device_status(alice.user_id, alice.device_id, lambda st: st["signedByOwner"])

        done = await a.call("verifyDevice", user=bob.user_id, device=bob.device_id)
        assert done["phase"] == "Done", done
        await b.expect(lambda e: e["kind"] == "verification_request" and e["from"] == alice.user_id)
        shown_a = await a.expect(lambda e: e["kind"] == "sas")
        shown_b = await b.expect(lambda e: e["kind"] == "sas")
        assert shown_a["emoji"] == shown_b["emoji"] and len(shown_a["emoji"]) == 7
        assert (await b.expect(lambda e: e["kind"] == "verification_done"))["phase"] == "Done"

        signed = await a.expect(lambda e: e["kind"] == "signatures_uploaded" and bob.user_id in e["body"], 60)
        assert signed["status"] == 200 and signed["failures"] == {}, str(signed)
        # The signature alice uploaded on bob's master key: shown to her, not to bob.
        usk = next(iter((await alice.call("POST", "/keys/query", {"device_keys": {alice.user_id: []}}))
                        ["user_signing_keys"][alice.user_id]["keys"]))
        for reader, visible in ((alice, True), (bob, False)):
            master = (await reader.call("POST", "/keys/query", {"device_keys": {bob.user_id: []}}))["master_keys"][bob.user_id]
            assert (usk in master["signatures"].get(alice.user_id, {})) is visible
        # Bob's device list changed for alice (the new signature); her client fetches his keys
        # again and trusts his device through cross-signing: her user-signing key signed his
        # master key, his self-signing key his device.
        trusted = await a.device_status(bob.user_id, bob.device_id, lambda st: st["crossSigningVerified"])
        assert trusted["userCrossSigningVerified"]
