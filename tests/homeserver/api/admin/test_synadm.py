"""A real Synapse admin tool against Accord: synadm (the command-line admin client for
Synapse, pinned in the test extra) drives the admin API over loopback HTTP, so its
requests are shaped exactly as that tool shapes them, and its parsing of our answers
is exercised too."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD, Api
from tests.homeserver.api.admin.helpers import make_admin, make_room, make_user, send_text

SYNADM = shutil.which("synadm", path=str(Path(sys.executable).parent)) or shutil.which("synadm")
pytestmark = pytest.mark.skipif(SYNADM is None, reason="synadm is not installed (pip install -e '.[test]')")


class Synadm:
    def __init__(self, api: Api, token: str, tmp_path: Path) -> None:
        base = str(api.client.make_url("")).rstrip("/")
        self.config = tmp_path / "synadm.yaml"
        self.config.write_text(
            "\n".join([
                "user: root", f"token: {token}", "protocol: http", f"base_url: {base}",
                "admin_path: /_synapse/admin", "matrix_path: /_matrix", "timeout: 10",
                "ssl_verify: false", "server_discovery: well-known", "homeserver: test.local",
                "format: json",
            ]) + "\n"
        )

    async def __call__(self, *args: str) -> Any:
        """Run one synadm command (as a child process: the server keeps serving) and
        return its JSON output (or its text, for the commands that narrate)."""
        assert SYNADM is not None
        proc = await asyncio.create_subprocess_exec(
            SYNADM, "-c", str(self.config), "--batch", "-o", "json", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, (args, out.decode(), err.decode())
        text = out.decode().strip()
        try:
            return _last_json(text) if text else None
        except json.JSONDecodeError:
            return text


def _last_json(text: str) -> Any:
    """The last of the JSON documents a command printed (some print what they are about
    to change first, then the server's answer)."""
    decoder = json.JSONDecoder()
    pos, doc = 0, None
    while pos < len(text):
        doc, end = decoder.raw_decode(text, pos)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return doc


@pytest.fixture
async def synadm(api: Api, tmp_path: Path) -> Synadm:
    return Synadm(api, await make_admin(api), tmp_path)


async def test_version(synadm: Synadm) -> None:
    out = await synadm("version")
    assert out["server_version"].startswith("Accord ")


async def test_users(api: Api, synadm: Synadm) -> None:
    await make_user(api, "alice")
    listed = await synadm("user", "list")
    assert {u["name"] for u in listed["users"]} == {"@alice:test.local", "@root:test.local"}
    assert listed["total"] == 2
    details = await synadm("user", "details", "alice")
    assert details["name"] == "@alice:test.local" and details["deactivated"] is False
    # Create a bot with a password, then log in as it for a token that never expires
    narrated = await synadm("user", "modify", "helper", "--user-type", "bot", "-P", PASSWORD, "-n", "Helper")
    assert '"user_type": "bot"' in narrated
    assert (await synadm("user", "details", "helper"))["user_type"] == "bot"
    assert api.hs.is_ratelimit_exempt("@helper:test.local")
    login = await synadm("user", "login", "helper", "--expire-never")
    assert (await api.get("account/whoami", token=login["access_token"]))["user_id"] == "@helper:test.local"
    await synadm("user", "password", "alice", "-p", "a new long password")
    await api.login("alice", "a new long password")
    whois = await synadm("user", "whois", "alice")
    assert whois["user_id"] == "@alice:test.local" and whois["devices"]
    await synadm("user", "deactivate", "alice")
    assert (await synadm("user", "details", "alice"))["deactivated"] is True
    found = await synadm("user", "list", "-n", "hel")
    assert [u["name"] for u in found["users"]] == ["@helper:test.local"]


async def test_rooms(api: Api, synadm: Synadm) -> None:
    alice = await make_user(api, "alice")
    room = await make_room(api, alice, name="Tool room", room_alias_name="tool")
    await send_text(api, alice, room, "hello", "t1")
    listed = await synadm("room", "list")
    assert listed["total_rooms"] == 1 and listed["rooms"][0]["name"] == "Tool room"
    assert (await synadm("room", "details", room))["canonical_alias"] == "#tool:test.local"
    assert (await synadm("room", "members", room))["members"] == ["@alice:test.local"]
    state = await synadm("room", "state", room)
    assert any(ev["type"] == "m.room.create" for ev in state["state"])
    await synadm("room", "block", room)
    assert (await synadm("room", "block-status", room))["block"] is True
    deleted = await synadm("room", "delete", room)
    status = await synadm("room", "delete-status", "--delete-id", deleted["delete_id"])
    assert status["status"] == "complete"
    assert status["shutdown_room"]["kicked_users"] == ["@alice:test.local"]
    assert (await synadm("room", "list"))["total_rooms"] == 0


async def test_registration_tokens(synadm: Synadm) -> None:
    created = await synadm("regtok", "new", "-n", "invite-1", "-u", "3")
    assert created == {"token": "invite-1", "uses_allowed": 3, "pending": 0, "completed": 0, "expiry_time": None}
    listed = await synadm("regtok", "list")
    assert [t["token"] for t in listed["registration_tokens"]] == ["invite-1"]
    updated = await synadm("regtok", "update", "invite-1", "-u", "5")
    assert updated["uses_allowed"] == 5
    assert (await synadm("regtok", "details", "invite-1"))["uses_allowed"] == 5
    await synadm("regtok", "delete", "invite-1")
    assert (await synadm("regtok", "list"))["registration_tokens"] == []
