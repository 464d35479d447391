"""A room's lock is never held while another server is being waited for: a slow
peer (an invitee's server countersigning an invite, a server answering backfill's
/state_ids) must not stop everyone else's events in the room.

The slow peer is a real Accord behind a TLS proxy at its server name, which
forwards every request unchanged except that it holds those of chosen paths
until the test opens the gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from homeserver.config import parse_config
from homeserver.server import HomeServer
from tests.conftest import config_dict
from tests.homeserver.federation.servers import (
    Client,
    ServerSpec,
    free_port,
    running_server,
    start_tls_app,
)
from tests.tls_ca import TestCA

PROMPTLY_S = 5.0


class GatedProxy:
    """Listens at `spec`'s address and forwards to `spec`'s server on `upstream_port`;
    requests whose path starts with `held` wait for `gate`."""

    def __init__(self, ca: TestCA, spec: ServerSpec, upstream_port: int, held: str) -> None:
        self.ca, self.spec, self.upstream_port, self.held = ca, spec, upstream_port, held
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0
        self.held_one = asyncio.Event()  # a request is being held
        self._client_ctx = ssl.create_default_context(cafile=str(ca.ca_path))

    async def _forward(self, request: web.Request) -> web.Response:
        if request.path.startswith(self.held):
            self.waiting += 1
            self.held_one.set()
            await self.gate.wait()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        # Exactly the path that was signed: no re-encoding on the way.
        url = URL(f"https://{self.spec.ip}:{self.upstream_port}{request.raw_path}", encoded=True)
        async with self._session.request(request.method, url, data=body, headers=headers,
                                         ssl=self._client_ctx) as r:
            return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[GatedProxy]:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._session = aiohttp.ClientSession()
        runner = await start_tls_app(app, self.ca, self.spec.ip, self.spec.port,
                                     cert_name=f"{self.spec.ip}-{self.spec.port}-proxy")
        try:
            yield self
        finally:
            self.gate.set()
            await runner.cleanup()
            await self._session.close()


@contextlib.asynccontextmanager
async def slow_peer(ca: TestCA, spec: ServerSpec, held: str) -> AsyncIterator[tuple[HomeServer, GatedProxy]]:
    """`spec`'s server, reachable by its name only through a GatedProxy."""
    upstream = free_port(spec.ip)
    cert = ca.issue(spec.ip, name=f"{spec.ip}-{upstream}")
    listener: dict[str, Any] = {
        "port": upstream, "bind_addresses": [spec.ip], "resources": ["client", "federation", "keys"],
        "tls": True, "tls_certificate_path": str(cert.cert_path), "tls_private_key_path": str(cert.key_path),
    }
    config = parse_config(config_dict(
        spec.data_dir, server_name=spec.name, listeners=[listener],
        federation={"enabled": True, "ca_bundle_path": str(ca.ca_path)},
        outbound={"allowed_ranges": ["127.0.0.0/8"]},
    ))
    hs = HomeServer(config)
    await hs.start()
    try:
        await hs.start_listeners()
        async with GatedProxy(ca, spec, upstream, held).running() as proxy:
            yield hs, proxy
    finally:
        await hs.stop()


async def _until_waiting(proxy: GatedProxy) -> None:
    await asyncio.wait_for(proxy.held_one.wait(), 15)


async def test_room_is_not_held_while_an_invitee_server_countersigns(tmp_path: Path, ca: TestCA) -> None:
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with (
        running_server(a_spec, ca) as a,
        slow_peer(ca, b_spec, "/_matrix/federation/v2/invite/") as (b, proxy),
        aiohttp.ClientSession() as s,
    ):
        alice = Client(s, a_spec, ctx)
        await alice.register("alice")
        bob = f"@bob:{b_spec.name}"
        await b.registration.create_account(bob, "bob-password", login=False)
        room = (await alice.call("POST", "/createRoom", {"preset": "private_chat"}))["room_id"]

        proxy.gate.clear()
        invite = asyncio.ensure_future(alice.call("POST", f"/rooms/{room}/invite", {"user_id": bob}))
        await _until_waiting(proxy)
        # B has not answered yet: the room carries on meanwhile.
        async with asyncio.timeout(PROMPTLY_S):
            await alice.call("PUT", f"/rooms/{room}/send/m.room.message/during",
                             {"msgtype": "m.text", "body": "while B thinks"})
            await alice.call("PUT", f"/rooms/{room}/state/m.room.topic", {"topic": "changed meanwhile"})
        proxy.gate.set()
        assert await invite == {}

        # The countersigned invite joined the DAG beside the newer events: the room's
        # state has both, and it carries B's signature.
        record = await a.room_service.get_room(room)
        member = await a.room_service.current_state_event(record, ("m.room.member", bob))
        assert member is not None and member.event["content"]["membership"] == "invite"
        assert b_spec.name in member.event["signatures"]
        topic = await a.room_service.current_state_event(record, ("m.room.topic", ""))
        assert topic is not None and topic.event["content"]["topic"] == "changed meanwhile"
        # The room carries on from both ends: the next event cites everything.
        after = await alice.call("PUT", f"/rooms/{room}/send/m.room.message/after", {"msgtype": "m.text", "body": "x"})
        stored = await a.event_store.get_event(after["event_id"])
        assert stored is not None and member.event_id in stored.event["prev_events"]


async def test_room_is_not_held_while_backfill_asks_for_state(tmp_path: Path, ca: TestCA) -> None:
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with (
        slow_peer(ca, a_spec, "/_matrix/federation/v1/state_ids/") as (a, proxy),
        running_server(b_spec, ca) as b,
        aiohttp.ClientSession() as s,
    ):
        alice, bob = Client(s, a_spec, ctx), Client(s, b_spec, ctx)
        await alice.register("alice")
        await bob.register("bob")
        room = (await alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        for i in range(80):  # more than one batch: the first one's oldest events need their state
            await alice.call("PUT", f"/rooms/{room}/send/m.room.message/m{i}", {"msgtype": "m.text", "body": f"m{i}"})
        proxy.gate.clear()
        await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
        # B backfills the history before its join straight away (and a client's
        # page waits for that): it waits for A's /state_ids.
        page = asyncio.ensure_future(bob.call("GET", f"/rooms/{room}/messages?dir=b&limit=30"))
        await _until_waiting(proxy)
        async with asyncio.timeout(PROMPTLY_S):
            await bob.call("PUT", f"/rooms/{room}/send/m.room.message/during",
                           {"msgtype": "m.text", "body": "while A thinks"})
        proxy.gate.set()
        bodies = [e["content"].get("body") for e in (await page)["chunk"] if e["type"] == "m.room.message"]
        assert "m79" in bodies
        assert b is not None and a is not None
