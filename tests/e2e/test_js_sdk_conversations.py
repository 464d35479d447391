"""matrix-js-sdk (from npm, on Node) uses room tags, the user directory, room summaries
and mutual rooms of a server started by the test."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from tests.e2e.matrix_http import RawClient
from tests.e2e.server_process import ServerProcess
from tests.e2e.test_js_sdk import JS_DIR, _need_js_sdk


async def test_js_sdk_tags_directory_and_summary(tmp_path: Path) -> None:
    _need_js_sdk()
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    try:
        async with aiohttp.ClientSession() as s:
            alice = await RawClient(s, server.client_url).register("alice")
            bob = await RawClient(s, server.client_url).register("bob")
            await bob.call("PUT", f"/profile/{bob.user_id}/displayname", {"displayname": "Bob Colleague"})
            room = (await alice.call("POST", "/createRoom", {"name": "Team", "invite": [bob.user_id]}))["room_id"]
            await bob.call("POST", f"/rooms/{room}/join", {})
            proc = await asyncio.create_subprocess_exec(
                "node", str(JS_DIR / "conversations.mjs"), server.client_url, alice.user_id, alice.token,
                alice.device_id, room, "colleague", bob.user_id, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=str(JS_DIR),
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            result = json.loads(out.decode().strip().splitlines()[-1])
            assert result["tags"] == {"tags": {"u.work": {"order": 0.5}}}
            assert result["directory"]["results"] == [{"user_id": bob.user_id, "display_name": "Bob Colleague"}]
            assert result["summary"]["room_id"] == room and result["summary"]["name"] == "Team"
            assert result["summary"]["membership"] == "join" and result["summary"]["num_joined_members"] == 2
            assert result["mutual"] == [room]
            # The tag reached sync as the room's m.tag account data.
            sync = await alice.call("GET", "/sync")
            events = sync["rooms"]["join"][room]["account_data"]["events"]
            assert {"type": "m.tag", "content": {"tags": {"u.work": {"order": 0.5}}}} in events
    finally:
        assert await server.stop() == 0
