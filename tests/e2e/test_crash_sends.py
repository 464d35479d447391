"""SIGKILL in the middle of 200 concurrent sends into one room loses no acknowledged
message, and the room is whole afterwards: on SQLite a message is queued behind the
room's previous one before that one commits (the writer's pipeline), so the kill
lands with several queued; none acknowledged may be lost, and the room's events must
still form one line that the next send continues."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.e2e.server_process import ServerProcess

N = 200


async def _call(session: aiohttp.ClientSession, method: str, url: str, token: str, body: object = None) -> dict:
    async with session.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        data = await r.json()
        assert r.status == 200, data
        return data  # type: ignore[no-any-return]


async def test_sigkill_during_sends_keeps_acknowledged_messages(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    api = f"{server.client_url}/_matrix/client/v3"
    acknowledged: dict[int, str] = {}
    enough = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        body = {"username": "sender", "password": "password-123", "auth": {"type": "m.login.dummy"}}
        async with session.post(f"{api}/register", json=body) as r:
            if r.status == 401:
                body["auth"]["session"] = (await r.json())["session"]  # type: ignore[index]
                async with session.post(f"{api}/register", json=body) as r2:
                    token = (await r2.json())["access_token"]
            else:
                token = (await r.json())["access_token"]
        room = (await _call(session, "POST", f"{api}/createRoom", token, {}))["room_id"]
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            try:
                async with sem:
                    sent = await _call(session, "PUT", f"{api}/rooms/{room}/send/m.room.message/c{i}", token,
                                       {"msgtype": "m.text", "body": f"message {i}"})
            except (TimeoutError, aiohttp.ClientError, AssertionError):
                return
            acknowledged[i] = sent["event_id"]
            if len(acknowledged) >= 40:
                enough.set()

        tasks = [asyncio.ensure_future(one(i)) for i in range(N)]
        await asyncio.wait_for(enough.wait(), 120)
        server.kill()
        await asyncio.gather(*tasks)
    await server.stop()
    assert 40 <= len(acknowledged) < N, "the kill must land mid-way through the sends"

    await server.start()
    api = f"{server.client_url}/_matrix/client/v3"
    try:
        async with aiohttp.ClientSession() as session:
            page = await _call(session, "GET", f"{api}/rooms/{room}/messages?dir=f&limit=1000", token)
            kept = [e["event_id"] for e in page["chunk"] if e["type"] == "m.room.message"]
            assert set(acknowledged.values()) <= set(kept)
            # One line: each message cites the one before it, and the next send continues it.
            last = (await _call(session, "PUT", f"{api}/rooms/{room}/send/m.room.message/after", token,
                                {"msgtype": "m.text", "body": "after"}))["event_id"]
            context = await _call(session, "GET", f"{api}/rooms/{room}/context/{last}?limit=2", token)
            assert [e["event_id"] for e in context["events_before"]][:1] == kept[-1:]
    finally:
        assert await server.stop() == 0
