"""/sync's `state_after` (v1.16, MSC4222) beside the classic `state`, in Accord and, when
installed, Synapse (its unstable org.matrix.msc4222.use_state_after, enabled for the
run, answering org.matrix.msc4222.state_after), servers started as scripts/bench_servers.py starts them.

One user is in 100 rooms (40 with --quick). Each round changes the topic and sends a
message in 10 of them, then times the incremental /sync from the same token twice:
without and with use_state_after (order alternating). Figures are p50 in ms; the ratio
state_after/state says what asking for it costs on each server.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_servers import Client, Server, _synapse_python, report, start_accord, start_synapse  # noqa: E402

PARAMS = "use_state_after=true&org.matrix.msc4222.use_state_after=true"


async def run_state_after_workload(server: Server, n_rooms: int, rounds: int) -> dict[str, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        c = Client(s, server.url)
        await c.register("stateafterbench")
        sem = asyncio.Semaphore(8)

        async def room(i: int) -> str:
            async with sem:
                return str((await c.call("POST", "/createRoom", {"name": f"room {i}"}))["room_id"])

        room_ids = await asyncio.gather(*(room(i) for i in range(n_rooms)))
        headers = {"Authorization": f"Bearer {c.token}"}

        async def sync(since: str | None, extra: str = "") -> tuple[float, dict[str, Any]]:
            q = "?timeout=0" + (f"&since={since}" if since else "") + (f"&{extra}" if extra else "")
            t0 = time.perf_counter()
            async with s.get(server.url + "/_matrix/client/v3/sync" + q, headers=headers) as r:
                body = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"{server.name}: sync {r.status} {str(body)[:300]}")
            return (time.perf_counter() - t0) * 1000, body

        _, body = await sync(None)
        since = body["next_batch"]
        plain: list[float] = []
        after: list[float] = []
        n = 0
        for i in range(rounds):
            for target in room_ids[(i * 10) % n_rooms:(i * 10) % n_rooms + 10]:
                n += 1
                await c.call("PUT", f"/rooms/{target}/state/m.room.topic/", {"topic": f"topic {n}"})
                await c.call("PUT", f"/rooms/{target}/send/m.room.message/t{n}", {"msgtype": "m.text", "body": "x"})
            order = [("", plain), (PARAMS, after)]
            for extra, times in order if i % 2 == 0 else order[::-1]:
                ms, body = await sync(since, extra)
                times.append(ms)
                joined = body["rooms"]["join"]
                keys = ("state_after", "org.matrix.msc4222.state_after") if extra else ("state",)
                if len(joined) != 10 or any(not any(k in r for k in keys) for r in joined.values()):
                    raise RuntimeError(f"{server.name}: expected 10 rooms with {keys[0]}")
            since = body["next_batch"]
    return {"state_p50": statistics.median(plain), "after_p50": statistics.median(after),
            "ratio": statistics.median(after) / statistics.median(plain)}


async def bench(quick: bool, with_synapse: bool) -> list[tuple[str, dict[str, float]]]:
    n_rooms, rounds = (40, 10) if quick else (100, 30)
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="accord-bench-state-after-"))
    try:
        def synapse_msc4222(config: dict[str, Any]) -> None:
            config.setdefault("experimental_features", {})["msc4222_enabled"] = True

        starts = [("accord", lambda: start_accord(tmp, 18840))]
        python = _synapse_python() if with_synapse else None
        if python:
            starts.append(("synapse", lambda: start_synapse(tmp, 18940, python, synapse_msc4222)))
        for _name, start in starts:
            server = await start()
            try:
                results.append((server.name, await run_state_after_workload(server, n_rooms, rounds)))
            finally:
                server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    res = asyncio.run(bench(quick, "--no-synapse" not in sys.argv))
    report("incremental /sync, 10 rooms each with a new topic and message (ratio = accord/synapse):", res, [
        ("state p50 (ms)", "state_p50"),
        ("state_after p50 (ms)", "after_p50"),
        ("state_after / state", "ratio"),
    ])
