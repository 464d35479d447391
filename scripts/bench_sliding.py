"""Sliding sync benchmark (MSC4186): the same client workload against Accord and, when
installed, Synapse (servers started as scripts/bench_servers.py starts them).

One user is in 1,000 rooms (200 with --quick), each with a name and a few messages.
Figures, p50 and p99 in ms:

- first response: a new connection asking for a list window of 20 rooms (name, avatar,
  encryption and own membership as required state, the latest message), as a client
  opening its room list does; repeated on fresh connections;
- incremental response: after one new message in one of the rooms, the next request
  on the connection (which carries that room only); repeated, each time in another room.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_servers import Client, Server, _pct, report, run_beside_synapse  # noqa: E402

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
BODY: dict[str, Any] = {
    "lists": {"rooms": {
        "ranges": [[0, 19]], "timeline_limit": 1,
        "required_state": [["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""], ["m.room.member", "$ME"]],
    }},
}


async def run_sliding_workload(server: Server, n_rooms: int, rounds: int) -> dict[str, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        c = Client(s, server.url)
        await c.register("slidingbench")
        sem = asyncio.Semaphore(8)
        counter = iter(range(10**9))

        async def room(i: int) -> str:
            async with sem:
                room_id = str((await c.call("POST", "/createRoom", {"name": f"room {i}"}))["room_id"])
                for j in range(3):
                    await c.call("PUT", f"/rooms/{room_id}/send/m.room.message/b{next(counter)}",
                                 {"msgtype": "m.text", "body": f"message {j}"})
                return room_id

        room_ids = await asyncio.gather(*(room(i) for i in range(n_rooms)))
        headers = {"Authorization": f"Bearer {c.token}"}

        async def sliding(pos: str | None, conn_id: str) -> dict[str, Any]:
            q = "?timeout=0" + (f"&pos={quote(pos)}" if pos else "")
            async with s.post(server.url + PATH + q, json={**BODY, "conn_id": conn_id}, headers=headers) as r:
                body = await r.json()
                if r.status != 200 or len(body["lists"]["rooms"]["ops"][0]["room_ids"]) != 20:
                    raise RuntimeError(f"{server.name}: sliding sync: {r.status} {str(body)[:300]}")
                return dict(body)

        first: list[float] = []
        for i in range(rounds):
            t0 = time.perf_counter()
            body = await sliding(None, f"first{i}")
            first.append((time.perf_counter() - t0) * 1000)
        pos = body["pos"]
        incremental: list[float] = []
        for i in range(rounds):
            target = room_ids[(i * 37) % len(room_ids)]
            await c.call("PUT", f"/rooms/{target}/send/m.room.message/n{next(counter)}", {"msgtype": "m.text", "body": "new"})
            t0 = time.perf_counter()
            body = await sliding(pos, f"first{rounds - 1}")
            incremental.append((time.perf_counter() - t0) * 1000)
            if target not in body["rooms"]:
                raise RuntimeError(f"{server.name}: the room with the new message was not sent")
            pos = body["pos"]
    return {
        "first_p50": statistics.median(first), "first_p99": _pct(first, 99),
        "incr_p50": statistics.median(incremental), "incr_p99": _pct(incremental, 99),
    }


async def bench(quick: bool, with_synapse: bool) -> list[tuple[str, dict[str, float]]]:
    n_rooms, rounds = (200, 20) if quick else (1000, 50)
    return await run_beside_synapse(
        "accord-bench-sliding-", with_synapse, lambda server: run_sliding_workload(server, n_rooms, rounds)
    )


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    res = asyncio.run(bench(quick, "--no-synapse" not in sys.argv))
    size = "200" if quick else "1,000"
    report(f"sliding sync, one user in {size} rooms, window of 20 (ratio = accord/synapse):", res, [
        ("first response p50 (ms)", "first_p50"),
        ("first response p99 (ms)", "first_p99"),
        ("incremental, one new message p50 (ms)", "incr_p50"),
        ("incremental, one new message p99 (ms)", "incr_p99"),
    ])
