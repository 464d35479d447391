"""A keep-alive connection does not hold its last response's body while it waits for
the next request (aiohttp keeps the last response object until then)."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from homeserver.api.protocol import MatrixAppRunner


async def test_sent_body_released_while_the_connection_waits() -> None:
    sent: list[web.Response] = []
    body = b'{"x":"' + b"y" * 300_000 + b'"}'

    async def handler(request: web.Request) -> web.Response:
        resp = web.Response(body=body, content_type="application/json")
        sent.append(resp)
        return resp

    app = web.Application()
    app.router.add_get("/big", handler)
    runner = MatrixAppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as s:
            for _ in range(2):  # the same connection, kept alive between the two
                async with s.get(f"http://127.0.0.1:{port}/big") as r:
                    assert r.status == 200 and await r.read() == body
                for _ in range(200):  # the server finishes its side after the client has read
                    if sent[-1].body is None:
                        break
                    await asyncio.sleep(0.01)
                assert sent[-1].body is None
    finally:
        await runner.cleanup()
