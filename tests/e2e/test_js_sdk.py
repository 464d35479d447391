"""matrix-js-sdk (from npm, on Node) stays in sync with a server started by the test."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.matrix_http import RawClient
from tests.e2e.server_process import ServerProcess

JS_DIR = Path(__file__).with_name("js")


def _need_js_sdk() -> None:
    if shutil.which("node") and (JS_DIR / "node_modules" / "matrix-js-sdk").exists():
        return
    reason = "matrix-js-sdk not installed: needs Node 20 and `npm ci` in tests/e2e/js (scripts/test does it)"
    if os.environ.get("CI"):
        pytest.fail("CI must run the matrix-js-sdk tests: " + reason)
    pytest.skip(reason)


class JsClient:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []

    async def expect(self, predicate: Any, within: float = 15) -> dict[str, Any]:
        for item in self.seen:
            if predicate(item):
                self.seen.remove(item)
                return item
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            while True:
                line = await self.proc.stdout.readline()
                assert line, "js client exited"
                if not line.startswith(b"{"):
                    print("js:", line.decode().rstrip())
                    continue  # the SDK's own log lines
                item = json.loads(line)
                if predicate(item):
                    return item
                self.seen.append(item)

    async def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()


async def test_js_sdk_sync_loop(tmp_path: Path) -> None:
    _need_js_sdk()
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    proc = None
    try:
        async with aiohttp.ClientSession() as s:
            alice = await RawClient(s, server.client_url).register("alice")
            bob = await RawClient(s, server.client_url).register("bob")
            room = (await alice.call("POST", "/createRoom", {"invite": [bob.user_id]}))["room_id"]
            await bob.call("POST", f"/rooms/{room}/join", {})
            proc = await asyncio.create_subprocess_exec(
                "node", str(JS_DIR / "sync_client.mjs"), server.client_url, bob.user_id, bob.token,
                bob.device_id, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                cwd=str(JS_DIR),
            )
            js = JsClient(proc)
            await js.expect(lambda e: e["kind"] == "sync" and e["state"] == "PREPARED", 30)

            sent = await alice.call("PUT", f"/rooms/{room}/send/m.room.message/1", {"msgtype": "m.text", "body": "hello js"})
            await js.expect(lambda e: e["kind"] == "timeline" and e["body"] == "hello js")
            await alice.call("PUT", f"/rooms/{room}/state/m.room.name", {"name": "Renamed"})
            await js.expect(lambda e: e["kind"] == "timeline" and e["type"] == "m.room.name"
                            and e["content"] == {"name": "Renamed"})
            await alice.call("PUT", f"/rooms/{room}/typing/{alice.user_id}", {"typing": True, "timeout": 10000})
            await js.expect(lambda e: e["kind"] == "typing" and e["user"] == alice.user_id and e["typing"])
            await alice.call("POST", f"/rooms/{room}/receipt/m.read/{sent['event_id']}", {})
            receipt = await js.expect(lambda e: e["kind"] == "receipt" and sent["event_id"] in e["content"])
            assert alice.user_id in receipt["content"][sent["event_id"]]["m.read"]
            await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "unavailable"})
            await js.expect(lambda e: e["kind"] == "presence" and e["user"] == alice.user_id
                            and e["presence"] == "unavailable")

            # Disconnect, miss some traffic, reconnect with the last token: nothing is lost.
            await js.send("stop")
            await js.expect(lambda e: e["kind"] == "stopped")
            for i in range(3):
                await alice.call("PUT", f"/rooms/{room}/send/m.room.message/m{i}", {"msgtype": "m.text", "body": f"missed {i}"})
            await js.send("start")
            for i in range(3):
                await js.expect(lambda e, i=i: e["kind"] == "timeline" and e["body"] == f"missed {i}")
            await js.send("quit")
            assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
        assert await server.stop() == 0
