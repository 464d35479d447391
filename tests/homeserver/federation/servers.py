"""Real Accord servers on loopback addresses with TLS certificates from a test CA,
named by IP literal and port ("127.0.0.2:PORT") so no DNS is involved."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from federation.events.canonical import encode_base64
from federation.events.signing import key_id_of
from federation.outbound_guard import AddressPolicy, OutboundGuard
from homeserver.clock import Clock
from homeserver.config import parse_config
from homeserver.server import HomeServer
from homeserver.signing_key import load_signing_key, write_new_signing_key
from tests.conftest import LOOPBACK_OUTBOUND, config_dict
from tests.tls_ca import TestCA


def free_port(host: str) -> int:
    """A port free on ``host`` now; the server name must contain it before the
    server starts, so port 0 cannot be used."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def loopback_guard() -> OutboundGuard:
    """An outbound guard for clients a test builds itself: the test servers are
    on loopback, which the default guard refuses."""
    return OutboundGuard(AddressPolicy.parse(LOOPBACK_OUTBOUND["allowed_ranges"]))


class ServerSpec:
    """Name, address, data dir and signing key of a server, known before it starts."""

    def __init__(self, root: Path, ip: str) -> None:
        self.ip = ip
        self.port = free_port(ip)
        self.name = f"{ip}:{self.port}"
        self.data_dir = root / ip
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key_path = self.data_dir / "signing.key"
        if not key_path.exists():
            write_new_signing_key(str(key_path))
        self.signing_key = load_signing_key(str(key_path))
        self.key_id = key_id_of(self.signing_key)
        self.verify_key_b64 = encode_base64(self.signing_key.verify_key.encode())

    def as_notary(self) -> dict[str, Any]:
        return {"server_name": self.name, "verify_keys": {self.key_id: self.verify_key_b64}}


