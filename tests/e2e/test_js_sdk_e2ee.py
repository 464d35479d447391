"""End-to-end encryption with a real client: matrix-js-sdk with its Rust crypto
(@matrix-org/matrix-sdk-crypto-wasm) on Node, against an Accord started by the test.

Each device is one `e2ee_client.mjs` process with its own in-memory crypto store; the server
is only ever asked through the client API, and what it stored is read back raw."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.js_crypto import JsCryptoClient
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


class _Clients:
    """The js clients a test started, all closed at its end."""

    def __init__(self) -> None:
        self.running: list[JsCryptoClient] = []

    async def start(self, base_url: str, account: RawClient, **kw: Any) -> JsCryptoClient:
        client = await JsCryptoClient.start(base_url, account, **kw)
        self.running.append(client)
        return client

    async def close(self) -> None:
        for client in self.running:
            await client.close()


@asynccontextmanager
async def _clients() -> AsyncIterator[_Clients]:
    clients = _Clients()
    try:
        yield clients
    finally:
        await clients.close()


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


async def test_two_users_exchange_encrypted_messages(tmp_path: Path) -> None:
    async with _accord(tmp_path) as (server, s), _clients() as clients:
        alice = await RawClient(s, server.client_url).register("alice")
        bob = await RawClient(s, server.client_url).register("bob")
        room = await _encrypted_room(alice, bob)
        a = await clients.start(server.client_url, alice)
        b = await clients.start(server.client_url, bob)
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
