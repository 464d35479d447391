"""Real Accord servers for the partner tests: the federation tests' loopback TLS
servers, with the admin API served too and any config section settable, plus
their HTTP client (`Client`) and a recorder of every outbound federation request."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from yarl import URL

from federation.request_auth import sign_request
from homeserver.server import HomeServer
from tests.homeserver.federation.servers import (
    SERVED_WITH_ADMIN,
    Client,
    Pair,
    ServerSpec,
    running_pair,
    serve,
)
from tests.tls_ca import TestCA

PARTNERS_API = "/_matrix/federation/unstable/org.accord.partners/v1"
ADMIN_API = "/_accord/admin/v1/partnerships"


def partner_server(
    spec: ServerSpec, ca: TestCA, **overrides: Any
) -> contextlib.AbstractAsyncContextManager[HomeServer]:
    """``spec`` as a real server on TLS serving client, admin, federation and keys;
    ``overrides`` are config sections (``federation`` is merged into the test's)."""
    return serve(spec, ca, resources=SERVED_WITH_ADMIN, **overrides)


def partner_pair(
    root: Path, ca: TestCA, a_config: dict[str, Any] | None = None, b_config: dict[str, Any] | None = None,
    *, specs: tuple[ServerSpec, ServerSpec] | None = None,
) -> contextlib.AbstractAsyncContextManager[Pair]:
    """`running_pair` of two partner servers (client, admin, federation and keys),
    with the config sections ``a_config`` and ``b_config``."""
    return running_pair(root, ca, specs=specs, resources=SERVED_WITH_ADMIN, a_config=a_config, b_config=b_config)


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
