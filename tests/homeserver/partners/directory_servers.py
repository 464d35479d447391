"""Real servers for the partner directory tests: a directory and organizations on
loopback addresses with TLS from a test CA, each with its own directory config,
plus a small HTTPS client for their client and admin APIs."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

import aiohttp

from homeserver.clock import Clock
from homeserver.server import HomeServer
from tests.homeserver.federation.servers import SERVED_WITH_ADMIN, ServerSpec, serve
from tests.tls_ca import TestCA

CLIENT = "/_matrix/client/unstable/org.accord.directory"
ADMIN = "/_accord/admin/v1/partner_directory"
FED = "/_matrix/federation/unstable/org.accord.directory/v1"


def directory_server(
    spec: ServerSpec, ca: TestCA, *, clock: Clock | None = None, **overrides: Any,
) -> contextlib.AbstractAsyncContextManager[HomeServer]:
    """``spec`` running with a TLS listener for every API and ``overrides``
    (``organization``, ``partner_directory``, ``federation``) merged into its config."""
    return serve(spec, ca, resources=SERVED_WITH_ADMIN, clock=clock, **overrides)


class User:
    """A user of one server, over HTTPS, with raw access to status and errcode."""

    def __init__(self, session: aiohttp.ClientSession, spec: ServerSpec, ctx: ssl.SSLContext) -> None:
        self.s, self.ctx, self.spec = session, ctx, spec
        self.base = f"https://{spec.name}"
        self.token = ""
        self.user_id = ""

    async def call(self, method: str, path: str, body: Any = None, *, expect: int = 200,
                   query: dict[str, str] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.s.request(method, self.base + path, json=body, params=query, headers=headers,
                                  ssl=self.ctx) as r:
            data = await r.json(content_type=None)
            assert r.status == expect, (method, path, r.status, data)
            return data

    async def register(self, name: str, hs: HomeServer, *, admin: bool = False) -> User:
        body = {"username": name, "password": "a-long-password", "auth": {"type": "m.login.dummy"}}
        data = await self.call("POST", "/_matrix/client/v3/register", body)
        self.token, self.user_id = data["access_token"], data["user_id"]
        if admin:
            await hs.users.set_admin(self.user_id, True)
        return self
