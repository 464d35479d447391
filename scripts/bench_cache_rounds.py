"""Rounds of uncached initial syncs of a big account: does the event cache keep up?

The workload of `bench_initial.py` (a reader in 50 rooms of 100 messages, then a user in
1,000 rooms of 3 messages), then ROUNDS rounds of: a message into every one of the
1,000 rooms, then an initial sync of their member (none of its rooms' kept sections is
current). Each round prints the sync's wall time and server CPU, the event cache's
hits, misses and thawed events during it (from `/metrics`), the cache's size and the
server's resident memory. A cache that keeps what is read again holds the round's cost
flat; one that drops it re-reads the rooms' events from the database, round after round.
Usage: scripts/bench_cache_rounds.py [--rounds N] [--rooms N] [--baseline CHECKOUT]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_initial import _fill, message_every_room  # noqa: E402
from bench_servers import Server, initial_sync_path, registered, run_beside_synapse  # noqa: E402

CACHE_MB: int | None = None  # --cache-mb: the event cache's bound, else the default


def _with_metrics(config: dict[str, Any]) -> None:
    if CACHE_MB is not None:
        config["database"]["event_cache_mb"] = CACHE_MB
    for listener in config["listeners"]:
        if "client" in listener["resources"]:
            listener["resources"].append("metrics")


async def _event_cache(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(f"{url}/metrics") as r:
        text = await r.text()
    out = {}
    for line in text.splitlines():
        if 'cache="events"' in line:
            name, value = line.split(" ")
            out[name.split("{")[0].removeprefix("accord_cache_").removesuffix("_total")] = float(value)
    return out


async def run_rounds(server: Server, rooms: int, rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        owner, reader, member = await registered(s, server.url, "rounds_owner", "rounds_reader", "rounds_member")
        await _fill(owner, reader, 50, 100, "h")
        await reader.call("GET", initial_sync_path(0))
        room_ids = await _fill(owner, member, rooms, 3, "m")
        await member.call("GET", initial_sync_path(0))
        cpus, walls = [], []
        for i in range(rounds):
            await message_every_room(owner, room_ids, f"r{i}")
            await asyncio.sleep(0.3)
            gc.collect()
            before = await _event_cache(s, server.url)
            cpu0 = server.cpu()
            t0 = time.perf_counter()
            await member.call("GET", initial_sync_path(100 + i))
            wall = (time.perf_counter() - t0) * 1000
            cpu = (server.cpu() - cpu0) * 1000
            after = await _event_cache(s, server.url)
            d = {k: after.get(k, 0) - before.get(k, 0) for k in ("hits", "misses", "thawed")}
            print(
                f"  {server.name} round {i + 1}: {wall:.0f} ms, CPU {cpu:.0f} ms; hits {d['hits']:.0f}"
                f" misses {d['misses']:.0f} thawed {d['thawed']:.0f}; cache {after.get('entries', 0):.0f}"
                f" entries {after.get('bytes', 0) / 2**20:.1f} MiB; RSS {server.rss():.1f} MB",
                flush=True,
            )
            cpus.append(cpu)
            walls.append(wall)
        out["cpu_mean_ms"] = statistics.mean(cpus)
        out["cpu_last3_ms"] = statistics.mean(cpus[-3:])
        out["wall_median_ms"] = statistics.median(walls)
        out["rss_mb"] = server.rss()
    return out


async def bench(args: argparse.Namespace) -> None:
    import bench_servers

    start = bench_servers.start_accord

    async def start_with_metrics(tmp: Path, port: int, configure: Any = None, **kw: Any) -> Server:
        return await start(tmp, port, _with_metrics, **kw)

    bench_servers.start_accord = start_with_metrics  # type: ignore[assignment]
    results = await run_beside_synapse(
        "accord-bench-rounds-", False, lambda server: run_rounds(server, args.rooms, args.rounds),
        baseline=args.baseline,
    )
    for name, res in results:
        print(f"{name}: " + ", ".join(f"{k}={v:.1f}" for k, v in res.items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--rooms", type=int, default=1000)
    ap.add_argument("--cache-mb", type=int, help="the event cache's bound (database.event_cache_mb)")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT", help="also measure this checkout, first")
    args = ap.parse_args()
    global CACHE_MB
    CACHE_MB = args.cache_mb
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
