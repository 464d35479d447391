"""Initial sync of a big room's member after people join it: Accord beside Synapse (and
a baseline checkout) in the same run.

An organization's big rooms change state all the time (someone joins, a topic is set),
and each member who opens a client then asks an initial sync. Accord keeps what a room's
initial sync computes for its next reader (`sync/initial_sections.py`) and extends it
with what the room got since; this measures the initial sync right after each of
`--rounds` joins (each followed by a message), the room's answer kept before each one
(two initial syncs), in a room of `--members` members. Accounts are made with cheap
password hashing on every server (registration is not what is measured).

Usage: scripts/bench_join_sync.py [--quick] [--members N] [--rounds N] [--no-synapse] [--baseline DIR [--abba]]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import _register_all, cheap_servers  # noqa: E402
from bench_servers import Server, initial_sync_path, mean_of_rounds, registered, report  # noqa: E402


async def run_join_sync(server: Server, members: int, rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        owner, reader = await registered(s, server.url, "joinsync_owner", "joinsync_reader")
        room = (await owner.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        await reader.call("POST", f"/rooms/{room}/join", {})
        users = await _register_all(s, server.url, "joinsync_m", members + rounds)
        sem = asyncio.Semaphore(8)

        async def join(i: int) -> None:
            async with sem:
                await users[i].call("POST", f"/rooms/{room}/join", {})

        await asyncio.gather(*(join(i) for i in range(members)))
        for i in range(5):
            await owner.call("PUT", f"/rooms/{room}/send/m.room.message/w{i}", {"msgtype": "m.text", "body": "w"})
        times, cpus = [], []
        n = 0
        for r in range(rounds):
            for _ in range(2):  # the room's answer as it is, kept for the next reader
                n += 1
                await reader.call("GET", initial_sync_path(n))
            await join(members + r)
            await owner.call("PUT", f"/rooms/{room}/send/m.room.message/a{r}", {"msgtype": "m.text", "body": "hi"})
            await asyncio.sleep(0.2)  # what the join set off in the background settles first
            n += 1
            cpu0 = server.cpu()
            t0 = asyncio.get_running_loop().time()
            body = await reader.call("GET", initial_sync_path(n))
            times.append((asyncio.get_running_loop().time() - t0) * 1000)
            cpus.append((server.cpu() - cpu0) * 1000)
            assert room in body["rooms"]["join"]
        out["join_sync_ms"] = statistics.median(times)
        out["join_sync_cpu_ms"] = statistics.fmean(cpus)
    return out


async def bench(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="accord-bench-join-sync-"))
    try:
        for i, (name, start) in enumerate(cheap_servers(args.baseline, not args.no_synapse, args.abba)):
            server = await start(tmp / str(i))  # a fresh directory each round
            try:
                res = await run_join_sync(server, args.members, args.rounds)
            finally:
                server.stop()
            results.append((name, res))
            print(f"{name}: " + ", ".join(f"{k}={v:.2f}" for k, v in res.items()), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return mean_of_rounds(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a room of 200 (unless --members)")
    ap.add_argument("--members", type=int)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-synapse", action="store_true")
    ap.add_argument("--baseline", help="another checkout, measured in the same run")
    ap.add_argument("--abba", action="store_true", help="the Accord checkouts twice, in both orders")
    args = ap.parse_args()
    args.members = args.members or (200 if args.quick else 1000)
    results = asyncio.run(bench(args))
    report(
        f"initial sync of a member right after a join, room of {args.members} (median of {args.rounds}; "
        "ratio = x/last):",
        results,
        [("initial sync after a join (ms)", "join_sync_ms"), ("  its server CPU (ms)", "join_sync_cpu_ms")],
    )


if __name__ == "__main__":
    main()
