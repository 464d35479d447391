"""Drive `js/e2ee_client.mjs`: one matrix-js-sdk client with its Rust crypto, one device.

`JsCryptoClient.start` spawns the node process for an account and device (an access token
from a real login) and waits for its first sync; `call` sends one command and returns its
answer; `expect` (from `JsClient`) waits for what the client reports seeing."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from tests.e2e.matrix_http import RawClient
from tests.e2e.test_js_sdk import JS_DIR, JsClient

PASSWORD = "e2e-password-1"


class JsCryptoClient(JsClient):
    """A running e2ee_client.mjs for one device of one user."""

    def __init__(self, proc: asyncio.subprocess.Process, account: RawClient) -> None:
        super().__init__(proc)
        self.account = account
        self.user_id = account.user_id
        self.device_id = account.device_id
        self._ids = itertools.count(1)

    @classmethod
    async def start(
        cls, base_url: str, account: RawClient, *, recovery_key: str | None = None,
        env: dict[str, str] | None = None,
    ) -> JsCryptoClient:
        args = [base_url, account.user_id, account.token, account.device_id, PASSWORD]
        if recovery_key is not None:
            args.append(recovery_key)
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
                answer = await self.account.call("POST", "/keys/query", {"device_keys": {self.user_id: [self.device_id]}})
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

    async def message(self, body: str, within: float = 30) -> dict[str, Any]:
        """Wait until the client shows a decrypted room message with this body."""
        return await self.expect(
            lambda e: e["kind"] == "message" and e["body"] == body and e["failure"] is None, within
        )

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
