"""A push gateway written to the Push Gateway API (POST /_matrix/push/v1/notify),
serving HTTPS on loopback with a certificate from the test CA.

It checks each request against the spec (a `notification` object whose
`devices` each have `app_id` and `pushkey`), keeps what it received, and can be
told to be down, to fail, to hang, or to reject pushkeys.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from aiohttp import web

from tests.tls_ca import TestCA

NOTIFY = "/_matrix/push/v1/notify"


class PushGateway:
    def __init__(self, ca: TestCA, host: str = "127.0.0.1") -> None:
        self.host = host
        self.ssl = ca.server_context(host, name=f"gateway-{id(self)}")
        self.port = _free_port(host)
        self.received: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.perf_counter() of each received notification
        self.requests = 0
        self.rejected: set[str] = set()
        self.fail_next = 0  # answer this many requests 500 first
        self.hang: asyncio.Event | None = None  # while set and not fired, requests wait on it
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{NOTIFY}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path != NOTIFY:
            return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, status=404)
        if request.method != "POST":
            return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized method"}, status=405)
        self.requests += 1
        if self.hang is not None:
            await self.hang.wait()
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"errcode": "M_UNKNOWN", "error": "try again"}, status=500)
        body = await request.json()
        notification = body.get("notification") if isinstance(body, dict) else None
        devices = notification.get("devices") if isinstance(notification, dict) else None
        if not isinstance(devices, list) or not devices or not all(
            isinstance(d, dict) and isinstance(d.get("app_id"), str) and isinstance(d.get("pushkey"), str)
            for d in devices
        ):
            return web.json_response({"errcode": "M_BAD_JSON", "error": "not a notification"}, status=400)
        assert isinstance(notification, dict)
        async with self._changed:
            self.received.append(notification)
            self.arrived.append(time.perf_counter())
            self._changed.notify_all()
        rejected = [d["pushkey"] for d in devices if d["pushkey"] in self.rejected]
        return web.json_response({"rejected": rejected})

    async def wait_for(self, count: int, within: float = 60) -> list[dict[str, Any]]:
        """Once at least `count` notifications arrived (`within` seconds at most): all of them."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.received) >= count)
        return list(self.received)

    def events(self) -> list[str]:
        return [n["event_id"] for n in self.received if "event_id" in n]

    def badges(self) -> list[dict[str, Any]]:
        return [n for n in self.received if "event_id" not in n]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
