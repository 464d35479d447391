"""matrix-nio end to end: server-side search in a room of 10,000 messages against the `accord` command.

Messages sent through nio (concurrently, into one room) are found by POST /search
(nio has no search method, so through its raw request path with its token), with
their context and senders' profiles, and a second page follows next_batch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nio
from nio.api import Api

from tests.e2e.server_process import ServerProcess

MESSAGES = 10_000


async def _search(client: nio.AsyncClient, body: dict[str, Any], next_batch: str | None = None) -> Any:
    path = Api._build_path(["search"], {"next_batch": next_batch} if next_batch else {})
    resp = await client.send("POST", path, json.dumps(body), headers={"Authorization": f"Bearer {client.access_token}"})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["search_categories"]["room_events"]


async def test_nio_search_in_a_busy_room(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    alice = nio.AsyncClient(server.client_url, "alice")
    try:
        assert isinstance(await alice.register("alice", "alice-password-1"), nio.RegisterResponse)
        assert isinstance(await alice.set_displayname("Alice A."), nio.ProfileSetDisplayNameResponse)
        created = await alice.room_create(name="Busy")
        assert isinstance(created, nio.RoomCreateResponse), created
        room = created.room_id
        sem = asyncio.Semaphore(32)

        async def send(i: int) -> None:
            text = "where is the albatross" if i == MESSAGES // 2 else f"chatter {i} " + ("ping" if i % 50 == 0 else "")
            async with sem:
                resp = await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": text})
                assert isinstance(resp, nio.RoomSendResponse), resp

        await asyncio.gather(*(send(i) for i in range(MESSAGES)))

        found = await _search(alice, {"search_categories": {"room_events": {
            "search_term": "albatross", "event_context": {"before_limit": 3, "after_limit": 3, "include_profile": True},
        }}})
        assert [r["result"]["content"]["body"] for r in found["results"]] == ["where is the albatross"]
        ctx = found["results"][0]["context"]
        assert len(ctx["events_before"]) == 3 and len(ctx["events_after"]) == 3
        assert ctx["profile_info"][alice.user_id]["displayname"] == "Alice A."
        assert "albatross" in found["highlights"]

        body = {"search_categories": {"room_events": {"search_term": "ping", "order_by": "recent"}}}
        first = await _search(alice, body)
        second = await _search(alice, body, first["next_batch"])
        seen = [r["result"]["event_id"] for r in first["results"] + second["results"]]
        assert len(seen) == 20 and len(set(seen)) == 20
    finally:
        await alice.close()
        assert await server.stop() == 0
