"""After a peer's downtime, delivery resumes as soon as the peer shows any sign of
life, not at the end of a backoff that grew while it was down.

Two real servers over TLS. B goes down while A's user keeps talking: A's
transactions fail and its backoff for B grows. When B comes back and sends A
any authenticated request, A forgets that backoff and delivers what it queued
at once, in order (Synapse does the same on an inbound request).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from homeserver.server import HomeServer
from tests.homeserver.federation.servers import ServerSpec, running_server
from tests.tls_ca import TestCA

# A backoff far longer than the test: after the first failure the next try is at least
# 450 s away, so a delivery within the test's waits can only come from the reset.
RETRY = {"retry_base_s": 600.0, "retry_cap_s": 3600.0}
MESSAGES = 20


async def _call(s: aiohttp.ClientSession, ctx: ssl.SSLContext, method: str, url: str, token: str = "",
                body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with s.request(method, url, json=body, headers=headers, ssl=ctx) as r:
        data = await r.json()
        assert r.status == 200, (method, url, r.status, data)
        return data


async def _register(s: aiohttp.ClientSession, ctx: ssl.SSLContext, spec: ServerSpec, name: str) -> str:
    body = {"username": name, "password": "a-long-password", "auth": {"type": "m.login.dummy"}}
    data = await _call(s, ctx, "POST", f"https://{spec.name}/_matrix/client/v3/register", body=body)
    return str(data["access_token"])


async def _messages_on(hs: HomeServer, room_id: str) -> list[str]:
    rec = await hs.room_service.get_room(room_id)
    events = await hs.event_store.room_stream(rec.room_nid, from_pos=0, to_pos=None, backwards=False, limit=1000)
    return [e.event["content"]["body"] for e in events if e.type == "m.room.message"]


async def _true(value: bool) -> bool:
    return value


async def _equal(got: Awaitable[list[str]], wanted: list[str]) -> bool:
    return await got == wanted


async def _until(check: Callable[[], Awaitable[bool]], within: float = 30) -> None:
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def test_inbound_request_from_peer_resets_backoff_and_flushes_queue(tmp_path: Path, ca: TestCA) -> None:
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    async with running_server(a_spec, ca, **RETRY) as a, aiohttp.ClientSession() as s:
        alice = await _register(s, ctx, a_spec, "alice")
        a_client = f"https://{a_spec.name}/_matrix/client/v3"
        room = (await _call(s, ctx, "POST", f"{a_client}/createRoom", alice, {"preset": "public_chat"}))["room_id"]
        async with running_server(b_spec, ca) as b:
            bob = await _register(s, ctx, b_spec, "bob")
            b_client = f"https://{b_spec.name}/_matrix/client/v3"
            await _call(s, ctx, "POST", f"{b_client}/join/{room}?server_name={a_spec.name}", bob, {})
        # B is down: A queues everything and backs off further after each failure.
        sender = a.federation_sender
        for i in range(MESSAGES):
            await _call(s, ctx, "PUT", f"{a_client}/rooms/{room}/send/m.room.message/m{i}", alice,
                        {"msgtype": "m.text", "body": f"while down {i}"})
        await _until(lambda: _true(sender.destination_state(b_spec.name)[0] >= 1))
        assert await sender.store.count(b_spec.name) == MESSAGES

        async with running_server(b_spec, ca) as b:
            # Any authenticated request from B is a sign that it is back.
            assert b.federation_client is not None
            await b.federation_client.get_json(
                a_spec.name, "/_matrix/federation/v1/query/profile", query={"user_id": f"@alice:{a_spec.name}"}
            )
            wanted = [f"while down {i}" for i in range(MESSAGES)]
            # Everything arrives, in order, long before the backoff could have run out.
            await _until(lambda: _equal(_messages_on(b, room), wanted), within=120)
            assert sender.destination_state(b_spec.name)[0] == 0
