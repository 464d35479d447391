"""matrix-js-sdk's SlidingSync (simplified sliding sync, MSC4186) against the `accord`
command: lists fill in recency order, a new message moves its room to the top, a room
subscription gets its timeline, to-device messages and device-list changes arrive
through the extensions, and a client cut off mid-poll that reconnects with its last
`pos` misses nothing and gets nothing twice.

The client reaches the server through a small reverse proxy in this test, which can
go down (answering 502 and cutting the poll in flight) and come back, as a real
network path does; the SDK then retries with the position it holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.e2e.matrix_http import RawClient
from tests.e2e.server_process import ServerProcess
from tests.e2e.test_js_sdk import JS_DIR, JsClient, _need_js_sdk


class Proxy:
    """Forwards every request to the server, until `down()`: then in-flight requests
    are cut and new ones answered 502, until `up()`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.is_down = False
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.session: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        app = web.Application(client_max_size=1 << 24)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.session is not None:
            await self.session.close()

    def down(self) -> None:
        self.is_down = True
        for task in list(self.in_flight):
            task.cancel()

    def up(self) -> None:
        self.is_down = False

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self.is_down:
            return web.json_response({"errcode": "M_UNKNOWN", "error": "upstream down"}, status=502)
        assert self.session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}

        async def call() -> tuple[int, bytes, str]:
            assert self.session is not None
            async with self.session.request(
                request.method, self.upstream + request.path_qs, data=body or None, headers=headers
            ) as r:
                return r.status, await r.read(), r.headers.get("Content-Type", "application/json")

        task = asyncio.ensure_future(call())
        self.in_flight.add(task)
        try:
            status, data, ctype = await task
        except asyncio.CancelledError:
            if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            return web.json_response({"errcode": "M_UNKNOWN", "error": "upstream cut"}, status=502)
        finally:
            self.in_flight.discard(task)
        return web.Response(status=status, body=data, headers={"Content-Type": ctype})


async def _send(client: RawClient, room: str, body: str, n: list[int] = [0]) -> str:  # noqa: B006 - a counter
    n[0] += 1
    path = f"/rooms/{room}/send/m.room.message/sliding{n[0]}"
    return str((await client.call("PUT", path, {"msgtype": "m.text", "body": body}))["event_id"])


async def test_js_sdk_sliding_sync(tmp_path: Path) -> None:
    _need_js_sdk()
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    proxy = Proxy("")
    proc = None
    try:
        async with aiohttp.ClientSession() as s:
            alice = await RawClient(s, server.client_url).register("alice")
            bob = await RawClient(s, server.client_url).register("bob")
            rooms = []
            for i in range(5):
                room = (await bob.call("POST", "/createRoom", {"name": f"room {i}", "invite": [alice.user_id]}))["room_id"]
                await alice.call("POST", f"/rooms/{room}/join", {})
                rooms.append(room)
            # Activity in this order makes the recency order r3, r1, r4, r0, r2.
            for i in (2, 0, 4, 1, 3):
                await _send(bob, rooms[i], f"latest in room {i}")
            expected = [rooms[3], rooms[1], rooms[4]]

            proxy.upstream = server.client_url
            await proxy.start()
            proc = await asyncio.create_subprocess_exec(
                "node", str(JS_DIR / "sliding_client.mjs"), proxy.url, alice.user_id, alice.token,
                alice.device_id, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                cwd=str(JS_DIR),
            )
            js = JsClient(proc)
            # The list fills in recency order; the SDK's rooms carry the bump stamps to sort by.
            first = await js.expect(lambda e: e["kind"] == "response" and e["lists"].get("recent"), 60)
            assert first["lists"]["recent"] == {"count": 5, "room_ids": expected}
            await js.expect(lambda e: e["kind"] == "sync" and e["state"] == "PREPARED", 30)
            await js.send("order")
            order = await js.expect(lambda e: e["kind"] == "order")
            assert [r["id"] for r in order["rooms"]] == expected
            assert [r["name"] for r in order["rooms"]] == ["room 3", "room 1", "room 4"]

            # A new message moves its room to the top.
            await _send(bob, rooms[2], "bump room 2")
            await js.expect(lambda e: e["kind"] == "timeline" and e["body"] == "bump room 2" and e["room"] == rooms[2])
            moved = await js.expect(lambda e: e["kind"] == "response" and rooms[2] in e["rooms"])
            assert moved["lists"]["recent"]["room_ids"] == [rooms[2], rooms[3], rooms[1]]

            # A subscription to a room outside the window gets its timeline.
            await js.send(f"subscribe {rooms[0]}")
            await js.expect(lambda e: e["kind"] == "timeline" and e["room"] == rooms[0] and e["body"] == "latest in room 0")

            # To-device messages and device-list changes through the extensions.
            await bob.call("PUT", "/sendToDevice/m.test.ping/td1", {"messages": {alice.user_id: {alice.device_id: {"n": 1}}}})
            td = await js.expect(lambda e: e["kind"] == "to_device" and e["type"] == "m.test.ping")
            assert td["sender"] == bob.user_id and td["content"] == {"n": 1}
            async with s.post(server.client_url + "/_matrix/client/v3/login", json={
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
                "password": "e2e-password-1",
            }) as r:
                assert r.status == 200
            dl = await js.expect(lambda e: e["kind"] == "device_lists" and bob.user_id in e["changed"])
            assert dl["left"] == []

            # Cut off mid-poll; what happens meanwhile arrives on reconnecting with the last pos.
            proxy.down()
            await js.expect(lambda e: e["kind"] == "error" and e["status"] == 502)
            away = [await _send(bob, rooms[i], f"while away {i}") for i in (1, 4, 1)]
            await bob.call("PUT", "/sendToDevice/m.test.ping/td2", {"messages": {alice.user_id: {alice.device_id: {"n": 2}}}})
            proxy.up()
            seen = []
            for _ in away:
                seen.append(await js.expect(lambda e: e["kind"] == "timeline" and str(e["body"]).startswith("while away"), 30))
            assert sorted(e["id"] for e in seen) == sorted(away)  # room by room, each once
            td2 = await js.expect(lambda e: e["kind"] == "to_device" and e["type"] == "m.test.ping", 30)
            assert td2["content"] == {"n": 2}
            # The reconnect was with the old position, not a fresh start: no 400 on the way.
            assert not [e for e in js.seen if e["kind"] == "error" and e["status"] == 400]
            # Nothing twice: up to a later message, none of the above is seen again.
            await _send(bob, rooms[4], "after")
            await js.expect(lambda e: e["kind"] == "timeline" and e["body"] == "after")
            repeats = [e for e in js.seen if e["kind"] == "timeline" and e.get("id") in away]
            repeats += [e for e in js.seen if e["kind"] == "to_device"]
            assert repeats == []
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proxy.stop()
        await server.stop()
