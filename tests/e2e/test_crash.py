"""SIGKILL in the middle of 100 concurrent registrations loses no acknowledged account."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.e2e.server_process import ServerProcess

N = 100


async def _register(session: aiohttp.ClientSession, url: str, i: int) -> str | None:
    body = {"username": f"crash{i}", "password": f"password-{i}"}
    try:
        async with session.post(f"{url}/_matrix/client/v3/register", json=body) as r:
            challenge = await r.json()
            assert r.status == 401, challenge
        body["auth"] = {"type": "m.login.dummy", "session": challenge["session"]}
        async with session.post(f"{url}/_matrix/client/v3/register", json=body) as r:
            if r.status != 200:
                return None
            result = await r.json()
            return result["user_id"]
    except (TimeoutError, aiohttp.ClientError):
        return None


async def test_sigkill_during_registrations_keeps_acknowledged_accounts(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    url = server.client_url
    acknowledged: dict[int, str] = {}
    enough = asyncio.Event()

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        user_id = await _register(session, url, i)
        if user_id is not None:
            acknowledged[i] = user_id
            if len(acknowledged) >= 20:
                enough.set()

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.ensure_future(one(session, i)) for i in range(N)]
        await asyncio.wait_for(enough.wait(), 120)
        server.kill()
        await asyncio.gather(*tasks)
    await server.stop()
    assert 20 <= len(acknowledged) < N, "the kill must land mid-way through the registrations"

    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            for i, user_id in acknowledged.items():
                body = {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": user_id},
                    "password": f"password-{i}",
                }
                login_url = f"{server.client_url}/_matrix/client/v3/login"
                async with session.post(login_url, json=body) as r:
                    assert r.status == 200, (user_id, await r.text())
    finally:
        assert await server.stop() == 0
