"""SIGKILL during concurrent sends into rooms shared with a second server: after a
restart, every event acknowledged to a client reaches the peer, exactly once.

The killed server is the real `accord` command in its own process; the peer is an
in-process Accord. Both listen for federation on loopback addresses with
certificates from a test CA, so the events travel through real transactions.
An event is acknowledged (200) only once it is committed; if its place in the
outbound queue were written after that, a kill in between would lose it for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.server_process import ServerProcess
from tests.homeserver.federation.servers import ServerSpec, free_port, running_server
from tests.tls_ca import TestCA

ROOMS = 3
SENDERS = 4  # users of the killed server, each sending into every room concurrently
ENOUGH = 60  # acknowledged sends before the kill


async def _call(
    s: aiohttp.ClientSession, method: str, url: str, token: str = "", body: Any = None,
    ctx: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with s.request(method, url, json=body, headers=headers, ssl=ctx) as r:
        return r.status, await r.json(content_type=None)


async def _register(s: aiohttp.ClientSession, base: str, name: str, ctx: ssl.SSLContext | None = None) -> str:
    body = {"username": name, "password": "a-long-password", "auth": {"type": "m.login.dummy"}}
    status, data = await _call(s, "POST", f"{base}/_matrix/client/v3/register", body=body, ctx=ctx)
    assert status == 200, data
    return str(data["access_token"])


async def test_sigkill_during_federated_sends_delivers_every_acknowledged_event(tmp_path: Path, ca: TestCA) -> None:
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    peer_spec = ServerSpec(tmp_path, "127.0.0.2")
    ip = "127.0.0.3"
    port = free_port(ip)
    cert = ca.issue(ip, name=f"{ip}-{port}")
    killed = ServerProcess(
        tmp_path / "killed",
        server_name=f"{ip}:{port}",
        listeners=[
            {"port": 0, "bind_addresses": ["127.0.0.1"], "tls": False, "resources": ["client"]},
            {"port": port, "bind_addresses": [ip], "tls": True, "tls_certificate_path": str(cert.cert_path),
             "tls_private_key_path": str(cert.key_path), "resources": ["federation", "keys"]},
        ],
        federation={"ca_bundle_path": str(ca.ca_path), "retry_base_s": 0.2, "retry_cap_s": 1.0},
        presence={"enabled": False},
        outbound={"allowed_ranges": ["127.0.0.0/8"]},  # the peer is on loopback
    )
    async with running_server(peer_spec, ca) as peer, aiohttp.ClientSession() as s:
        await killed.start()
        try:
            peer_base = f"https://{peer_spec.name}"
            paula = await _register(s, peer_base, "paula", ctx)
            rooms = []
            for i in range(ROOMS):
                status, data = await _call(s, "POST", f"{peer_base}/_matrix/client/v3/createRoom", paula,
                                           {"preset": "public_chat", "name": f"shared {i}"}, ctx)
                assert status == 200, data
                rooms.append(data["room_id"])
            base = killed.client_url
            tokens = [await _register(s, base, f"sender{i}") for i in range(SENDERS)]
            for token in tokens:
                for room in rooms:
                    status, data = await _call(
                        s, "POST", f"{base}/_matrix/client/v3/join/{room}?server_name={peer_spec.name}", token, {}
                    )
                    assert status == 200, data

            acknowledged: list[str] = []
            enough = asyncio.Event()

            async def send_loop(token: str, room: str, tag: str) -> None:
                for n in range(10_000):
                    url = f"{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/{tag}-{n}"
                    try:
                        status, data = await _call(s, "PUT", url, token, {"msgtype": "m.text", "body": f"{tag} {n}"})
                    except (aiohttp.ClientError, TimeoutError):
                        return  # the server is gone
                    if status != 200:
                        return
                    acknowledged.append(data["event_id"])
                    if len(acknowledged) >= ENOUGH:
                        enough.set()

            tasks = [
                asyncio.ensure_future(send_loop(token, room, f"u{u}r{r}"))
                for u, token in enumerate(tokens) for r, room in enumerate(rooms)
            ]
            await asyncio.wait_for(enough.wait(), 120)
            killed.kill()
            await asyncio.gather(*tasks)
            await killed.stop()
            assert len(set(acknowledged)) == len(acknowledged) >= ENOUGH

            await killed.start()
            # Every acknowledged event ends up in the peer's timeline of its room, once.
            records = [await peer.room_service.get_room(room) for room in rooms]

            async def timeline_ids() -> list[str]:
                ids: list[str] = []
                for rec in records:
                    events = await peer.event_store.room_stream(
                        rec.room_nid, from_pos=2**62, to_pos=None, backwards=True, limit=100_000
                    )
                    ids += [e.event_id for e in events]
                return ids

            deadline = time.monotonic() + 60
            while True:
                ids = await timeline_ids()
                missing = set(acknowledged) - set(ids)
                if not missing or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged events never reached the peer"
            assert all(ids.count(e) == 1 for e in acknowledged)
        finally:
            with contextlib.suppress(Exception):
                killed.kill()
            await killed.stop()
