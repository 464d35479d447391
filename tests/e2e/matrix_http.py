"""A minimal raw-HTTP Matrix client for driving the 'other side' in end-to-end tests."""

from __future__ import annotations

from typing import Any

import aiohttp


class RawClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.s = session
        self.base = base_url + "/_matrix/client/v3"
        self.token = ""
        self.user_id = ""
        self.device_id = ""

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.s.request(method, self.base + path, json=body, headers=headers) as r:
            data = await r.json()
            assert r.status == 200, (method, path, r.status, data)
            return data

    async def register(self, username: str, password: str = "e2e-password-1") -> RawClient:
        body: dict[str, Any] = {"username": username, "password": password}
        async with self.s.post(self.base + "/register", json=body) as r:
            challenge = await r.json()
        body["auth"] = {"type": "m.login.dummy", "session": challenge["session"]}
        async with self.s.post(self.base + "/register", json=body) as r:
            data = await r.json()
            assert r.status == 200, data
        self.token, self.user_id, self.device_id = data["access_token"], data["user_id"], data["device_id"]
        return self

    async def login(self, user_id: str, password: str = "e2e-password-1") -> RawClient:
        """A new device of an existing account, by password."""
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": password}
        async with self.s.post(self.base + "/login", json=body) as r:
            data = await r.json()
            assert r.status == 200, data
        self.token, self.user_id, self.device_id = data["access_token"], data["user_id"], data["device_id"]
        return self
