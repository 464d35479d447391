"""matrix-js-sdk (from npm, on Node) with thread support: it finds a room's threads
through /threads and /relations and shows an edited message with its new content."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from tests.e2e.matrix_http import RawClient
from tests.e2e.server_process import ServerProcess
from tests.e2e.test_js_sdk import JS_DIR, _need_js_sdk


async def test_js_sdk_threads_and_edits(tmp_path: Path) -> None:
    _need_js_sdk()
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    try:
        async with aiohttp.ClientSession() as s:
            alice = await RawClient(s, server.client_url).register("alice")
            bob = await RawClient(s, server.client_url).register("bob")
            room = (await alice.call("POST", "/createRoom", {"invite": [bob.user_id]}))["room_id"]
            await bob.call("POST", f"/rooms/{room}/join", {})
            send = f"/rooms/{room}/send/m.room.message"
            root = (await alice.call("PUT", f"{send}/root", {"msgtype": "m.text", "body": "thread root"}))["event_id"]
            for i in range(3):
                await bob.call("PUT", f"{send}/r{i}", {"msgtype": "m.text", "body": f"reply {i}",
                                                      "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
            typo = (await alice.call("PUT", f"{send}/typo", {"msgtype": "m.text", "body": "helo"}))["event_id"]
            await alice.call("PUT", f"{send}/fix", {
                "msgtype": "m.text", "body": "* hello", "m.new_content": {"msgtype": "m.text", "body": "hello"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": typo},
            })
            proc = await asyncio.create_subprocess_exec(
                "node", str(JS_DIR / "threads_client.mjs"), server.client_url, bob.user_id, bob.token,
                bob.device_id, room, typo, stdout=asyncio.subprocess.PIPE, cwd=str(JS_DIR),
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            reports = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
            assert reports, out.decode()[-3000:]
            done = reports[-1]
            assert done["kind"] == "done", done
            assert done["listSupport"], done  # the SDK uses the server's thread list (v1.4)
            assert [(t["id"], t["length"], t["root"]) for t in done["threads"]] == [(root, 3, "thread root")]
            assert done["edited"] == "hello"
    finally:
        assert await server.stop() == 0
