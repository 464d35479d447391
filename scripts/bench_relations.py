"""Relations benchmark: the same client workload against Accord and, when installed,
Synapse (servers started as scripts/bench_servers.py starts them).

One room holds thread roots, each with replies, an edit and reactions. Figures (p50 of
repeated requests): a /relations page of one thread's replies, a /threads page, a
/relations page of reactions filtered by type, and a /messages page of 100 events whose
thread roots carry bundled aggregations.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_servers import Client, Server, report, run_beside_synapse  # noqa: E402


async def run_relations_workload(server: Server, roots: int, replies: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        c = Client(s, server.url)
        await c.register("relbench")
        room = (await c.call("POST", "/createRoom", {}))["room_id"]
        v1 = f"{server.url}/_matrix/client/v1/rooms/{room}"
        sem = asyncio.Semaphore(32)
        counter = iter(range(10**9))

        async def send(content: dict[str, Any], event_type: str = "m.room.message") -> str:
            async with sem:
                body = await c.call("PUT", f"/rooms/{room}/send/{event_type}/b{next(counter)}", content)
                return str(body["event_id"])

        root_ids = [await send({"msgtype": "m.text", "body": f"root {i}"}) for i in range(roots)]

        async def fill(root: str) -> None:
            for j in range(replies):
                await send({"msgtype": "m.text", "body": f"reply {j}",
                            "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
            await send({"msgtype": "m.text", "body": "* edited", "m.new_content": {"msgtype": "m.text", "body": "edited"},
                        "m.relates_to": {"rel_type": "m.replace", "event_id": root}})
            for k in range(5):
                await send({"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": f"k{k}"}},
                           "m.reaction")

        await asyncio.gather(*(fill(r) for r in root_ids))
        headers = {"Authorization": f"Bearer {c.token}"}

        async def timed(url: str, check: str) -> float:
            samples = []
            for _ in range(30):
                t0 = time.perf_counter()
                async with s.get(url, headers=headers) as r:
                    body = await r.json()
                samples.append((time.perf_counter() - t0) * 1000)
                if r.status != 200 or not body.get(check):
                    raise RuntimeError(f"{server.name}: {url}: {r.status} {body}")
            return statistics.median(samples)

        middle = root_ids[roots // 2]
        out["relations_page_ms"] = await timed(f"{v1}/relations/{middle}/m.thread?limit=50", "chunk")
        out["reactions_page_ms"] = await timed(f"{v1}/relations/{middle}/m.annotation/m.reaction?limit=50", "chunk")
        out["threads_page_ms"] = await timed(f"{v1}/threads?limit=20", "chunk")
        # Thread replies are in the main timeline too: a page from the start holds the roots.
        out["messages_bundled_ms"] = await timed(
            f"{server.url}/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=100", "chunk"
        )
    return out


async def bench(quick: bool, with_synapse: bool) -> list[tuple[str, dict[str, float]]]:
    roots, replies = (20, 10) if quick else (100, 20)
    return await run_beside_synapse(
        "accord-bench-relations-", with_synapse, lambda server: run_relations_workload(server, roots, replies)
    )


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    res = asyncio.run(bench(quick, "--no-synapse" not in sys.argv))
    size = "20 threads x 10 replies" if quick else "100 threads x 20 replies"
    report(f"relations, one room of {size} (each root edited, 5 reactions; ratio = accord/synapse):", res, [
        ("/relations page of 50 thread replies p50 (ms)", "relations_page_ms"),
        ("/relations reactions by type p50 (ms)", "reactions_page_ms"),
        ("/threads page of 20 p50 (ms)", "threads_page_ms"),
        ("/messages page of 100, bundled p50 (ms)", "messages_bundled_ms"),
    ])
