"""Drive `js/e2ee_client.mjs`: one matrix-js-sdk client with its Rust crypto, one device.

`JsCryptoClient.start` spawns the node process for a `JsAccount` (one device of a user on
any homeserver: ours, a second one of ours, or Synapse, with an access token from a real
login) and waits for its first sync and its keys on the server; `call` sends one command
and returns its answer; `expect` (from `JsClient`) waits for what the client reports seeing."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.matrix_http import RawClient
from tests.e2e.test_js_sdk import JS_DIR, JsClient

PASSWORD = "e2e-password-1"


@dataclass
class JsAccount:
    """One device of a user, as the js client needs it; `call` is a client API call
    (path below /_matrix/client/v3) made with the same access token."""

    base_url: str
    user_id: str
    token: str
    device_id: str
    password: str
    call: Callable[[str, str, Any], Awaitable[Any]]
    ca_path: Path | None = None  # the CA a TLS server's certificate is checked against

    @classmethod
    def of(cls, base_url: str, raw: RawClient, password: str = PASSWORD) -> JsAccount:
        return cls(base_url, raw.user_id, raw.token, raw.device_id, password, raw.call)


class JsCryptoClient(JsClient):
    """A running e2ee_client.mjs for one device of one user."""

    def __init__(self, proc: asyncio.subprocess.Process, account: JsAccount) -> None:
        super().__init__(proc)
        self.account = account
        self.user_id = account.user_id
        self.device_id = account.device_id
        self._ids = itertools.count(1)

    @classmethod
    async def start(cls, account: JsAccount, *, recovery_key: str | None = None) -> JsCryptoClient:
        args = [account.base_url, account.user_id, account.token, account.device_id, account.password]
        if recovery_key is not None:
            args.append(recovery_key)
        env = dict(os.environ)
        if account.ca_path is not None:
            env["NODE_EXTRA_CA_CERTS"] = str(account.ca_path)
        proc = await asyncio.create_subprocess_exec(
            "node", str(JS_DIR / "e2ee_client.mjs"), *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, cwd=str(JS_DIR), env=env, limit=2**22,
        )
        client = cls(proc, account)
        await client.expect(lambda e: e["kind"] == "sync" and e["state"] == "PREPARED", 60)
        await client.keys_published()
        return client

    async def keys_published(self, within: float = 60) -> None:
        """Wait until the server serves this device's keys: the client uploads them in the
        background after its first sync, and a message sent to the user before then is
        (rightly) not encrypted for this device."""
        async with asyncio.timeout(within):
            while True:
                answer = await self.account.call(
                    "POST", "/keys/query", {"device_keys": {self.user_id: [self.device_id]}}
                )
                if self.device_id in answer["device_keys"].get(self.user_id, {}):
                    return
                await asyncio.sleep(0.2)

    async def call(self, cmd: str, within: float = 60, **args: Any) -> dict[str, Any]:
        """Run one command in the client; its answer (an error in the client fails the test)."""
        request_id = next(self._ids)
        await self.send(json.dumps({"id": request_id, "cmd": cmd, **args}))
        answer = await self.expect(
            lambda e: e["kind"] in ("result", "error") and e.get("id") == request_id, within
        )
        assert answer["kind"] == "result", f"{cmd} failed in matrix-js-sdk: {answer.get('message')}"
        return answer

    async def message(self, body: str, within: float = 60) -> dict[str, Any]:
        """Wait until the client shows a decrypted room message with this body."""
        return await self.expect(
            lambda e: e["kind"] == "message" and e["body"] == body and e["failure"] is None, within
        )

    async def device_status(
        self, user_id: str, device_id: str, until: Callable[[dict[str, Any]], bool], *, track: bool = False,
    ) -> dict[str, Any]:
        """What the client knows of a device, once `until` holds: after a device_lists
        change the client queries the user's keys again in the background. `track`: start
        tracking the user if the client does not yet (it otherwise does when it first
        encrypts for a room the user is in)."""
        status: dict[str, Any] = {}
        for _ in range(300):
            status = await self.call("deviceStatus", user=user_id, device=device_id, download=track)
            if until(status):
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"the client never saw {device_id} of {user_id} so: {status}")

    async def knows(self, other: JsCryptoClient) -> None:
        """Wait until this client has the other's device keys. A message encrypted before
        then is (rightly) not readable by that device: across servers the new device's keys
        reach the sender's server a moment after they reach the device's own."""
        await self.device_status(other.user_id, other.device_id, lambda st: st["known"], track=True)

    async def close(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.call("quit", within=10)
                await asyncio.wait_for(self.proc.wait(), 10)
            except (AssertionError, TimeoutError, ConnectionError):
                pass
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class JsClients:
    """The js clients a test started, all closed at its end (`js_clients`)."""

    def __init__(self) -> None:
        self.running: list[JsCryptoClient] = []

    async def start(self, account: JsAccount, **kw: Any) -> JsCryptoClient:
        client = await JsCryptoClient.start(account, **kw)
        self.running.append(client)
        return client

    async def close(self) -> None:
        for client in self.running:
            await client.close()


@asynccontextmanager
async def js_clients() -> AsyncIterator[JsClients]:
    clients = JsClients()
    try:
        yield clients
    finally:
        await clients.close()


async def converse(x: JsCryptoClient, y: JsCryptoClient, room: str, tag: str) -> None:
    """One message each way in an encrypted room, once each knows the other's device;
    each side decrypts the other's (sent encrypted, as the client reports it)."""
    await x.knows(y)
    await y.knows(x)
    for sender, reader in ((x, y), (y, x)):
        body = f"secret {tag} from {sender.user_id}"
        await sender.call("send", room=room, body=body)
        got = await reader.message(body, within=60)
        assert got["wireType"] == "m.room.encrypted" and got["sender"] == sender.user_id


def only_ciphertext(messages_page: dict[str, Any]) -> None:
    """A /messages page (as a server serves it) of an encrypted room whose messages all
    contain "secret": the timeline events are all m.room.encrypted, and no plaintext."""
    timeline = [e for e in messages_page["chunk"] if "state_key" not in e]
    assert timeline and {e["type"] for e in timeline} == {"m.room.encrypted"}, timeline
    assert all(e["content"].get("algorithm") == "m.megolm.v1.aes-sha2" for e in timeline)
    assert "secret" not in str(messages_page)


async def new_device_reached(sender: JsCryptoClient, new: JsCryptoClient, old: JsCryptoClient, room: str) -> None:
    """`new` is a new device of `old`'s user: the sender's client is told in /sync
    device_lists.changed, then knows the device, and its next message reaches both."""
    await sender.expect(lambda e: e["kind"] == "device_lists" and new.user_id in e["changed"], 60)
    await sender.device_status(new.user_id, new.device_id, lambda st: st["known"])
    body = f"secret to both devices of {new.user_id}"
    await sender.call("send", room=room, body=body)
    got = await new.message(body, within=60)
    assert got["wireType"] == "m.room.encrypted"
    await old.message(body, within=60)
