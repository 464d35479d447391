"""Real Accord servers for the partner tests: the federation tests' loopback TLS
servers, with the admin API served too and any config section settable, plus a
small HTTP client and a recorder of every outbound federation request."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from federation.request_auth import sign_request
from homeserver.config import parse_config
from homeserver.server import HomeServer
from tests.conftest import LOOPBACK_OUTBOUND, config_dict
from tests.homeserver.federation.servers import ServerSpec
from tests.tls_ca import TestCA

PARTNERS_API = "/_matrix/federation/unstable/org.accord.partners/v1"
ADMIN_API = "/_accord/admin/v1/partnerships"


@contextlib.asynccontextmanager
async def partner_server(spec: ServerSpec, ca: TestCA, **overrides: Any) -> AsyncIterator[HomeServer]:
    """``spec`` as a real server on TLS serving client, admin, federation and keys;
    ``overrides`` are config sections (``federation`` is merged into the test's)."""
    cert = ca.issue(spec.ip, name=f"{spec.ip}-{spec.port}")
    listener = {
        "port": spec.port, "bind_addresses": [spec.ip],
        "resources": ["client", "admin", "federation", "keys"],
        "tls": True, "tls_certificate_path": str(cert.cert_path), "tls_private_key_path": str(cert.key_path),
    }
    fed = {"enabled": True, "ca_bundle_path": str(ca.ca_path), **overrides.pop("federation", {})}
    overrides.setdefault("outbound", LOOPBACK_OUTBOUND)  # the partners are on loopback
    config = parse_config(
        config_dict(spec.data_dir, server_name=spec.name, listeners=[listener], federation=fed, **overrides)
    )
    hs = HomeServer(config)
    await hs.start()
    try:
        await hs.start_listeners()
        yield hs
    finally:
        await hs.stop()


class Client:
    """One user of one server, over HTTPS."""

    def __init__(self, session: aiohttp.ClientSession, spec: ServerSpec, ctx: ssl.SSLContext) -> None:
        self.s, self.ctx, self.spec = session, ctx, spec
        self.origin = f"https://{spec.name}"
        self.token = ""
        self.user_id = ""

    async def raw(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if not path.startswith("/_"):
            path = "/_matrix/client/v3" + path
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.s.request(method, self.origin + path, json=body, headers=headers, ssl=self.ctx) as r:
            return r.status, await r.json(content_type=None)

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, data = await self.raw(method, path, body)
        assert status == expect, (method, path, status, data)
        return data

    async def register(self, name: str, hs: HomeServer | None = None, *, admin: bool = False) -> str:
        body = {"username": name, "password": "a-long-password", "auth": {"type": "m.login.dummy"}}
        data = await self.call("POST", "/register", body)
        self.token, self.user_id = data["access_token"], data["user_id"]
        if admin:
            assert hs is not None
            await hs.users.set_admin(self.user_id, True)
        return self.user_id

    async def say(self, room: str, body: str) -> str:
        txn = f"t{abs(hash((room, body, asyncio.get_running_loop().time())))}"
        data = await self.call(
            "PUT", f"/rooms/{room}/send/m.room.message/{txn}", {"msgtype": "m.text", "body": body}
        )
        return str(data["event_id"])

    async def messages(self, room: str) -> list[dict[str, Any]]:
        page = await self.call("GET", f"/rooms/{room}/messages?dir=b&limit=50")
        return [ev for ev in page["chunk"] if ev["type"] == "m.room.message"]

    async def wait_for_message(self, room: str, body: str, within: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                for ev in await self.messages(room):
                    if ev["content"].get("body") == body:
                        return ev
                await asyncio.sleep(0.05)


async def until(check: Callable[[], Awaitable[bool]], within: float = 10) -> None:
    """Poll `check` (a state in another server, which offers nothing to wait on)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if await check():
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@dataclass
class Sent:
    method: str
    destination: str
    path: str
    content: Any


class Recorder:
    """Every request a server's FederationClient sends (after its policy allowed
    it), with its content: the real requests, as they go out."""

    def __init__(self, hs: HomeServer) -> None:
        assert hs.federation_client is not None
        self.sent: list[Sent] = []
        hs.federation_client.observers.append(self)

    def __call__(self, method: str, destination: str, path: str, content: Any) -> None:
        self.sent.append(Sent(method, destination, path, content))

    def text(self) -> str:
        """Everything sent, as one string, to search for what must never leave."""
        return "\n".join(f"{s.method} {s.destination}{s.path} {orjson.dumps(s.content).decode()}" for s in self.sent)

    def to(self, destination: str, path_part: str = "") -> list[Sent]:
        return [s for s in self.sent if s.destination == destination and path_part in s.path]


async def signed_request(
    session: aiohttp.ClientSession,
    ctx: ssl.SSLContext,
    *,
    signer: ServerSpec,
    destination: ServerSpec,
    method: str,
    path: str,
    content: Any = None,
    origin: str | None = None,
    signed_content: Any = "same",
) -> tuple[int, Any]:
    """A federation request signed by ``signer``'s key, as a peer (or a forger)
    would send it: ``origin`` overrides the claimed origin, ``signed_content``
    what the signature covers (to tamper with the body after signing)."""
    auth = sign_request(
        method=method, uri=path, origin=origin or signer.name, destination=destination.name,
        signing_key=signer.signing_key, content=content if signed_content == "same" else signed_content,
    )
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    body = orjson.dumps(content) if content is not None else None
    async with session.request(
        method, URL(f"https://{destination.name}{path}", encoded=True), data=body, headers=headers, ssl=ctx
    ) as r:
        return r.status, await r.json(content_type=None)


async def notices(admin: Client, hs: HomeServer, within: float = 10) -> list[str]:
    """The admin joins the server notice room it was invited to and reads its notices."""
    await until(lambda: _has_notice_room(hs), within)
    room_id = await hs.partners.notices.room_id()
    assert room_id is not None
    await admin.call("POST", f"/join/{room_id}", {})
    return [ev["content"]["body"] for ev in await admin.messages(room_id) if ev["content"].get("msgtype") == "m.notice"]


async def _has_notice_room(hs: HomeServer) -> bool:
    return await hs.partners.notices.room_id() is not None
