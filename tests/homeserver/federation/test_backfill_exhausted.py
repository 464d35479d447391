"""When the other servers of a room answer that they have nothing older than what
this server holds (say they purged their history), the answer is remembered
across a restart: clients paging to the top of the room do not make the server
ask them all again every time it starts."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.homeserver.federation.servers import Client, ServerSpec, running_server, start_tls_app
from tests.tls_ca import TestCA


@contextlib.asynccontextmanager
async def purged_peer(ca: TestCA, spec: ServerSpec) -> AsyncIterator[list[str]]:
    """`spec`'s server after purging the room's history: at its address, with its
    certificate, every /backfill is answered with no events. Yields the rooms asked about."""
    asked: list[str] = []

    async def backfill(request: web.Request) -> web.Response:
        asked.append(request.match_info["room_id"])
        return web.json_response({"origin": spec.name, "origin_server_ts": 0, "pdus": []})

    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/backfill/{room_id}", backfill)
    runner = await start_tls_app(app, ca, spec.ip, spec.port, cert_name=f"{spec.ip}-{spec.port}-purged",
                                 reuse_address=True)
    try:
        yield asked
    finally:
        await runner.cleanup()


async def test_no_older_history_is_remembered_across_a_restart(tmp_path: Path, ca: TestCA) -> None:
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with aiohttp.ClientSession() as s:
        alice, bob = Client(s, a_spec, ctx), Client(s, b_spec, ctx)
        async with running_server(a_spec, ca), running_server(b_spec, ca):
            await alice.register("alice")
            await bob.register("bob")
            room = (await alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
            for i in range(5):
                await alice.call("PUT", f"/rooms/{room}/send/m.room.message/m{i}", {"msgtype": "m.text", "body": f"{i}"})
            await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})

        async with purged_peer(ca, a_spec) as asked:
            async with running_server(b_spec, ca):
                await bob.call("GET", f"/rooms/{room}/messages?dir=b&limit=50")
                assert asked == [room]  # B reached the top of what it holds and asked A
                await bob.call("GET", f"/rooms/{room}/messages?dir=b&limit=50")
                assert asked == [room]
            async with running_server(b_spec, ca):
                page = await bob.call("GET", f"/rooms/{room}/messages?dir=b&limit=50")
                assert asked == [room], "asked again after a restart"
                assert page["chunk"][0]["type"] == "m.room.member"  # bob's join, the oldest B holds