async def start_tls_app(
    app: web.Application, ca: TestCA, ip: str, port: int, *, cert_name: str | None = None, **site: Any
) -> web.AppRunner:
    """``app`` (a stand-in for a peer) served over TLS on ``ip:port`` with a
    certificate from ``ca``; the caller cleans up the runner returned."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ctx = ca.server_context(ip, cert_name or f"{ip}-{port}")
    await web.TCPSite(runner, ip, port, ssl_context=ctx, **site).start()
    return runner


SERVED = ("client", "federation", "keys")
SERVED_WITH_ADMIN = ("client", "admin", "federation", "keys")


@contextlib.asynccontextmanager
async def serve(
    spec: ServerSpec, ca: TestCA | None, *, resources: tuple[str, ...] = SERVED, trust_ca: bool = True,
    clock: Clock | None = None, middlewares: Sequence[Middleware] = (), **sections: Any
) -> AsyncIterator[HomeServer]:
    """Start ``spec`` as a real server with one listener serving ``resources``,
    over TLS with a certificate from ``ca`` (plain HTTP without one).
    ``sections`` are config sections: ``federation`` is merged into the test's
    (enabled, trusting the test CA unless ``trust_ca`` is false), ``outbound``
    defaults to loopback allowed, as the test servers are all on loopback.
    ``middlewares`` go in front of the server's own on every listener: how a test
    makes a real server behave like a peer that lacks or refuses an endpoint."""
    listener: dict[str, Any] = {"port": spec.port, "bind_addresses": [spec.ip], "resources": list(resources)}
    if ca is not None:
        cert = ca.issue(spec.ip, name=f"{spec.ip}-{spec.port}")
        listener.update(tls=True, tls_certificate_path=str(cert.cert_path),
                        tls_private_key_path=str(cert.key_path))
    fed: dict[str, Any] = {"enabled": True}
    if trust_ca and ca is not None:
        fed["ca_bundle_path"] = str(ca.ca_path)
    fed.update(sections.pop("federation", None) or {})
    sections.setdefault("outbound", LOOPBACK_OUTBOUND)
    config = parse_config(
        config_dict(spec.data_dir, server_name=spec.name, listeners=[listener], federation=fed, **sections)
    )
    hs = HomeServer(config, clock=clock)
    if middlewares:
        build_app = hs.build_app

        def build_with_middlewares(resources: list[str], *, x_forwarded: bool = False) -> web.Application:
            app = build_app(resources, x_forwarded=x_forwarded)
            app.middlewares[:0] = middlewares
            return app

        hs.build_app = build_with_middlewares  # type: ignore[method-assign]
    await hs.start()
    try:
        await hs.start_listeners()
        yield hs
    finally:
        await hs.stop()


def running_server(
    spec: ServerSpec, ca: TestCA | None, *, trust_ca: bool = True,
    outbound: dict[str, Any] | None = None, **federation: Any
) -> contextlib.AbstractAsyncContextManager[HomeServer]:
    """``serve`` for client, federation and keys, with ``federation`` as keys of
    the federation section and ``outbound`` the outbound section (default:
    loopback allowed)."""
    return serve(spec, ca, trust_ca=trust_ca, federation=federation,
                 outbound=LOOPBACK_OUTBOUND if outbound is None else outbound)


PASSWORD = "a-long-password"  # of every user a Client registers


class Client:
    """One user of one server, over HTTPS: its client API (paths below
    /_matrix/client/v3 unless they start with /_) and a few common flows."""

    def __init__(self, session: aiohttp.ClientSession, spec: ServerSpec, ctx: ssl.SSLContext) -> None:
        self.s, self.ctx, self.spec = session, ctx, spec
        self.origin = f"https://{spec.name}"
        self.base = self.origin + "/_matrix/client/v3"
        self.token = ""
        self.user_id = ""

    async def raw(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = self.origin + path if path.startswith("/_") else self.base + path
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.s.request(method, url, json=body, headers=headers, ssl=self.ctx) as r:
            return r.status, await r.json(content_type=None)

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, data = await self.raw(method, path, body)
        assert status == expect, (method, path, status, data)
        return data

    async def register(self, name: str, hs: HomeServer | None = None, *, admin: bool = False) -> str:
        body = {"username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
        data = await self.call("POST", "/register", body)
        self.token, self.user_id = data["access_token"], data["user_id"]
        if admin:
            assert hs is not None
            await hs.users.set_admin(self.user_id, True)
        return self.user_id

    async def login(self, name: str) -> None:
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
                "password": PASSWORD}
        data = await self.call("POST", "/login", body)
        self.token, self.user_id = data["access_token"], data["user_id"]

    async def say(self, room: str, body: str) -> str:
        txn = f"t{abs(hash((room, body, asyncio.get_running_loop().time())))}"
        data = await self.call(
            "PUT", f"/rooms/{room}/send/m.room.message/{txn}", {"msgtype": "m.text", "body": body}
        )
        return str(data["event_id"])

    async def messages(self, room: str, limit: int = 50) -> list[dict[str, Any]]:
        page = await self.call("GET", f"/rooms/{room}/messages?dir=b&limit={limit}")
        return [ev for ev in page["chunk"] if ev["type"] == "m.room.message"]

    async def wait_for_message(self, room: str, body: str, within: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                for ev in await self.messages(room):
                    if ev["content"].get("body") == body:
                        return ev
                await asyncio.sleep(0.05)



@dataclass
class Pair:
    """Two running servers, A and B, each with a registered user (alice on A, bob
    on B), and what a test needs to reach them."""

    a: HomeServer
    b: HomeServer
    a_spec: ServerSpec
    b_spec: ServerSpec
    alice: Client
    bob: Client
    alice_id: str
    bob_id: str
    ca: TestCA
    ctx: ssl.SSLContext
    session: aiohttp.ClientSession

    def client(self, spec: ServerSpec) -> Client:
        """Another client of A or B (for another user)."""
        return Client(self.session, spec, self.ctx)


@contextlib.asynccontextmanager
async def running_pair(
    root: Path, ca: TestCA | None = None, *, specs: tuple[ServerSpec, ServerSpec] | None = None,
    resources: tuple[str, ...] = SERVED, a_config: dict[str, Any] | None = None,
    b_config: dict[str, Any] | None = None,
) -> AsyncIterator[Pair]:
    """A (127.0.0.2) and B (127.0.0.3) under ``root`` (or ``specs``, made by a test
    that needs their names first), serving ``resources`` with certificates from
    ``ca`` (a new test CA by default), with the config sections ``a_config`` and
    ``b_config`` (see `serve`), and alice and bob registered."""
    ca = ca or TestCA(root / "ca")
    a_spec, b_spec = specs or (ServerSpec(root, "127.0.0.2"), ServerSpec(root, "127.0.0.3"))
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with (
        serve(a_spec, ca, resources=resources, **(a_config or {})) as a,
        serve(b_spec, ca, resources=resources, **(b_config or {})) as b,
        aiohttp.ClientSession() as s,
    ):
        alice, bob = Client(s, a_spec, ctx), Client(s, b_spec, ctx)
        alice_id, bob_id = await alice.register("alice"), await bob.register("bob")
        yield Pair(a, b, a_spec, b_spec, alice, bob, alice_id, bob_id, ca, ctx, s)


class Servers:
    """Servers a test starts, stops and starts again by their spec, all under one
    test CA and one client session; whatever still runs is stopped at the end."""

    def __init__(self, root: Path, ca: TestCA, session: aiohttp.ClientSession) -> None:
        self.root, self.ca, self.session = root, ca, session
        self.ctx = ssl.create_default_context(cafile=str(ca.ca_path))
        self._running: dict[str, contextlib.AbstractAsyncContextManager[HomeServer]] = {}

    def spec(self, ip: str) -> ServerSpec:
        return ServerSpec(self.root, ip)

    def client(self, spec: ServerSpec) -> Client:
        return Client(self.session, spec, self.ctx)

    async def start(self, spec: ServerSpec, **sections: Any) -> HomeServer:
        """Start ``spec`` with `serve`'s defaults and ``sections``."""
        assert spec.name not in self._running, f"{spec.name} is running"
        cm = serve(spec, self.ca, **sections)
        hs = await cm.__aenter__()
        self._running[spec.name] = cm
        return hs

    async def stop(self, spec: ServerSpec) -> None:
        await self._running.pop(spec.name).__aexit__(None, None, None)

    async def stop_all(self) -> None:
        while self._running:
            _, cm = self._running.popitem()
            await cm.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def servers_under(root: Path, ca: TestCA) -> AsyncIterator[Servers]:
    async with aiohttp.ClientSession() as s:
        servers = Servers(root, ca, s)
        try:
            yield servers
        finally:
            await servers.stop_all()
