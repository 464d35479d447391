"""Two real servers over TLS: a user of one joins a room on the other with
make_join/send_join, and messages then flow both ways through transactions."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from tests.homeserver.federation.servers import ServerSpec, running_server
from tests.tls_ca import TestCA


class Client:
    def __init__(self, session: aiohttp.ClientSession, spec: ServerSpec, ctx: ssl.SSLContext) -> None:
        self.s, self.ctx = session, ctx
        self.base = f"https://{spec.name}/_matrix/client/v3"
        self.token = ""

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.s.request(method, self.base + path, json=body, headers=headers, ssl=self.ctx) as r:
            data = await r.json()
            assert r.status == expect, (method, path, r.status, data)
            return data

    async def register(self, name: str) -> str:
        body = {"username": name, "password": "a-long-password", "auth": {"type": "m.login.dummy"}}
        data = await self.call("POST", "/register", body)
        self.token = data["access_token"]
        return data["user_id"]

    async def wait_for_message(self, room: str, body: str, within: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                page = await self.call("GET", f"/rooms/{room}/messages?dir=b&limit=20")
                for ev in page["chunk"]:
                    if ev["type"] == "m.room.message" and ev["content"].get("body") == body:
                        return ev
                await asyncio.sleep(0.05)


async def test_join_across_servers_and_talk(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with running_server(a_spec, ca) as a, running_server(b_spec, ca) as b, aiohttp.ClientSession() as s:
        alice, bob = Client(s, a_spec, ctx), Client(s, b_spec, ctx)
        alice_id = await alice.register("alice")
        bob_id = await bob.register("bob")
        room = (await alice.call("POST", "/createRoom", {"preset": "public_chat", "name": "Across"}))["room_id"]
        await alice.call("PUT", f"/rooms/{room}/send/m.room.message/1", {"msgtype": "m.text", "body": "before bob"})

        joined = await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
        assert joined == {"room_id": room}
        # B built its copy of the room from A's answer: same state, bob joined.
        name = await bob.call("GET", f"/rooms/{room}/state/m.room.name")
        assert name == {"name": "Across"}
        members = await alice.call("GET", f"/rooms/{room}/joined_members")
        assert set(members["joined"]) == {alice_id, bob_id}

        await bob.call("PUT", f"/rooms/{room}/send/m.room.message/b1", {"msgtype": "m.text", "body": "hi from B"})
        seen_on_a = await alice.wait_for_message(room, "hi from B")
        assert seen_on_a["sender"] == bob_id
        await alice.call("PUT", f"/rooms/{room}/send/m.room.message/a2", {"msgtype": "m.text", "body": "hi from A"})
        seen_on_b = await bob.wait_for_message(room, "hi from A")
        assert seen_on_b["sender"] == alice_id
        # Both servers hold the same event, byte for byte in what was signed.
        on_a = await a.event_store.get_event(seen_on_b["event_id"])
        on_b = await b.event_store.get_event(seen_on_b["event_id"])
        assert on_a is not None and on_b is not None and on_a.event["hashes"] == on_b.event["hashes"]

        # A room that does not federate refuses remote joins.
        private = (await alice.call("POST", "/createRoom", {
            "preset": "public_chat", "creation_content": {"m.federate": False}}))["room_id"]
        err = await bob.call("POST", f"/join/{private}?server_name={a_spec.name}", {}, expect=403)
        assert "does not federate" in err["error"]
